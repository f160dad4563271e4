"""The spec layer: parse → validate → expand into jobs and edges. Pure: no database.

Three input forms end up as one :class:`ExperimentSpec`:

* a jobdb YAML spec (top-level ``name:`` and ``phases:``), :mod:`jobdb.spec.yaml_spec`;
* an InfQuery experiment file (top-level ``experiments:``), :mod:`jobdb.spec.infquery`;
* jobman's command line (``lr={{0.1,0.01}}``), :mod:`jobdb.spec.jobman`.

:func:`jobdb.spec.plan.expand` turns a spec into a :class:`Plan`; every
problem is a :class:`SpecError` (a ``BadInput``, exit code 2) naming the file,
line, column and key path.
"""

from __future__ import annotations

from pathlib import Path

from jobdb.spec.errors import SpecError
from jobdb.spec.located import parse_yaml
from jobdb.spec.model import (
    Dimension,
    ExperimentSpec,
    PhaseSpec,
    Resources,
    RetryPolicy,
    Select,
)
from jobdb.spec.params import canonical, canonical_json, params_hash
from jobdb.spec.plan import Plan, PlannedJob, expand, grid_points, grid_size

__all__ = [
    "Dimension",
    "ExperimentSpec",
    "PhaseSpec",
    "Plan",
    "PlannedJob",
    "Resources",
    "RetryPolicy",
    "Select",
    "SpecError",
    "canonical",
    "canonical_json",
    "expand",
    "grid_points",
    "grid_size",
    "load_spec",
    "params_hash",
    "parse_spec",
]


def load_spec(path: Path | str) -> ExperimentSpec:
    """Read a spec file, telling InfQuery (``experiments:``) from jobdb YAML (``phases:``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(path)) from None
    return parse_spec(text, str(path), base_dir=path.parent)


def parse_spec(text: str, filename: str = "<spec>", base_dir: Path | None = None) -> ExperimentSpec:
    """Parse spec text of either YAML form; ``base_dir`` resolves a relative InfQuery model_root."""
    from jobdb.spec.infquery import spec_from_infquery_doc
    from jobdb.spec.yaml_spec import spec_from_doc

    doc = parse_yaml(text, filename)
    if isinstance(doc.data, dict) and "experiments" in doc.data:
        return spec_from_infquery_doc(doc, text, base_dir or Path.cwd())
    if isinstance(doc.data, dict) and ("phases" in doc.data or "name" in doc.data):
        return spec_from_doc(doc, text)
    raise doc.root.error(
        "not a spec" if doc.data is not None else "the spec is empty",
        expected="a jobdb spec (name:, phases:) or an InfQuery spec (experiments:)",
    )
