"""Every file of the bad-spec corpus fails with its own message, at its own line.

Each file says what it expects in comment lines at its top: ``# expect:``
(a fragment of the message), ``# line:`` (the 1-based line of the error) and
optionally ``# hint:``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobdb.spec import SpecError, load_spec

CORPUS = sorted((Path(__file__).parent / "bad").glob("*.yaml"))
HEADER = re.compile(r"^# (expect|line|hint): (.*)$", re.MULTILINE)


def expectations(path: Path) -> dict[str, str]:
    return dict(HEADER.findall(path.read_text(encoding="utf-8")))


def test_corpus_covers_every_error_kind() -> None:
    assert len(CORPUS) >= 15
    for path in CORPUS:
        assert {"expect", "line"} <= set(expectations(path)), path.name


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_spec(path: Path) -> None:
    want = expectations(path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert want["expect"] in str(err)
    assert err.line == int(want["line"]), str(err)
    assert err.file == str(path)
    assert str(err).startswith(f"{path}:{want['line']}:{err.column}: ")
    assert err.exit_code == 2
    if "hint" in want:
        assert err.hint == want["hint"]
        assert err.render().endswith(f"\n  hint: {want['hint']}")
