"""The InfQuery experiment of seed 000, mapped onto phases over a temporary model tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobdb.spec import SpecError, expand, load_spec
from jobdb.spec.infquery import load_infquery

SEED = Path(__file__).parent / "fixtures" / "infquery_seed.yaml"
MODELS = {
    "en": ["baby50", "baby100", "baby200"],
    "fr": ["baby200", "baby3600", "unused"],
    "de": ["kind1", "kind2"],
}


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for lang, models in MODELS.items():
        for model in models:
            (root / lang / model).mkdir(parents=True)
    (root / "de" / "README").write_text("not a model")
    return root


def write_spec(tmp_path: Path, root: Path, edit: tuple[str, str] = ("", "")) -> Path:
    text = SEED.read_text().replace("MODEL_ROOT", str(root)).replace(*edit)
    path = tmp_path / "infquery.yaml"
    path.write_text(text)
    return path


SELECTED = [
    ("en", "baby50"),
    ("en", "baby100"),
    ("en", "baby200"),
    ("fr", "baby200"),
    ("fr", "baby3600"),
    ("de", "kind1"),
    ("de", "kind2"),
]


def test_seed_expands_to_one_job_per_model_and_step(tmp_path: Path, model_root: Path) -> None:
    spec = load_spec(write_spec(tmp_path, model_root))
    assert spec.format == "infquery"
    assert spec.settings == {"sbatch_mode": "array", "debug": False, "hostname": "oberon"}
    assert [p.name for p in spec.phases] == ["quantize", "proba", "lexical"]
    assert [p.task for p in spec.phases] == [f"tasks.infquery:{s}" for s in spec_steps()]
    assert [p.after for p in spec.phases] == [None, "quantize", "proba"]
    assert all(p.group_by is None for p in spec.phases)
    plan = expand(spec)
    quantize = [(j.params["lang"], j.params["model"]) for j in plan.jobs["quantize"]]
    assert quantize == SELECTED
    for step in ("proba", "lexical"):
        assert len(plan.jobs[step]) == len(SELECTED)
    parents = {child: parent for parent, child in plan.edges}
    assert len(plan.edges) == 2 * len(SELECTED)
    for i in range(len(SELECTED)):
        assert parents[("proba", i)] == ("quantize", i)
        assert parents[("lexical", i)] == ("proba", i)
        assert plan.jobs["lexical"][i].params["model"] == SELECTED[i][1]


def spec_steps() -> list[str]:
    return ["quantize", "proba", "lexical"]


def test_kwargs_of_a_step_are_its_parameters(tmp_path: Path, model_root: Path) -> None:
    plan = expand(load_infquery(write_spec(tmp_path, model_root)))
    first = plan.jobs["quantize"][0].params
    assert first["quantize_options"]["batch_size"] == 16
    assert "pseudo_probabilities_options" not in first
    assert first["model_root"] == str(model_root.resolve())
    assert first["input"]["audio"]["root_dir"] == "data/wav"
    assert first["output"]["lexical"]["by"] == "length"
    proba = plan.jobs["proba"][0].params
    assert proba["pseudo_probabilities_options"]["inner_batch_size"] == 64
    assert proba["quantize_options"] == first["quantize_options"]  # inherited


def test_scheduling_twice_gives_the_same_hashes(tmp_path: Path, model_root: Path) -> None:
    path = write_spec(tmp_path, model_root)
    one, two = expand(load_spec(path)), expand(load_spec(path))
    assert one.jobs == two.jobs


def test_missing_model_is_named(tmp_path: Path, model_root: Path) -> None:
    path = write_spec(tmp_path, model_root, ('- "baby100"', '- "baby1000"'))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert "model 'baby1000' not found for language 'en'" in str(err)
    assert err.path == "experiments[0].model.selector.en[1]"
    assert err.line == 42 and err.file == str(path)
    assert err.hint == "did you mean 'baby100'?"


def test_missing_language_for_all(tmp_path: Path, model_root: Path) -> None:
    path = write_spec(tmp_path, model_root, ("de: ", "nl: "))
    with pytest.raises(SpecError, match="no folder for language 'nl'"):
        load_spec(path)


def test_models_key_is_accepted_too(tmp_path: Path, model_root: Path) -> None:
    spec = load_spec(write_spec(tmp_path, model_root, ("    model:\n", "    models:\n")))
    assert len(expand(spec).jobs["quantize"]) == len(SELECTED)


def test_several_experiments_get_prefixed_phases(tmp_path: Path, model_root: Path) -> None:
    text = f"""
experiments:
  - name: small
    models: {{model_root: {model_root}, selector: {{en: [baby50]}}}}
    task: quantize | proba
  - models: {{model_root: {model_root}, selector: {{fr: all}}}}
    task: quantize
"""
    path = tmp_path / "two.yaml"
    path.write_text(text)
    plan = expand(load_spec(path))
    assert list(plan.jobs) == ["small.quantize", "small.proba", "exp1.quantize"]
    assert len(plan.jobs["exp1.quantize"]) == 3
    assert plan.spec.phase("small.proba").after == "small.quantize"
