"""W1: schedule 20,010 jobs and 20,000 edges (3 phases), and the ×10 variant.

Measures the whole ``jobdb schedule spec.yaml`` command, process start to
exit, and its peak memory (``wait4``'s ru_maxrss), median of N runs, on
SQLite and PostgreSQL; next to it, in the same run, the floor: a Python
process doing ``sqlite3.executemany`` of the same rows in one transaction.

    python scripts/bench/schedule.py [--runs 5] [--scale 1 10] [--backend both]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    log,
    machine,
    markdown_table,
    median,
    postgres_cluster,
    postgres_version,
    timed,
)

from jobdb.testing import PostgresCluster

MODELS_PER_SCALE = 10


def spec_text(scale: int) -> str:
    """W1: features (10×scale models) → train (lr 10 × wd 10 × 10 folds each) → eval."""
    models = ", ".join(f"m{i}" for i in range(MODELS_PER_SCALE * scale))
    return textwrap.dedent(
        f"""\
        name: w1
        phases:
          - name: features
            command: python features.py --model {{model}}
            grid:
              model: [{models}]
          - name: train
            after: features
            command: python train.py --model {{model}} --lr {{lr}} --wd {{wd}} --fold {{fold}}
            grid:
              lr: {{logspace: [-4, -1, 10]}}
              wd: {{linspace: [0, 0.001, 10]}}
            folds: 10
          - name: eval
            after: train
            command: python eval.py --model {{model}} --fold {{fold}}
        """
    )


FLOOR = textwrap.dedent(
    """\
    import itertools, json, sqlite3, sys
    scale = int(sys.argv[2])
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, phase TEXT, params TEXT, "
               "hash TEXT, state TEXT, UNIQUE (phase, hash))")
    db.execute("CREATE TABLE edges (parent INTEGER, child INTEGER, PRIMARY KEY (parent, child))")
    jobs, edges = [], []
    models = [f"m{i}" for i in range(10 * scale)]
    for m in models:
        jobs.append(("features", json.dumps({"model": m})))
    grid = list(itertools.product(range(10), range(10), range(10)))
    for m in models:
        for lr, wd, fold in grid:
            jobs.append(("train", json.dumps({"model": m, "lr": lr, "wd": wd, "fold": fold})))
    n_features, n_train = len(models), len(models) * len(grid)
    for i in range(n_train):
        jobs.append(("eval", jobs[n_features + i][1]))
    rows = [(i + 1, p, t, str(hash(t)), "waiting") for i, (p, t) in enumerate(jobs)]
    for i in range(n_train):
        edges.append((i // len(grid) + 1, n_features + i + 1))
        edges.append((n_features + i + 1, n_features + n_train + i + 1))
    db.execute("BEGIN")
    db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO edges VALUES (?, ?)", edges)
    db.execute("COMMIT")
    """
)


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a whole process; return (seconds, peak resident memory in MiB)."""
    with timed() as watch:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{argv} failed:\n{proc.stderr.read().decode()}")
    return watch.seconds, usage.ru_maxrss / 1024


def jobdb_schedule(spec: Path, url: str) -> tuple[float, float]:
    return run_measured([sys.executable, "-m", "jobdb", "schedule", str(spec), "--db", url, "-y"])


def measure(scale: int, runs: int, backends: list[str], tmp: Path) -> list[list[object]]:
    spec = tmp / f"w1x{scale}.yaml"
    spec.write_text(spec_text(scale))
    results: dict[str, list[tuple[float, float]]] = {"floor": [], "sqlite": [], "postgres": []}
    cluster = _Cluster() if "postgres" in backends else None
    try:
        for run in range(runs):
            db = tmp / f"floor-{scale}-{run}.sqlite"
            results["floor"].append(
                run_measured([sys.executable, "-c", FLOOR, str(db), str(scale)])
            )
            if "sqlite" in backends:
                url = f"sqlite:///{tmp / f'jobdb-{scale}-{run}.sqlite'}"
                results["sqlite"].append(jobdb_schedule(spec, url))
            if cluster is not None:
                url = cluster.fresh_database(f"w1_{scale}_{run}")
                results["postgres"].append(jobdb_schedule(spec, url))
            log(f"x{scale} run {run + 1}/{runs} done")
    finally:
        if cluster is not None:
            cluster.close()
    jobs = 10 * scale + 2 * 1000 * 10 * scale
    rows = []
    floor = median([s for s, _ in results["floor"]])
    for name in ("floor", "sqlite", "postgres"):
        if not results[name]:
            continue
        seconds = median([s for s, _ in results[name]])
        memory = median([m for _, m in results[name]])
        label = "floor: sqlite3.executemany" if name == "floor" else f"jobdb schedule, {name}"
        rows.append([f"×{scale} ({jobs:,} jobs)", label, seconds, memory, seconds / floor])
    return rows


class _Cluster:
    """One PostgreSQL server for the whole benchmark; a fresh database per run."""

    def __init__(self) -> None:
        self._context = postgres_cluster()
        self.cluster: PostgresCluster = self._context.__enter__()
        self.version = postgres_version(self.cluster)
        from jobdb.store import Store, make_engine, upgrade

        store = Store(make_engine(self.cluster.create_database("w1_template")))
        upgrade(store)
        store.dispose()

    def fresh_database(self, name: str) -> str:
        url = self.cluster.create_database(name, template="w1_template")
        return url.render_as_string(hide_password=False)

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="jobdb-bench-w1-") as folder:
        for scale in args.scale:
            rows += measure(scale, args.runs, backends, Path(folder))
    print(f"W1 — schedule; median of {args.runs} runs; {machine()}")
    print()
    headers = ["workload", "what", "seconds (whole process)", "peak MiB", "× floor"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
