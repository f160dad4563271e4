"""docs/spec.md and examples/*.yaml: every spec example parses, expands, and has its stated size.

A ```yaml block of docs/spec.md that starts with ``name:`` is a whole jobdb
spec. When the block is followed (after its dry-run output) by
``<!-- jobs: N -->`` before the next ```yaml block, the spec must expand to
exactly N jobs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobdb.spec import expand, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "spec.md"
BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.MULTILINE | re.DOTALL)
JOBS = re.compile(r"<!-- jobs: (\d+) -->")

#: examples/*.yaml → (jobs per phase, edges), as stated in the files' comments and docs/spec.md.
EXAMPLES = {
    "dbn.yaml": ({"pretrain": 12, "finetune": 36, "retrain": 1, "test": 1}, 73),
    "cv.yaml": ({"cv": 30, "retrain": 1, "test": 1}, 31),
    "nested_cv.yaml": (
        {"split": 5, "inner": 120, "outer_retrain": 5, "outer_test": 5, "report": 1},
        250,
    ),
}


def doc_specs() -> list[tuple[int, str, int | None]]:
    """(line, spec text, stated job count or None) for each spec block of docs/spec.md."""
    text = DOC.read_text(encoding="utf-8")
    matches = list(BLOCK.finditer(text))
    out = []
    for i, match in enumerate(matches):
        body = match.group(1)
        if not body.startswith("name:"):
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        stated = JOBS.search(text, match.end(), end)
        line = text.count("\n", 0, match.start()) + 1
        out.append((line, body, int(stated.group(1)) if stated else None))
    return out


SPECS = doc_specs()


def test_the_doc_has_spec_examples_with_counts() -> None:
    assert len(SPECS) >= 15
    assert sum(count is not None for _, _, count in SPECS) >= 15


@pytest.mark.parametrize(("line", "text", "count"), SPECS, ids=[f"line{s[0]}" for s in SPECS])
def test_doc_example_expands(line: int, text: str, count: int | None) -> None:
    plan = expand(parse_spec(text, f"docs/spec.md:{line}"))
    assert plan.job_count > 0
    if count is not None:
        assert plan.job_count == count


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_file_expands_to_documented_counts(name: str) -> None:
    per_phase, edges = EXAMPLES[name]
    plan = expand(load_spec(ROOT / "examples" / name))
    assert {phase: len(jobs) for phase, jobs in plan.jobs.items()} == per_phase
    assert len(plan.edges) == edges
    total = sum(per_phase.values())
    comment = (ROOT / "examples" / name).read_text(encoding="utf-8")
    assert f"= {total} jobs and" in comment
    assert f"= {edges} edges" in comment
    assert f"would create {total} jobs and {edges} edges" in DOC.read_text(encoding="utf-8")
