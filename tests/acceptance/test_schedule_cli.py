"""``jobdb schedule`` as a user types it (a subprocess), on SQLite and PostgreSQL.

What the command wrote is read back in-process from the database; what it
said is read from its output. Subprocesses are slow (about a second each on
a busy machine), so each test asks the command several things.
"""

from __future__ import annotations

import getpass
import hashlib
import itertools
import json
import re
import socket
import subprocess
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import aliased

import jobdb as jobdb_package
from jobdb import scheduling
from jobdb.cli import boundary
from jobdb.models import Attempt, Edge, Event, Experiment, Job, Phase
from jobdb.provenance import Provenance
from jobdb.spec import expand, parse_spec
from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb

SPECS = Path(__file__).parents[1] / "integration" / "specs"
BAD_SPECS = sorted(SPECS.glob("bad_*.yaml"))
INFQUERY_SEED = Path(__file__).parents[1] / "spec" / "fixtures" / "infquery_seed.yaml"
HEADER = re.compile(r"^# (expect|line): (.*)$", re.MULTILINE)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def counts(url: URL) -> dict[str, int]:
    store = connect(url)
    try:
        with store.read() as conn:
            return {
                m.__tablename__: conn.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Experiment, Phase, Job, Edge, Attempt, Event)
            }
    finally:
        store.dispose()


def experiment_row(url: URL, name: str) -> dict[str, Any]:
    store = connect(url)
    try:
        with store.read() as conn:
            table = Experiment.__table__
            rows = conn.execute(select(table).where(table.c.name == name)).mappings().all()
            (found,) = rows
            return dict(found)
    finally:
        store.dispose()


def jobs_and_parents(
    url: URL, experiment: str
) -> tuple[dict[int, tuple[str, dict[str, Any], str]], dict[int, set[int]]]:
    """``{id: (phase, params, state)}`` and ``{child id: parent ids}`` of an experiment."""
    child = aliased(Job, name="child")
    store = connect(url)
    try:
        with store.read() as conn:
            jobs = {
                i: (phase, params, state)
                for i, phase, params, state in conn.execute(
                    select(Job.id, Phase.name, Job.params, Job.state)
                    .join(Phase, Phase.id == Job.phase_id)
                    .join(Experiment, Experiment.id == Job.experiment_id)
                    .where(Experiment.name == experiment)
                )
            }
            parents: dict[int, set[int]] = {}
            for p, c in conn.execute(
                select(Edge.parent_id, Edge.child_id)
                .join(child, child.id == Edge.child_id)
                .where(child.experiment_id.in_(select(Job.experiment_id).where(Job.id.in_(jobs))))
            ):
                parents.setdefault(c, set()).add(p)
            return jobs, parents
    finally:
        store.dispose()


def sqlite_fingerprint(url: URL) -> tuple[str, bool]:
    """Hash of the SQLite file and whether a WAL file lies next to it."""
    path = Path(str(url.database))
    return hashlib.sha256(path.read_bytes()).hexdigest(), Path(f"{path}-wal").exists()


def schedule_in_process(url: URL, path: Path) -> None:
    store = connect(url)
    try:
        plan = expand(parse_spec(path.read_text(), str(path)))
        provenance = Provenance(None, None, None, "h", "u", "0")
        with store.write() as conn:
            scheduling.write_plan(conn, plan, provenance, actor="test")
    finally:
        store.dispose()


DBN = """\
name: dbn
phases:
  - name: pretrain
    command: python dbn.py pretrain --layers {layers} --lr {pretrain_lr}
    grid: {layers: [1, 2], pretrain_lr: [0.1, 0.01]}
  - name: finetune
    after: pretrain
    command: python dbn.py finetune --layers {layers} --plr {pretrain_lr} --lr {finetune_lr}
    grid: {finetune_lr: [0.1, 0.01]}
"""


# --------------------------------------------------------------------------
# a bad spec changes nothing


# Every file on SQLite; on PostgreSQL the one whose first phases would be new rows.
# (The spec is read before the database is opened, so the backend matters little.)
BAD_CASES = [pytest.param("sqlite", p, id=f"sqlite-{p.stem}") for p in BAD_SPECS] + [
    pytest.param(
        "postgres",
        SPECS / "bad_after_unknown.yaml",
        id="postgres-bad_after_unknown",
        marks=pytest.mark.postgres,
    )
]


@pytest.mark.parametrize(("db_url", "bad"), BAD_CASES, indirect=["db_url"])
def test_a_bad_spec_exits_2_naming_file_and_line_and_changes_nothing(
    db_url: URL, tmp_path: Path, bad: Path
) -> None:
    want = dict(HEADER.findall(bad.read_text()))
    good = tmp_path / "dbn.yaml"
    good.write_text(DBN)
    schedule_in_process(db_url, good)  # the experiment the bad spec would change
    before = counts(db_url)
    row_before = experiment_row(db_url, "dbn")
    sqlite = db_url.get_backend_name() == "sqlite"
    fingerprint = sqlite_fingerprint(db_url) if sqlite else None

    proc = jobdb("schedule", str(bad), "--db", db_arg(db_url), cwd=tmp_path, check=2)
    assert f"{bad}:{want['line']}:" in proc.stderr
    assert want["expect"] in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert counts(db_url) == before
    assert experiment_row(db_url, "dbn") == row_before
    if sqlite:
        assert sqlite_fingerprint(db_url) == fingerprint


def test_a_bad_spec_creates_no_sqlite_file(tmp_path: Path) -> None:
    target = tmp_path / "never.sqlite"
    bad = SPECS / "bad_after_unknown.yaml"
    proc = jobdb("schedule", str(bad), "--db", f"sqlite:///{target}", cwd=tmp_path, check=2)
    assert "unknown phase 'finetnue'" in proc.stderr
    assert "did you mean 'finetune'?" in proc.stderr
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def run_in_process(*args: str) -> int:
    """The CLI in this process, for commands that fail before opening a database."""
    return boundary.run(list(args))


def test_the_error_message_names_a_path_with_brackets_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "run[a]"
    folder.mkdir()
    bad = folder / "spec.yaml"
    bad.write_text((SPECS / "bad_unknown_key.yaml").read_text())
    code = run_in_process("schedule", str(bad), "--db", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert code == 2
    assert f"{bad}:13:" in capsys.readouterr().err


# --------------------------------------------------------------------------
# InfQuery

MODELS = {
    "en": ["baby50", "baby100", "baby200"],
    "fr": ["baby200", "baby3600", "unused"],
    "de": ["kind1", "kind2"],
}
SELECTED = {
    ("en", "baby50"),
    ("en", "baby100"),
    ("en", "baby200"),
    ("fr", "baby200"),
    ("fr", "baby3600"),
    ("de", "kind1"),
    ("de", "kind2"),
}
STEPS = ["quantize", "proba", "lexical"]


def test_infquery_seed_scheduled_one_job_per_model_and_step(db_url: URL, tmp_path: Path) -> None:
    root = tmp_path / "models"
    for lang, names in MODELS.items():
        for name in names:
            (root / lang / name).mkdir(parents=True)
    (root / "de" / "README").write_text("not a model")
    spec = tmp_path / "infquery.yaml"
    spec.write_text(INFQUERY_SEED.read_text().replace("MODEL_ROOT", str(root)))

    out = jobdb("schedule", str(spec), "--db", db_arg(db_url), "--json", cwd=tmp_path).stdout
    report = json.loads(out)
    assert [(p["phase"], p["new"]) for p in report["phases"]] == [(s, 7) for s in STEPS]
    assert report["new_jobs"] == 21 and report["new_edges"] == 14 and report["ready"] == 7

    row = experiment_row(db_url, "infquery")
    assert row["spec_format"] == "infquery"
    assert row["settings"] == {"sbatch_mode": "array", "debug": False, "hostname": "oberon"}
    jobs, parents = jobs_and_parents(db_url, "infquery")
    by_step: dict[str, dict[tuple[str, str], int]] = {step: {} for step in STEPS}
    for job_id, (phase, params, _) in jobs.items():
        model = (params["lang"], params["model"])
        assert model not in by_step[phase], f"two {phase} jobs for {model}"
        by_step[phase][model] = job_id
    for step in STEPS:
        assert set(by_step[step]) == SELECTED
    for model in SELECTED:
        assert by_step["quantize"][model] not in parents
        assert jobs[by_step["quantize"][model]][2] == "ready"
        for previous, step in itertools.pairwise(STEPS):
            assert parents[by_step[step][model]] == {by_step[previous][model]}
            assert jobs[by_step[step][model]][2] == "waiting"
    quantize = jobs[by_step["quantize"][("en", "baby50")]][1]
    assert quantize["quantize_options"]["batch_size"] == 16
    assert sum(len(p) for p in parents.values()) == 14


# --------------------------------------------------------------------------
# dry run and JSON

CV = """\
name: cv
phases:
  - name: cv
    command: python train.py --lr {lr} --fold {fold}
    grid: {lr: [0.1, 0.01, 0.001]}
    folds: 3
  - name: retrain
    after: cv
    select: {metric: val_loss, mode: min, aggregate: mean, keys: [lr]}
    command: python train.py --lr {lr} --all
  - name: test
    after: retrain
    command: python test.py
"""


def test_dry_run_writes_nothing_then_json_reports_what_was_written(
    db_url: URL, tmp_path: Path
) -> None:
    spec = tmp_path / "cv.yaml"
    spec.write_text(CV)
    db = db_arg(db_url)
    before = counts(db_url)

    if db_url.get_backend_name() == "sqlite":  # the table is the same on both backends
        dry = jobdb("schedule", str(spec), "--db", db, "--dry-run", cwd=tmp_path).stdout
        assert counts(db_url) == before
        assert "would create" in dry
        for phase, planned in (("cv", 9), ("retrain", 1), ("test", 1)):
            assert re.search(rf"│ {phase}\s+│\s+{planned} │\s+0 │\s+{planned} │", dry), dry
        assert "Dry run: would create 11 jobs and 10 edges; nothing was written." in dry
        assert "sample" in dry and "fold=0" in dry

    report = json.loads(jobdb("schedule", str(spec), "--db", db, "--json", cwd=tmp_path).stdout)
    assert report == {
        "experiment": "cv",
        "dry_run": False,
        "phases": [
            {"phase": "cv", "planned": 9, "new": 9, "existing": 0},
            {"phase": "retrain", "planned": 1, "new": 1, "existing": 0},
            {"phase": "test", "planned": 1, "new": 1, "existing": 0},
        ],
        "new_jobs": 11,
        "new_edges": 10,
        "ready": 9,
        "blocked": 0,
    }
    after = counts(db_url)
    assert (after["jobs"], after["edges"], after["experiments"]) == (11, 10, 1)
    row = experiment_row(db_url, "cv")
    assert row["spec_text"] == CV and row["spec_format"] == "yaml"
    assert row["git_commit"] is None and row["git_dirty"] is None  # tmp_path is no work tree

    grown = CV.replace("0.001]", "0.001, 0.0001]")
    spec.write_text(grown)
    dry = json.loads(
        jobdb("schedule", str(spec), "--db", db, "--dry-run", "--json", cwd=tmp_path).stdout
    )
    assert dry["dry_run"] is True
    assert [(p["phase"], p["new"], p["existing"]) for p in dry["phases"]] == [
        ("cv", 3, 9),
        ("retrain", 0, 1),
        ("test", 0, 1),
    ]
    assert dry["new_jobs"] == 3 and dry["new_edges"] == 3
    assert counts(db_url) == after
    assert experiment_row(db_url, "cv")["spec_text"] == CV


# --------------------------------------------------------------------------
# jobman's command line

JOBMAN = ["-e", "sweep", "--command", "python t.py --lr {lr}"]
JOBMAN_GRID = ["lr={{0.1,0.01}}", "wd={{0,1e-4}}", "layers=2"]


def test_jobman_form_creates_the_product_once(db_url: URL, tmp_path: Path) -> None:
    db = db_arg(db_url)
    out = jobdb("schedule", *JOBMAN, *JOBMAN_GRID, "--db", db, cwd=tmp_path).stdout
    assert "Created 4 jobs and 0 edges; 4 ready." in out
    listed = json.loads(jobdb("list", "--db", db, "--json", "-e", "sweep", cwd=tmp_path).stdout)
    assert len(listed) == 4
    assert {(j["experiment"], j["phase"], j["state"]) for j in listed} == {
        ("sweep", "main", "ready")
    }
    params = Counter(tuple(sorted(j["params"].items())) for j in listed)
    assert params == Counter(
        (("layers", 2), ("lr", lr), ("wd", wd)) for lr in (0.1, 0.01) for wd in (0, 0.0001)
    )
    before = counts(db_url)
    again = jobdb("schedule", *JOBMAN, *JOBMAN_GRID, "--db", db, cwd=tmp_path).stdout
    assert "Nothing new: all 4 jobs are already scheduled." in again
    assert counts(db_url) == before
    row = experiment_row(db_url, "sweep")
    assert row["spec_format"] == "jobman"


def test_command_without_experiment_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "db.sqlite"
    args = ["--command", "python t.py", "lr={{1,2}}", "--db", f"sqlite:///{target}"]
    assert run_in_process("schedule", *args) == 2
    assert "--command needs --experiment" in capsys.readouterr().err
    assert not target.exists()


# --------------------------------------------------------------------------
# provenance


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]
    proc = subprocess.run(
        ["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_provenance_of_a_spec_in_a_dirty_git_work_tree(db_url: URL, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    spec = repo / "specs" / "dbn.yaml"
    spec.write_text(DBN)
    git(repo, "init", "-q", "-b", "exp-branch")
    git(repo, "add", "specs/dbn.yaml")
    git(repo, "commit", "-q", "-m", "spec")
    commit = git(repo, "rev-parse", "HEAD")
    spec.write_text(DBN + "# edited after the commit\n")

    elsewhere = tmp_path / "cwd"  # git is asked about the spec's folder, not the cwd
    elsewhere.mkdir()
    jobdb("schedule", str(spec), "--db", db_arg(db_url), cwd=elsewhere)
    row = experiment_row(db_url, "dbn")
    assert row["git_commit"] == commit
    assert row["git_dirty"] is True
    assert row["git_branch"] == "exp-branch"
    assert row["host"] == socket.gethostname()
    assert row["user"] == getpass.getuser()
    assert row["jobdb_version"] == jobdb_package.__version__
    assert row["spec_text"].endswith("# edited after the commit\n")


# --------------------------------------------------------------------------
# confirmation above 100,000 new jobs

VALUES = json.dumps(list(range(47)))
BIG = textwrap.dedent(
    f"""\
    name: big
    phases:
      - name: sweep
        command: run {{a}} {{b}} {{c}}
        grid: {{a: {VALUES}, b: {VALUES}, c: {VALUES}}}
    """
)
BIG_JOBS = 47**3  # 103,823


@SQLITE_ONLY
def test_above_100_000_new_jobs_it_asks(db_url: URL, tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(BIG)
    db = db_arg(db_url)
    fingerprint = sqlite_fingerprint(db_url)

    refused = jobdb("schedule", str(spec), "--db", db, cwd=tmp_path, check=2, stdin="y\n")
    assert "--yes" in refused.stderr
    assert f"{BIG_JOBS:,} new jobs" in refused.stderr
    assert counts(db_url)["jobs"] == 0
    assert sqlite_fingerprint(db_url) == fingerprint

    done = jobdb("schedule", str(spec), "--db", db, "--yes", cwd=tmp_path).stdout
    assert f"Created {BIG_JOBS:,} jobs" in done
    assert counts(db_url)["jobs"] == BIG_JOBS
