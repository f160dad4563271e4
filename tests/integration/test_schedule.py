"""Scheduling against real databases: what ``write_plan`` leaves in SQLite and PostgreSQL.

The spec layer's own tests (``tests/spec``) check the plan; these check the
rows: every edge is read back from the database joined to its jobs' phase
names and parameters and compared with an expectation built by hand (not
from the plan), then idempotence, initial states and the one transaction.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from jobdb import queries, scheduling
from jobdb.models import Attempt, Edge, Event, Experiment, Job, Phase
from jobdb.provenance import Provenance
from jobdb.spec import expand, parse_spec
from jobdb.states import State
from jobdb.store import Store
from tests.specs import CV, DBN, NESTED

ACTOR = "test-schedule"
PROVENANCE = Provenance(
    git_commit=None,
    git_dirty=None,
    git_branch=None,
    host="testhost",
    user="tester",
    jobdb_version="0",
)

Key = tuple[tuple[str, Any], ...]
EdgeKey = tuple[str, Key, str, Key]


def key(params: Mapping[str, Any]) -> Key:
    """A hashable identity of flat parameters (``0 == 0.0``, as the hash treats them)."""
    return tuple(sorted(params.items()))


def schedule(store: Store, text: str, filename: str = "spec.yaml") -> scheduling.ScheduleResult:
    """What ``jobdb schedule`` does with ``text``: parse, expand, one write transaction."""
    plan = expand(parse_spec(textwrap.dedent(text), filename))
    with store.write() as conn:
        return scheduling.write_plan(conn, plan, PROVENANCE, actor=ACTOR)


def dry_run(store: Store, text: str) -> scheduling.ScheduleResult:
    plan = expand(parse_spec(textwrap.dedent(text), "spec.yaml"))
    with store.read() as conn:
        return scheduling.preview(conn, plan)


@dataclass
class Graph:
    """Jobs and edges of one experiment, as the database holds them."""

    jobs: dict[int, tuple[str, dict[str, Any], str]] = field(default_factory=dict)
    edges: set[EdgeKey] = field(default_factory=set)
    edge_ids: set[tuple[int, int]] = field(default_factory=set)

    def phase(self, name: str) -> list[dict[str, Any]]:
        return [params for phase, params, _ in self.jobs.values() if phase == name]

    def id_of(self, phase: str, **params: Any) -> int:
        (found,) = [i for i, (p, ps, _) in self.jobs.items() if p == phase and ps == params]
        return found

    def states(self, phase: str) -> Counter[str]:
        return Counter(state for p, _, state in self.jobs.values() if p == phase)

    def state_of(self, phase: str, **params: Any) -> str:
        return self.jobs[self.id_of(phase, **params)][2]


def graph(store: Store, experiment: str) -> Graph:
    """Read the experiment back: jobs with phase names, edges joined to both ends."""
    parent, child = aliased(Job, name="parent"), aliased(Job, name="child")
    pphase, cphase = aliased(Phase, name="pphase"), aliased(Phase, name="cphase")
    out = Graph()
    with store.read() as conn:
        rows = conn.execute(
            select(Job.id, Phase.name, Job.params, Job.state)
            .join(Phase, Phase.id == Job.phase_id)
            .join(Experiment, Experiment.id == Job.experiment_id)
            .where(Experiment.name == experiment)
        )
        for job_id, phase, params, state in rows:
            out.jobs[job_id] = (phase, params, state)
        edge_rows = conn.execute(
            select(
                Edge.parent_id, Edge.child_id, pphase.name, parent.params, cphase.name, child.params
            )
            .join(parent, parent.id == Edge.parent_id)
            .join(pphase, pphase.id == parent.phase_id)
            .join(child, child.id == Edge.child_id)
            .join(cphase, cphase.id == child.phase_id)
            .join(Experiment, Experiment.id == child.experiment_id)
            .where(Experiment.name == experiment)
        )
        for pid, cid, pname, pparams, cname, cparams in edge_rows:
            out.edge_ids.add((pid, cid))
            out.edges.add((pname, key(pparams), cname, key(cparams)))
    assert len(out.edges) == len(out.edge_ids)  # no two edges between equal-looking jobs
    return out


def counts(store: Store) -> dict[str, int]:
    """Rows per table: what "changes nothing" is checked against."""
    with store.read() as conn:
        return {
            model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Experiment, Phase, Job, Edge, Attempt, Event)
        }


def edges_from(
    parents: Iterable[tuple[str, Mapping[str, Any]]],
    children: Iterable[tuple[str, Mapping[str, Any]]],
) -> set[EdgeKey]:
    """Every parent → every child."""
    children = list(children)
    return {(pp, key(p), cp, key(c)) for pp, p in parents for cp, c in children}


def finish(store: Store, job_id: int, verdict: State) -> None:
    """Run a job by hand to ``verdict`` (done, failed for good, ...)."""
    with store.write() as conn:
        attempt = queries.start(conn, job_id, actor=ACTOR, host="h", pid=1)
        queries.finish(conn, job_id, attempt, verdict, actor=ACTOR, result={"loss": 0.5})


def phase_rows(store: Store, experiment: str) -> list[tuple[str, int, dict[str, Any]]]:
    with store.read() as conn:
        rows = conn.execute(
            select(Phase.name, Phase.position, Phase.config)
            .join(Experiment, Experiment.id == Phase.experiment_id)
            .where(Experiment.name == experiment)
            .order_by(Phase.position)
        )
        return [(name, position, config) for name, position, config in rows]


# --------------------------------------------------------------------------
# the three dependency shapes, edge by edge in the database


def test_dbn_pretrain_finetune_retrain_best(store: Store) -> None:
    result = schedule(store, DBN)
    assert [(p.name, p.planned, p.new) for p in result.phases] == [
        ("pretrain", 4, 4),
        ("finetune", 12, 12),
        ("retrain", 1, 1),
    ]
    g = graph(store, "dbn")
    pretrain = [{"layers": la, "pretrain_lr": lr} for la in (1, 2) for lr in (0.1, 0.01)]
    finetune = [{**p, "finetune_lr": f} for p in pretrain for f in (0.1, 0.01, 0.001)]
    assert sorted(map(key, g.phase("pretrain"))) == sorted(map(key, pretrain))
    assert sorted(map(key, g.phase("finetune"))) == sorted(map(key, finetune))
    assert g.phase("retrain") == [{}]  # the winner's parameters are merged when it starts
    expected = {
        ("pretrain", key(p), "finetune", key(f))
        for p in pretrain
        for f in finetune
        if p.items() <= f.items()
    }
    expected |= edges_from((("finetune", f) for f in finetune), [("retrain", {})])
    assert g.edges == expected
    assert len(g.edge_ids) == result.new_edges == 12 + 12
    # each finetune job has exactly one parent: its own pretrain configuration
    parents_per_finetune = Counter(c for _, _, cp, c in g.edges if cp == "finetune")
    assert set(parents_per_finetune.values()) == {1}
    phases = phase_rows(store, "dbn")
    assert [(n, pos) for n, pos, _ in phases] == [("pretrain", 0), ("finetune", 1), ("retrain", 2)]
    select_cfg = phases[2][2]["select"]
    assert select_cfg["metric"] == "valid_error" and select_cfg["mode"] == "min"
    assert sorted(select_cfg["keys"]) == ["finetune_lr", "layers", "pretrain_lr"]


CONFIGS = [{"lr": lr, "wd": wd} for lr in (0.1, 0.01) for wd in (0, 0.0001)]


def cv_jobs(configs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**c, "fold": k, "n_folds": 5} for c in configs for k in range(5)]


def cv_edges(configs: list[dict[str, Any]]) -> set[EdgeKey]:
    expected: set[EdgeKey] = set()
    for config in configs:
        folds = [("cv", j) for j in cv_jobs([config])]
        expected |= edges_from(folds, [("summary", config)])
    expected |= edges_from((("cv", j) for j in cv_jobs(configs)), [("retrain", {})])
    expected.add(("retrain", (), "test", ()))
    return expected


def test_k_fold_cross_validation_select_by_mean_retrain_test(store: Store) -> None:
    result = schedule(store, CV)
    g = graph(store, "cv")
    assert sorted(map(key, g.phase("cv"))) == sorted(map(key, cv_jobs(CONFIGS)))
    assert sorted(map(key, g.phase("summary"))) == sorted(map(key, CONFIGS))
    assert g.phase("retrain") == [{}] and g.phase("test") == [{}]
    assert g.edges == cv_edges(CONFIGS)
    assert len(g.edge_ids) == result.new_edges == 20 + 20 + 1
    select_cfg = phase_rows(store, "cv")[2][2]["select"]
    assert select_cfg["aggregate"] == "mean"
    assert select_cfg["mode"] == "min" and select_cfg["metric"] == "val_loss"
    assert sorted(select_cfg["keys"]) == ["lr", "wd"]


def test_nested_cross_validation(store: Store) -> None:
    result = schedule(store, NESTED)
    g = graph(store, "nested")
    split = [{"outer_fold": k, "n_outer_folds": 3} for k in range(3)]
    inner = [
        {**s, "lr": lr, "fold": f, "n_folds": 4}
        for s in split
        for lr in (0.1, 0.01)
        for f in range(4)
    ]
    outer = [{"outer_fold": k} for k in range(3)]
    assert sorted(map(key, g.phase("split"))) == sorted(map(key, split))
    assert sorted(map(key, g.phase("inner"))) == sorted(map(key, inner))
    assert sorted(map(key, g.phase("outer"))) == sorted(map(key, outer))
    expected: set[EdgeKey] = set()
    for s in split:
        mine = [("inner", j) for j in inner if j["outer_fold"] == s["outer_fold"]]
        expected |= edges_from([("split", s)], mine)
        expected |= edges_from(mine, [("outer", {"outer_fold": s["outer_fold"]})])
    expected |= edges_from((("outer", o) for o in outer), [("report", {})])
    assert g.edges == expected
    assert len(g.edge_ids) == result.new_edges == 24 + 24 + 3
    select_cfg = phase_rows(store, "nested")[2][2]["select"]
    assert select_cfg["keys"] == ["lr"] and select_cfg["aggregate"] == "mean"


# --------------------------------------------------------------------------
# idempotence and initial states


def test_initial_states_roots_ready_others_waiting(store: Store) -> None:
    result = schedule(store, NESTED)
    g = graph(store, "nested")
    assert g.states("split") == {"ready": 3}
    for phase, n in (("inner", 24), ("outer", 3), ("report", 1)):
        assert g.states(phase) == {"waiting": n}
    assert result.ready == 3 and result.blocked == 0
    with store.read() as conn:
        events = conn.execute(select(Event.from_state, Event.to_state, Event.actor)).all()
    assert sorted(events) == [("waiting", "ready", ACTOR)] * 3


def test_scheduling_the_same_spec_twice_adds_nothing(store: Store) -> None:
    schedule(store, CV)
    before, g1 = counts(store), graph(store, "cv")
    with store.read() as conn:
        exp1 = conn.execute(select(Experiment.spec_hash, Experiment.created_at)).one()
    assert dry_run(store, CV).new_jobs == 0
    again = schedule(store, CV)
    assert again.new_jobs == 0 and again.new_edges == 0
    assert again.ready == again.blocked == again.back_to_waiting == 0
    assert not again.created_experiment
    assert [(p.planned, p.existing) for p in again.phases] == [(20, 20), (4, 4), (1, 1), (1, 1)]
    assert counts(store) == before  # no jobs, no edges, no events, no phases
    g2 = graph(store, "cv")
    assert g2.jobs == g1.jobs and g2.edge_ids == g1.edge_ids
    with store.read() as conn:
        assert conn.execute(select(Experiment.spec_hash, Experiment.created_at)).one() == exp1


def test_key_order_and_1_vs_1_0_are_the_same_jobs(store: Store) -> None:
    schedule(store, "name: n\nphases:\n- {name: a, command: 'r {x} {y}', grid: {x: [1, 2], y: 3}}")
    again = schedule(
        store, "name: n\nphases:\n- {name: a, command: 'r {x} {y}', grid: {y: 3.0, x: [2.0, 1]}}"
    )
    assert again.new_jobs == 0
    assert len(graph(store, "n").jobs) == 2


def test_adding_a_grid_value_adds_only_new_jobs_and_their_edges(store: Store) -> None:
    schedule(store, CV)
    before = graph(store, "cv")
    grown_spec = CV.replace("lr: [0.1, 0.01]", "lr: [0.1, 0.01, 0.001]")
    preview = dry_run(store, grown_spec)
    grown = schedule(store, grown_spec)
    new_configs = [{"lr": 0.001, "wd": wd} for wd in (0, 0.0001)]
    assert [(p.name, p.new) for p in grown.phases] == [
        ("cv", 10),
        ("summary", 2),
        ("retrain", 0),
        ("test", 0),
    ]
    assert grown.new_edges == 10 + 10  # folds → new summaries, new folds → the existing retrain
    assert [(p.name, p.new) for p in preview.phases] == [(p.name, p.new) for p in grown.phases]
    assert preview.new_edges == grown.new_edges
    after = graph(store, "cv")
    # old jobs keep their ids, parameters and states; old edges are all still there
    assert {i: after.jobs[i] for i in before.jobs} == before.jobs
    assert before.edge_ids <= after.edge_ids
    added = after.edges - before.edges
    assert len(added) == len(after.edge_ids - before.edge_ids) == 20
    for pphase, pkey, cphase, ckey in added:
        new_parent = dict(pkey).get("lr") == 0.001
        new_child = dict(ckey).get("lr") == 0.001
        assert new_parent or new_child, (pphase, pkey, cphase, ckey)
    assert after.edges == cv_edges(CONFIGS + new_configs)  # the same as scheduling it fresh
    with store.read() as conn:
        text = conn.execute(select(Experiment.spec_text)).scalar_one()
    assert "0.001]" in text  # the changed spec is recorded


EVAL_PHASE = """
      - name: eval
        after: finetune
        command: ev {layers} {flr}
"""


def test_new_children_under_done_failed_and_blocked_parents(store: Store) -> None:
    spec = """
    name: dbn
    phases:
      - name: pretrain
        command: pre {layers}
        grid: {layers: [1, 2, 3]}
      - name: finetune
        after: pretrain
        command: fine {layers} {flr}
        grid: {flr: [0.1, 0.01]}
    """
    schedule(store, spec)
    g = graph(store, "dbn")
    finish(store, g.id_of("pretrain", layers=1), State.DONE)
    finish(store, g.id_of("pretrain", layers=2), State.FAILED)
    g = graph(store, "dbn")
    assert g.state_of("finetune", layers=1, flr=0.1) == "ready"
    assert g.state_of("finetune", layers=2, flr=0.1) == "blocked"
    assert g.state_of("finetune", layers=3, flr=0.1) == "waiting"

    grown = spec.replace("[0.1, 0.01]", "[0.1, 0.01, 0.001]").rstrip() + EVAL_PHASE
    result = schedule(store, grown)
    g = graph(store, "dbn")
    assert g.state_of("finetune", layers=1, flr=0.001) == "ready"  # parent already done
    assert g.state_of("finetune", layers=2, flr=0.001) == "blocked"  # parent failed
    assert g.state_of("finetune", layers=3, flr=0.001) == "waiting"
    for flr in (0.1, 0.01, 0.001):
        assert g.state_of("eval", layers=1, flr=flr) == "waiting"
        assert g.state_of("eval", layers=2, flr=flr) == "blocked"  # under a blocked parent
        assert g.state_of("eval", layers=3, flr=flr) == "waiting"
    assert result.new_jobs == 3 + 9
    assert result.ready == 1 and result.blocked == 1 + 3
    with store.read() as conn:
        reasons = conn.execute(
            select(Job.state_reason).where(Job.id == g.id_of("finetune", layers=2, flr=0.001))
        ).scalar_one()
    assert reasons and "failed before scheduling" in reasons


def test_a_ready_child_gaining_an_unfinished_parent_goes_back_to_waiting(store: Store) -> None:
    spec = """
    name: grow
    phases:
      - name: train
        command: train {lr} {seed}
        grid: {lr: [0.1, 0.01], seed: [1, 2]}
      - name: summary
        after: train
        group_by: [lr]
        task: tasks.summary:mean
    """
    schedule(store, spec)
    for job_id in [i for i, (p, _, _) in graph(store, "grow").jobs.items() if p == "train"]:
        finish(store, job_id, State.DONE)
    assert graph(store, "grow").states("summary") == {"ready": 2}

    # a new group: its summary waits, the existing summaries are untouched
    more_lr = spec.replace("[0.1, 0.01]", "[0.1, 0.01, 0.001]")
    result = schedule(store, more_lr)
    assert result.back_to_waiting == 0
    g = graph(store, "grow")
    assert g.state_of("summary", lr=0.1) == g.state_of("summary", lr=0.01) == "ready"
    assert g.state_of("summary", lr=0.001) == "waiting"

    # every group gains a member: the ready summaries must wait for it
    with store.read() as conn:
        events_before = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    result = schedule(store, more_lr.replace("seed: [1, 2]", "seed: [1, 2, 3]"))
    assert result.new_jobs == 3 and result.new_edges == 3
    assert result.back_to_waiting == 2
    g = graph(store, "grow")
    assert g.states("summary") == {"waiting": 3}
    assert g.state_of("train", lr=0.1, seed=3) == "ready"
    for lr in (0.1, 0.01, 0.001):
        assert ("train", key({"lr": lr, "seed": 3}), "summary", key({"lr": lr})) in g.edges
    with store.read() as conn:
        events = conn.execute(
            select(Event.from_state, Event.to_state, Event.reason).where(Event.id > events_before)
        ).all()
    assert Counter(events) == {
        ("waiting", "ready", "parents done"): 3,  # the new train jobs
        ("ready", "waiting", "new parent scheduled"): 2,
    }


# --------------------------------------------------------------------------
# one transaction


EXTRA_PHASE = """
  - name: extra
    after: test
    command: echo
"""


def test_a_failure_in_the_transaction_changes_nothing(store: Store) -> None:
    """Every row (bulk inserts and COPY included) goes into the caller's transaction."""
    schedule(store, CV)
    before = counts(store)
    with store.read() as conn:
        text_before = conn.execute(select(Experiment.spec_text)).scalar_one()
    grown = CV.replace("wd: [0, 1e-4]", "wd: [0, 1e-4, 1e-3]") + EXTRA_PHASE
    for text in (grown, DBN):  # an existing experiment grown, and a new one
        plan = expand(parse_spec(textwrap.dedent(text), "spec.yaml"))
        with pytest.raises(RuntimeError, match="disk on fire"), store.write() as conn:
            result = scheduling.write_plan(conn, plan, PROVENANCE, actor=ACTOR)
            assert result.new_jobs > 0 and result.new_edges > 0
            inside = conn.execute(select(func.count()).select_from(Job)).scalar_one()
            assert inside == before["jobs"] + result.new_jobs
            raise RuntimeError("disk on fire")
    assert counts(store) == before
    with store.read() as conn:
        assert conn.execute(select(Experiment.spec_text)).scalar_one() == text_before
    assert [n for n, _, _ in phase_rows(store, "cv")] == ["cv", "summary", "retrain", "test"]


def test_parameters_read_back_as_scheduled(store: Store) -> None:
    """The database hands back the very parameters of the spec, on either backend."""
    schedule(
        store,
        "name: n\nphases:\n- name: a\n  command: r {x}\n"
        "  grid: {x: [0.1, 1e-7, 2.0, -0.0, 'é', true, null, 12345678901234567890, 1.5e-300]}",
    )
    got = sorted((repr(p["x"]) for p in graph(store, "n").phase("a")), key=str)
    want = ["'é'", "0", "0.1", "1e-07", "1.5e-300", "12345678901234567890", "2", "None", "True"]
    assert got == sorted(want, key=str)
