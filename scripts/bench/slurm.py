"""S1: 200 one-second jobs through Slurm — single submissions vs one array in pull mode.

Needs a cluster that answers (``eval "$(scripts/slurm-local start)"``). Each
run, interleaved, measures three ways of running 200 ``sleep 1``:

- **floor**: plain ``sbatch --wrap 'sleep 1'`` 200 times in a shell loop, then
  ``squeue`` polled every 0.5 s until the 200 have left the queue: what Slurm
  alone costs (no database, no bookkeeping);
- **single**: ``jobdb dispatch -x slurm`` (submission) then ``jobdb dispatch
  -x slurm --watch`` (until every job is done): one Slurm job per job, each
  running ``jobdb run``;
- **array**: the same with ``--array --max-running N`` (default: the node's
  CPUs): per ``MaxArraySize`` chunk one array whose tasks run ``jobdb
  worker`` and pull jobs until the chunk is empty.

Reported per way, medians over the runs: submission time (from the first
``sbatch`` to the last one returning: the loop, or the submitting
``dispatch``), makespan (start of submission to the last job done) and the
number of ``sbatch``/``squeue``/``sacct`` calls (jobdb counts its own; the
floor's are the loop and its polls). After each jobdb run the database is
checked: 200 jobs done, one attempt each.

    python scripts/bench/slurm.py [--runs 3] [--jobs 200] [--max-running N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, log, machine, markdown_table, median

JOBDB = [sys.executable, "-m", "jobdb"]
#: The most one measured run may take.
TIMEOUT_S = 900.0


@dataclass
class Run:
    """One measured run of one way."""

    submit_s: float
    makespan_s: float
    calls: Counter[str] = field(default_factory=Counter)


def slurm_config(key: str) -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    return "?"


def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.strip() else 1


def floor(jobs: int, tag: str) -> Run:
    """A shell loop of plain sbatch, then squeue until the jobs are gone."""
    name = f"bench-floor-{tag}"
    one = f"sbatch --parsable -J {name} -o /dev/null --wrap 'sleep 1' >/dev/null"
    loop = f"for i in $(seq {jobs}); do {one}; done"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", loop], check=True)
    submitted = time.perf_counter() - start
    polls = 0
    while True:
        polls += 1
        out = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
        )
        if not out.stdout.strip():
            break
        if time.perf_counter() - start > TIMEOUT_S:
            raise SystemExit(f"floor run {tag}: jobs still queued after {TIMEOUT_S:g} s")
        time.sleep(0.5)
    return Run(submitted, time.perf_counter() - start, Counter(sbatch=jobs, squeue=polls))


def jobdb_run(jobs: int, array: bool, max_running: int, folder: Path) -> Run:
    """schedule (not timed), dispatch (submission), dispatch --watch (to the end)."""
    folder.mkdir(parents=True)
    db = folder / "bench.sqlite"
    url = f"sqlite:///{db}"
    spec = folder / "spec.yaml"
    spec.write_text(
        f'name: bench\nphases:\n  - name: s\n    command: "sleep 1"\n'
        f"    grid: {{i: {{range: [0, {jobs}]}}}}\n"
    )
    env = {**os.environ, "JOBDB_URL": url}
    subprocess.run([*JOBDB, "schedule", str(spec), "--yes"], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    mode = ["--array", "--max-running", str(max_running)] if array else ["--single"]
    common = ["dispatch", "-x", "slurm", *mode, "--heartbeat-interval", "5", "--json"]
    start = time.perf_counter()
    first = subprocess.run([*JOBDB, *common], cwd=folder, env=env, capture_output=True, text=True)
    submitted = time.perf_counter() - start
    second = subprocess.run(
        [*JOBDB, *common, "--watch"], cwd=folder, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip
    makespan = time.perf_counter() - start
    for done in (first, second):
        if done.returncode != 0:
            raise SystemExit(f"jobdb dispatch failed:\n{done.stdout}\n{done.stderr}")
    calls: Counter[str] = Counter()
    for done in (first, second):
        calls.update(json.loads(done.stdout)["slurm_calls"])
    check_all_done_once(db, jobs)
    return Run(submitted, makespan, calls)


def check_all_done_once(db: Path, jobs: int) -> None:
    with sqlite3.connect(db) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    if states != {"done": jobs} or attempts != jobs:
        raise SystemExit(f"check failed: states {states}, {attempts} attempts for {jobs} jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--max-running", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
        raise SystemExit('no Slurm cluster: eval "$(scripts/slurm-local start)" first')
    max_running = args.max_running or node_cpus()
    results: dict[str, list[Run]] = {"floor": [], "single": [], "array": []}
    with tempfile.TemporaryDirectory(prefix="jobdb-bench-slurm-") as tmp:
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}: floor")
            results["floor"].append(floor(args.jobs, f"{os.getpid()}-{run}"))
            log(f"run {run + 1}/{args.runs}: single")
            results["single"].append(
                jobdb_run(args.jobs, False, max_running, Path(tmp) / f"single-{run}")
            )
            log(f"run {run + 1}/{args.runs}: array")
            results["array"].append(
                jobdb_run(args.jobs, True, max_running, Path(tmp) / f"array-{run}")
            )
    rows = []
    for way, runs in results.items():
        calls = runs[-1].calls
        rows.append(
            [
                way,
                round(median([r.submit_s for r in runs]), 2),
                round(median([r.makespan_s for r in runs]), 1),
                round(args.jobs / median([r.makespan_s for r in runs]), 1),
                calls.get("sbatch", 0),
                calls.get("squeue", 0),
                calls.get("sacct", 0),
            ]
        )
    print(f"{args.jobs} × sleep 1, {node_cpus()} declared CPUs, MaxArraySize "
          f"{slurm_config('MaxArraySize')}, arrays --max-running {max_running}; "
          f"{args.runs} runs, medians")  # fmt: skip
    print(f"{machine()}, Slurm {slurm_config('SLURM_VERSION')}, {git_revision()}\n")
    headers = ["way", "submit s", "makespan s", "jobs/s", "sbatch", "squeue", "sacct"]
    print(markdown_table(headers, rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    way: [
                        {"submit_s": r.submit_s, "makespan_s": r.makespan_s, "calls": r.calls}
                        for r in runs
                    ]
                    for way, runs in results.items()
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
