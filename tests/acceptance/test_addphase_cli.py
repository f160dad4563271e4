"""jobman's phase form through the CLI: the seed's DBN example, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Edge, Job, Phase
from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb

PRETRAIN = "python dbn.py --phase pretrain --layers {layers} --lr {lr}"
FINETUNE = "python dbn.py --phase finetune --layers {layers} --lr {lr} --ft {ft_lr}"
RETRAIN = "python dbn.py --phase retrain --layers {layers}"


def edges_by_phase(url: URL) -> list[tuple[str, dict[str, object], str, dict[str, object]]]:
    store = connect(url)
    parent, child = Job.__table__.alias("p"), Job.__table__.alias("c")
    pphase, cphase = Phase.__table__.alias("pp"), Phase.__table__.alias("cp")
    query = (
        select(pphase.c.name, parent.c.params, cphase.c.name, child.c.params)
        .select_from(Edge)
        .join(parent, parent.c.id == Edge.parent_id)
        .join(child, child.c.id == Edge.child_id)
        .join(pphase, pphase.c.id == parent.c.phase_id)
        .join(cphase, cphase.c.id == child.c.phase_id)
        .order_by(Edge.child_id, Edge.parent_id)
    )
    with store.read() as conn:
        rows = [(a, dict(b), c, dict(d)) for a, b, c, d in conn.execute(query)]
    store.dispose()
    return rows


def test_dbn_pretrain_finetune_retrain(db_url: URL, tmp_path: Path) -> None:
    db = db_arg(db_url)

    def schedule(*args: str, check: int = 0) -> str:
        return jobdb("schedule", "--db", db, "-e", "dbn", *args, cwd=tmp_path, check=check).stdout

    out = schedule(
        "--phase", "pretrain", "--command", PRETRAIN, "layers={{1,2,3}}", "lr={{0.1,0.01}}"
    )
    assert "Created 6 jobs" in out
    # Each pretrain job gets its own finetune grid and passes its parameters on.
    out = schedule(
        "--phase",
        "finetune",
        "--command",
        FINETUNE,
        "phase=pretrain",
        "--",
        "--",
        "ft_lr={{0.1,0.01}}",
    )
    assert "Created 12 jobs and 12 edges" in out
    # Retrain: finetune jobs with lr=0.1, grouped by layers; one retrain per group.
    out = schedule(
        "--phase", "retrain", "--command", RETRAIN, "phase=finetune", "lr=0.1", "--", "layers", "--"
    )
    assert "Created 3 jobs and 6 edges" in out
    again = schedule(
        "--phase", "retrain", "--command", RETRAIN, "phase=finetune", "lr=0.1", "--", "layers", "--"
    )
    assert "Nothing new" in again

    edges = edges_by_phase(db_url)
    finetune = [e for e in edges if e[2] == "finetune"]
    assert len(finetune) == 12
    for _, parent, _, child in finetune:
        assert {k: child[k] for k in ("layers", "lr")} == parent
    retrain = [e for e in edges if e[2] == "retrain"]
    assert len(retrain) == 6
    for _, parent, _, child in retrain:
        assert parent["lr"] == 0.1
        assert child == {"layers": parent["layers"]}

    listed = json.loads(jobdb("list", "--db", db, "--json", "-p", "retrain", cwd=tmp_path).stdout)
    assert sorted(j["params"]["layers"] for j in listed) == [1, 2, 3]
    assert {j["state"] for j in listed} == {"waiting"}


def test_phase_form_errors_change_nothing(db_url: URL, tmp_path: Path) -> None:
    db = db_arg(db_url)
    jobdb(
        "schedule",
        "--db",
        db,
        "-e",
        "dbn",
        "--phase",
        "pretrain",
        "--command",
        PRETRAIN,
        "layers={{1,2}}",
        "lr=0.1",
        cwd=tmp_path,
    )
    cases = [
        (
            ["-e", "nope", "--phase", "x", "--command", "t", "phase=pretrain", "--", "--"],
            "no experiment named 'nope'",
        ),
        (
            ["-e", "dbn", "--phase", "x", "--command", "t", "phase=missing", "--", "--"],
            "no job of this experiment matches",
        ),
        (
            ["-e", "dbn", "--phase", "x", "--command", "t", "phase=pretrain", "--", "depth", "--"],
            "group key 'depth' is not a parameter",
        ),
        (
            ["-e", "dbn", "--phase", "x", "--command", "t {nope}", "phase=pretrain", "--", "--"],
            "{nope}",
        ),
        (
            ["-e", "dbn", "--phase", "x", "--command", "t", "phase=pretrain", "--", "--", "lr={{1"],
            "brace",
        ),
    ]
    for args, message in cases:
        proc = jobdb("schedule", "--db", db, *args, cwd=tmp_path, check=2)
        assert message in proc.stderr, proc.stderr
    status = json.loads(jobdb("status", "--db", db, "--json", cwd=tmp_path).stdout)
    assert [row["phase"] for row in status] == ["pretrain"]
    assert status[0]["total"] == 2
