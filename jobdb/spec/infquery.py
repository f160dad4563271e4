"""The InfQuery experiment format (seed 000), accepted as written and mapped onto phases.

::

    settings: {sbatch_mode: array, debug: false, hostname: oberon}
    experiments:
      - kwargs: {quantize_options: {...}, pseudo_probabilities_options: {...}}
        input: {...}
        output: {...}
        models:              # ``model:`` is accepted too
          model_root: /data/models
          selector: {en: [baby50], en|fr: [baby200], de: all}
        task: "quantize | proba | lexical"

Mapping:

* one phase per step of ``task``, named after the step (``<experiment>.<step>``
  when the file has several experiments; an experiment is named by its
  ``name:`` or ``exp<i>``); the phase runs the callable ``tasks.infquery:<step>``;
* the first step has one job per selected model, with parameters ``lang``,
  ``model``, ``model_root`` (absolute), ``input`` and ``output`` (as
  written); every later step runs after the previous one without
  ``group_by``, so each model's step *i+1* job depends on the same model's
  step *i* job and inherits its parameters;
* ``kwargs``: the entry for a step (``quantize_options`` for ``quantize``,
  ``pseudo_probabilities_options`` for ``proba``, ``<step>_options`` for any
  other step) becomes a parameter of that step's phase, under its own name;
  any other ``kwargs`` entry is a parameter of the first step (and so of all);
* ``settings`` become the experiment's settings (``sbatch_mode: array`` asks
  the Slurm executor for job arrays).

Models live in ``model_root/<lang>/<model>/`` (a relative ``model_root`` is
relative to the spec file's folder). A selector key ``en|fr`` applies to both
languages; the value ``all`` means every model folder of that language; a
model or language folder that does not exist is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobdb.spec.grid import json_value
from jobdb.spec.located import At, Doc, did_you_mean, parse_yaml
from jobdb.spec.model import Dimension, ExperimentSpec, PhaseSpec
from jobdb.spec.phase import phase_config
from jobdb.spec.slurm import check_settings

TOP_KEYS = frozenset({"settings", "experiments"})
EXPERIMENT_KEYS = frozenset({"name", "kwargs", "input", "output", "model", "models", "task"})
MODEL_KEYS = frozenset({"model_root", "selector"})
STEP_KWARGS = {"quantize": "quantize_options", "proba": "pseudo_probabilities_options"}
TASK_MODULE = "tasks.infquery"
MODEL_LAYOUT = "a directory model_root/<lang>/<model>/"


def load_infquery(path: Path | str) -> ExperimentSpec:
    """Read and parse an InfQuery experiment file."""
    path = Path(path)
    return parse_infquery(path.read_text(encoding="utf-8"), str(path), path.parent)


def parse_infquery(text: str, filename: str, base_dir: Path | None = None) -> ExperimentSpec:
    """Parse InfQuery text; ``base_dir`` resolves a relative ``model_root`` (default: cwd)."""
    return spec_from_infquery_doc(parse_yaml(text, filename), text, base_dir or Path.cwd())


def spec_from_infquery_doc(doc: Doc, text: str, base_dir: Path) -> ExperimentSpec:
    root = doc.root
    root.as_mapping(TOP_KEYS)
    settings_at = root.get("settings")
    settings = {} if settings_at is None or settings_at.value is None else json_value(settings_at)
    if settings_at is not None and not isinstance(settings, dict):
        raise settings_at.wrong_type("a mapping of settings")
    check_settings(settings_at)
    entries = root.require("experiments", "a list of experiments").as_list()
    if not entries:
        raise root.require("experiments", "").error(
            "no experiments, so the spec would create no jobs", expected="at least one experiment"
        )
    phases: list[PhaseSpec] = []
    for index, entry in enumerate(entries):
        prefix = "" if len(entries) == 1 else f"{_experiment_name(entry, index)}."
        phases.extend(_experiment_phases(entry, prefix, base_dir))
    name = Path(doc.file or "infquery").stem
    return ExperimentSpec(name, settings, tuple(phases), text, "infquery")


def _experiment_name(entry: At, index: int) -> str:
    name = entry.get("name")
    return f"exp{index}" if name is None else name.as_str("an experiment name")


def _experiment_phases(entry: At, prefix: str, base_dir: Path) -> list[PhaseSpec]:
    entry.as_mapping(EXPERIMENT_KEYS)
    steps = _steps(entry.require("task", 'a pipeline such as "quantize | proba | lexical"'))
    kwargs_at = entry.get("kwargs")
    kwargs: dict[str, Any] = {} if kwargs_at is None else dict(json_value(kwargs_at) or {})
    own = {step: kwargs.pop(STEP_KWARGS.get(step, f"{step}_options"), None) for step in steps}
    model_root, models = select_models(_models_at(entry), base_dir)
    first = {"model_root": str(model_root), **kwargs}
    for key in ("input", "output"):
        if entry.get(key) is not None:
            first[key] = json_value(entry.require(key, ""))
    phases = []
    for i, step in enumerate(steps):
        fixed = dict(first) if i == 0 else {}
        if own[step] is not None:
            fixed[STEP_KWARGS.get(step, f"{step}_options")] = own[step]
        grid = [Dimension((key,), ((value,),)) for key, value in sorted(fixed.items())]
        if i == 0:
            grid.insert(0, Dimension(("lang", "model"), tuple(models)))
        after = None if i == 0 else prefix + steps[i - 1]
        phases.append(_phase(prefix + step, step, tuple(grid), after))
    return phases


def _phase(name: str, step: str, grid: tuple[Dimension, ...], after: str | None) -> PhaseSpec:
    spec = PhaseSpec(name=name, command=None, task=f"{TASK_MODULE}:{step}", grid=grid, after=after)
    return PhaseSpec(**{**spec.__dict__, "config": phase_config(spec)})


def _steps(at: At) -> list[str]:
    steps = [step.strip() for step in at.as_str('a pipeline such as "quantize | proba"').split("|")]
    for step in steps:
        if not step.isidentifier():
            raise at.error(f"step {step!r} in task {at.value!r}", expected="step names joined by |")
    if len(set(steps)) != len(steps):
        raise at.error(f"a step appears twice in task {at.value!r}", expected="distinct steps")
    return steps


def _models_at(entry: At) -> At:
    found = [entry.get(key) for key in ("models", "model")]
    present = [at for at in found if at is not None]
    if len(present) != 1:
        what = "both models and model" if present else "no models"
        raise entry.error(f"{what} in this experiment", expected="one models: (or model:) section")
    return present[0]


def select_models(at: At, base_dir: Path) -> tuple[Path, list[tuple[str, str]]]:
    """The model root and the ``(lang, model)`` pairs a ``models:`` section selects, in order."""
    at.as_mapping(MODEL_KEYS)
    root_at = at.require("model_root", "the folder holding <lang>/<model>/")
    root = base_dir / Path(root_at.as_str("a folder"))
    if not root.is_dir():
        raise root_at.error(f"model_root {str(root)!r} is not a directory", expected=MODEL_LAYOUT)
    pairs: dict[tuple[str, str], None] = {}
    for key, names_at in at.require("selector", "a mapping of language → models").items():
        for lang in (part.strip() for part in key.split("|")):
            for model in _models_of(names_at, root, lang):
                pairs[(lang, model)] = None
    if not pairs:
        raise at.error("the selector selects no models, so the spec would create no jobs")
    return root.resolve(), list(pairs)


def _models_of(at: At, root: Path, lang: str) -> list[str]:
    if at.value == "all":
        if not (root / lang).is_dir():
            message = f"no folder for language {lang!r} in {str(root)!r}"
            raise at.error(message, expected=MODEL_LAYOUT)
        return sorted(p.name for p in (root / lang).iterdir() if p.is_dir())
    items = [at] if isinstance(at.value, str) else at.as_list('a list of model names or "all"')
    for item in items:
        _check_model(item, root, lang, item.as_str('a model name or "all"'))
    return [item.value for item in items]


def _check_model(at: At, root: Path, lang: str, model: str) -> None:
    if (root / lang / model).is_dir():
        return
    folder = root / lang
    existing = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    raise at.error(
        f"model {model!r} not found for language {lang!r} (no folder {str(root / lang / model)!r})",
        expected=MODEL_LAYOUT,
        hint=did_you_mean(model, existing),
    )
