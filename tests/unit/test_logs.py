"""Reading log files: the last lines, what is new since the last read, following to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobdb import logs
from jobdb.errors import NotFound
from jobdb.logs import AttemptLogs, Cursor


def read(cursor: Cursor) -> bytes:
    return b"".join(cursor.read_new())


def write(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n\n", 1, b"\n"),
        (b"progress 1\rprogress 2\rdone\n", 1, b"progress 1\rprogress 2\rdone\n"),
    ],
)
def test_last_lines(tmp_path: Path, text: bytes, n: int, expected: bytes) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(text)
    cursor = Cursor("stdout", path)
    cursor.skip_to_last_lines(n)
    assert read(cursor) == expected


def test_last_lines_across_many_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    lines = [f"line {i:06d} {'x' * 200}\n".encode() for i in range(2000)]
    path.write_bytes(b"".join(lines))
    cursor = Cursor("stdout", path)
    cursor.skip_to_last_lines(700)
    assert read(cursor) == b"".join(lines[-700:])


def test_a_cursor_returns_only_what_is_new(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    cursor = Cursor("stdout", path)
    assert read(cursor) == b""  # not there yet
    write(path, b"one\n")
    assert read(cursor) == b"one\n"
    assert read(cursor) == b""
    write(path, b"two")
    assert read(cursor) == b"two"


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"a long first version\n")
    cursor = Cursor("stdout", path)
    read(cursor)
    path.write_bytes(b"new\n")
    assert read(cursor) == b"new\n"


def test_follow_reads_until_the_attempt_ends_and_then_the_rest(tmp_path: Path) -> None:
    """The end is seen before the last read, so output written just before it is not lost."""
    out, err = tmp_path / "out", tmp_path / "err"
    cursors = [Cursor("stdout", out), Cursor("stderr", err)]
    script = iter(
        [
            (True, out, b"epoch 1\n"),
            (True, err, b"warning\n"),
            (False, out, b"epoch 2\n"),
        ]
    )
    pauses: list[float] = []

    def still_active() -> bool:
        active, path, data = next(script)
        write(path, data)
        return active

    got = [(c.stream, data) for c, data in logs.follow(cursors, still_active, sleep=pauses.append)]
    assert got == [("stdout", b"epoch 1\n"), ("stderr", b"warning\n"), ("stdout", b"epoch 2\n")]
    assert pauses == [0.5, 0.5]


def test_cursors_of_an_attempt(tmp_path: Path) -> None:
    both = AttemptLogs(3, 1, "running", "/l/out", "/l/err")
    assert [c.stream for c in both.cursors(logs.STREAMS)] == ["stdout", "stderr"]
    assert [c.stream for c in both.cursors(["stderr"])] == ["stderr"]
    merged = AttemptLogs(3, 1, "running", "/l/all", "/l/all")
    assert [c.stream for c in merged.cursors(logs.STREAMS)] == ["stdout"]
    no_err = AttemptLogs(3, 2, "done", "/l/out", None)
    with pytest.raises(NotFound, match="job 3 attempt 2 \\(done\\) has no stderr log"):
        no_err.cursors(["stderr"])


def test_files_that_do_not_exist_are_refused(tmp_path: Path) -> None:
    found = AttemptLogs(3, 1, "done", str(tmp_path / "gone"), None)
    with pytest.raises(NotFound, match="no log file at"):
        logs.require_files(found, found.cursors(logs.STREAMS))
