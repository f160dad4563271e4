"""sbatch submissions rendered by pure functions, compared with golden files.

Regenerate after an intended change with ``JOBDB_UPDATE_GOLDEN=1 pytest
tests/unit/test_slurm_render.py`` and review the diff. The weird cases run
paths with spaces, quotes, ``$``, ``;`` and newlines through every place
that becomes a shell script or an sbatch argument, and check the script's
command survives a real ``bash`` word for word.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from jobdb.errors import BadInput
from jobdb.slurm import render
from jobdb.slurm.options import Overrides, SettingError, SlurmOptions, from_settings

GOLDEN = Path(__file__).parent / "golden" / "slurm"
WEIRD = '/data/my runs/it\'s "$HOME"; echo pwned\nline2 %j'
IDENTITY = "0123456789abcdef"
SUBMITTER = "node1:4242:1700000000.00"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("JOBDB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with JOBDB_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def launcher(runs: str = "/data/runs") -> render.Launcher:
    return render.Launcher("/opt/venv/bin/python", runs, 10.0)


def full_request() -> render.Request:
    options = from_settings(
        {
            "slurm": {
                "partition": "debug",
                "account": "speech",
                "qos": "normal",
                "constraint": "a100|h100 & ib",
                "extra": ["--exclusive"],
            }
        }
    )
    resources = {"gpus": 2, "cpus": 8, "mem": "16G", "time": "1-00:00:00", "extra": ["--nice=10"]}
    return render.request(options, resources)


def test_single_job_golden() -> None:
    sub = render.render_single(
        full_request(), launcher(), identity=IDENTITY, submitter=SUBMITTER,
        job_id=42, attempt=2, log_dir="/data/runs/slurm",
    )  # fmt: skip
    check_golden("single.sh", sub.golden())
    assert sub.name == f"jobdb-{IDENTITY}-42-2"


def test_minimal_single_job_golden() -> None:
    sub = render.render_single(
        render.request(SlurmOptions(), {}), launcher(), identity=IDENTITY, submitter=SUBMITTER,
        job_id=1, attempt=1, log_dir="/data/runs/slurm",
    )  # fmt: skip
    check_golden("single_minimal.sh", sub.golden())
    assert "--signal" not in sub.script  # no time limit, no warning signal


def test_array_golden() -> None:
    sub = render.render_array(
        full_request(), launcher(), identity=IDENTITY, submitter=SUBMITTER,
        phase_id=7, tasks=40, max_running=5, log_dir="/data/runs/slurm",
    )  # fmt: skip
    check_golden("array.sh", sub.golden())
    assert "#SBATCH --array=0-39%5" in sub.script


def test_dependent_golden() -> None:
    req = dataclasses.replace(render.request(SlurmOptions(), {}), after=("101", "7"))
    sub = render.render_single(
        req, launcher(), identity=IDENTITY, submitter=SUBMITTER,
        job_id=9, attempt=1, log_dir="/data/runs/slurm",
    )  # fmt: skip
    check_golden("dependent.sh", sub.golden())
    assert "#SBATCH --dependency=afterok:101:7\n#SBATCH --kill-on-invalid-dep=yes\n" in sub.script


def test_a_dependency_is_on_slurm_job_ids_only() -> None:
    assert render.dependency(()) == []
    with pytest.raises(ValueError, match="not a Slurm job id"):
        render.dependency(("12", "12_3"))


def test_weird_paths_golden_and_bash_reads_them_back(tmp_path: Path) -> None:
    sub = render.render_single(
        render.request(SlurmOptions(), {"time": "5"}), launcher(WEIRD), identity=IDENTITY,
        submitter=SUBMITTER, job_id=3, attempt=1, log_dir=WEIRD + "/slurm",
    )  # fmt: skip
    check_golden("weird.sh", sub.golden())
    # The log path is one sbatch argument, '%' doubled so Slurm keeps it literal.
    assert f"--output={WEIRD.replace('%', '%%')}/slurm/job-3-1-%j.out" in sub.argv
    # bash parses the script's exec line back into exactly the words we meant.
    exec_line = sub.script[sub.script.index("exec ") :]
    probe = tmp_path / "probe.sh"
    probe.write_text('printf "%s\\0" ' + exec_line.removeprefix("exec "))
    out = subprocess.run(["bash", str(probe)], capture_output=True, check=True).stdout
    words = out.decode().split("\0")[:-1]
    assert words[words.index("--runs-dir") + 1] == WEIRD
    assert words[:5] == ["/opt/venv/bin/python", "-m", "jobdb", "run", "3"]
    # No #SBATCH line holds anything from the path.
    assert all("pwned" not in line for line in sub.script.splitlines() if line.startswith("#SB"))


def test_comment_round_trips() -> None:
    assert render.parse_comment(render.comment(IDENTITY, SUBMITTER)) == (IDENTITY, SUBMITTER)
    assert render.parse_comment("someone else's job") is None


def test_sbatch_quoted_constraint_and_argv_is_a_plain_list() -> None:
    sub = render.render_single(
        full_request(), launcher(), identity=IDENTITY, submitter=SUBMITTER,
        job_id=1, attempt=1, log_dir="/x",
    )  # fmt: skip
    assert '#SBATCH --constraint="a100|h100 & ib"' in sub.script
    assert sub.argv[:3] == ("sbatch", "--parsable", "--hold")
    assert shlex.split(shlex.join(sub.argv)) == list(sub.argv)


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [(0, 5, []), (5, 5, [5]), (45, 40, [40, 5]), (81, 40, [40, 40, 1]), (3, 1, [1, 1, 1])],
)
def test_chunk_sizes_keep_indices_below_max_array_size(
    count: int, limit: int, sizes: list[int]
) -> None:
    assert render.chunk_sizes(count, limit) == sizes


def test_phase_resources_win_over_settings_and_overrides_win_over_both() -> None:
    options = from_settings(
        {"sbatch_mode": "array", "slurm": {"partition": "cpu", "time": "10", "mem": "1G"}},
        Overrides(array=False, partition="gpu", max_running=3, extra=("--exclusive",)),
    )
    assert options.mode == "single" and options.max_running == 3
    req = render.request(options, {"time": "20", "partition": None})
    assert (req.partition, req.time, req.mem, req.extra) == ("gpu", "20", "1G", ("--exclusive",))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sbatch_mode": "bulk"}, "sbatch_mode"),
        ({"slurm": {"partitoin": "x"}}, "unknown key 'partitoin'"),
        ({"slurm": {"partition": "a b"}}, "not usable as a Slurm value"),
        ({"slurm": {"max_running": 0}}, "max_running"),
        ({"slurm": {"extra": ["--a\n--b"]}}, "not one sbatch option"),
        ({"slurm": {"extra": "--exclusive"}}, "a list of sbatch options"),
        ({"slurm": ["partition"]}, "expected a mapping"),
        ({"slurm": {"time": "4h"}}, "not a Slurm time limit"),
        ({"slurm": {"time": True}}, "not a Slurm time limit"),
        ({"slurm": {"mem": "lots"}}, "not a Slurm memory size"),
        ({"slurm": {"signal": -1}}, "seconds ≥ 0"),
        ({"slurm": {"constraint": ""}}, "one line of text"),
        ({"slurm": {"extra": ["--requeue"]}}, "run the job twice"),
        ({"slurm": {"extra": ["-J", "x"]}}, "settings.slurm.extra[0]"),
        ({"slurm": {"extra": ["--dependency=afterok:1"]}}, "--slurm-dependencies"),
    ],
)
def test_bad_settings_are_refused_with_the_key(settings: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput) as err:
        from_settings(settings)
    assert message in f"{err.value} {err.value.hint}"


def test_bad_phase_resource_is_refused() -> None:
    with pytest.raises(BadInput, match=r"resources\.partition"):
        render.request(SlurmOptions(), {"partition": "x; rm -rf /"})
    with pytest.raises(BadInput, match=r"resources\.extra\[1\]: '--output=x'"):
        render.request(SlurmOptions(), {"extra": ["--exclusive", "--output=x"]})


def test_setting_errors_carry_the_key_path_for_the_spec() -> None:
    with pytest.raises(SettingError) as info:
        from_settings({"slurm": {"extra": ["--exclusive", "--job-name=x"]}})
    assert info.value.path == ("settings", "slurm", "extra", 1)
    assert str(info.value).startswith("settings.slurm.extra[1]: '--job-name=x': ")
    with pytest.raises(SettingError) as info:
        from_settings({"slurm": {"partiton": "gpu"}})
    assert (info.value.path, info.value.at_key) == (("settings", "slurm", "partiton"), True)
    with pytest.raises(SettingError, match=r"^--partition: 'a b'"):
        from_settings({}, Overrides(partition="a b"))


@pytest.mark.parametrize(
    "option", ["--no-requeue", "--exclusive", "--nice=10", "--mail-type=END", "-N1"]
)
def test_options_jobdb_does_not_set_are_allowed(option: str) -> None:
    assert from_settings({"slurm": {"extra": [option]}}).extra == (option,)


@pytest.mark.parametrize(
    ("limit", "seconds", "lead"),
    [
        ("1", 60, 30),
        ("0:20", 20, 10),
        ("2:00:00", 7200, 60),
        ("1-0", 86400, 60),
        ("1-2:3", 93780, 60),
    ],
)
def test_signal_lead_is_at_most_half_the_limit(limit: str, seconds: int, lead: int) -> None:
    assert render.time_seconds(limit) == seconds
    assert render.signal_lead(render.request(SlurmOptions(), {"time": limit})) == lead


@pytest.mark.parametrize(
    ("jobs", "max_running", "limit", "tasks", "parts"),
    [
        (200, 16, 40, [16], [200]),  # 16 tasks pull 200 jobs
        (200, None, 40, [40] * 5, [40] * 5),  # a task per job, chunked
        (45, None, 40, [40, 5], [40, 5]),
        (100, 60, 40, [40, 20], [66, 34]),  # jobs follow the tasks
        (3, 16, 40, [3], [3]),
    ],
)
def test_split_batch(
    jobs: int, max_running: int | None, limit: int, tasks: list[int], parts: list[int]
) -> None:
    assert render.split_batch(jobs, max_running, limit) == (tasks, parts)
    assert sum(parts) == jobs
