"""W2: dispatch 1,000 ``true`` jobs (500 in phase A → 500 in phase B) on 2 local slots.

Times the whole ``jobdb dispatch --executor local --slots 2 --watch`` process,
start to exit, on SQLite and PostgreSQL, next to two peers measured in the
same run, interleaved run by run:

- **floor**: ``xargs -P2 -n1 true`` running 1,000 ``true`` (no dependencies,
  no bookkeeping: what starting the processes costs on this machine);
- **Snakemake** ``--cores 2 --quiet all`` on the same DAG: rule ``A`` (500
  jobs) → rule ``B`` (one per A job), each job's shell running ``true`` and
  then creating its output file with the shell's own redirection
  (``: > file``, no extra process) — Snakemake knows a job finished by its
  output file. A fresh folder per run, so nothing is up to date.

jobdb's ``init`` and ``schedule`` run before the clock starts; Snakemake
builds its DAG inside its makespan, so its dry run (``-n``, the DAG alone) is
timed too and shown with jobdb's scheduling time under "setup". After every
jobdb run the database is checked: every job done, on attempt 1, with exactly
one attempt row; a run that fails the check (or exits non-zero) is reported
and left out of the medians.

Per-job overhead is (makespan − floor) / jobs × slots, in ms: what each job
costs a slot beyond starting ``true``.

    python scripts/bench/dispatch.py [--runs 5] [--backend sqlite|postgres|both]
                                     [--snakemake PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    git_revision,
    log,
    machine,
    markdown_table,
    median,
    postgres_cluster,
    postgres_version,
    timed,
)

from jobdb.testing import PostgresCluster

#: The most one measured process may take before the run counts as failed.
TIMEOUT_S = 600.0

SNAKEFILE = textwrap.dedent(
    """\
    N = int(config["per_phase"])

    rule all:
        input: expand("B/{i}.done", i=range(N))

    rule A:
        output: "A/{i}.done"
        shell: "true && : > {output}"

    rule B:
        input: "A/{i}.done"
        output: "B/{i}.done"
        shell: "true && : > {output}"
    """
)


def spec_text(per_phase: int) -> str:
    """W2: phase A (``per_phase`` jobs) and phase B, one child per A job; all run ``true``."""
    return textwrap.dedent(
        f"""\
        name: w2
        phases:
          - name: A
            command: "true"
            grid:
              i: {{range: [0, {per_phase}]}}
          - name: B
            after: A
            command: "true"
        """
    )


@dataclass
class Series:
    """What one contender measured over the runs: its good runs, its failures."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Bench:
    """The settings of one benchmark invocation."""

    per_phase: int
    slots: int
    folder: Path
    jobdb: list[str] | None
    snakemake: str | None
    cluster: PostgresCluster | None
    backends: list[str]
    results: dict[str, Series] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return 2 * self.per_phase

    def series(self, name: str) -> Series:
        return self.results.setdefault(name, Series())


@dataclass(frozen=True)
class Timing:
    """One whole process: wall-clock seconds, and CPU seconds of it and the children it reaped."""

    seconds: float
    cpu: float


class RunFailed(Exception):
    """One measured run did not finish correctly; the message says how."""


# --------------------------------------------------------------------------
# running one whole process


def run_timed(argv: Sequence[str], cwd: Path, label: str, stdin: bytes | None = None) -> Timing:
    """Run a whole process in ``cwd`` and time it, or RunFailed with its output.

    The output goes to ``cwd/<label>.out`` (a file, not a pipe this process must drain).
    CPU time counts the process and every descendant it waited for (user + system), so
    a loaded machine inflates it far less than the wall clock; a PostgreSQL server's
    own CPU is not in it (the server is not a child).
    """
    output = cwd / f"{label}.out"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with output.open("wb") as sink, timed() as watch:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT_S,
            )
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"{' '.join(argv[:3])} … still running after {TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        tail = output.read_text(errors="replace")[-2000:]
        raise RunFailed(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(watch.seconds, cpu)


def fresh_folder(bench: Bench, name: str) -> Path:
    folder = bench.folder / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# --------------------------------------------------------------------------
# the contenders, one run each


def floor(bench: Bench, run: int) -> Timing:
    """``xargs -P<slots> -n1 true`` over as many lines as jobs."""
    folder = fresh_folder(bench, f"floor-{run}")
    lines = "".join(f"{i}\n" for i in range(bench.jobs)).encode()
    argv = ["xargs", "-P", str(bench.slots), "-n", "1", "true"]
    return run_timed(argv, folder, "xargs", stdin=lines)


def snakemake(bench: Bench, run: int, dry_run: bool = False) -> Timing:
    """Snakemake on the W2 DAG in a fresh folder; with ``dry_run`` only its DAG is built."""
    assert bench.snakemake is not None
    folder = fresh_folder(bench, f"snakemake{'-n' if dry_run else ''}-{run}")
    (folder / "Snakefile").write_text(SNAKEFILE)
    argv = [bench.snakemake, "--cores", str(bench.slots), "--quiet", "all"]
    argv += ["--config", f"per_phase={bench.per_phase}"] + (["-n"] if dry_run else [])
    timing = run_timed(argv, folder, "snakemake")
    missing = [] if dry_run else missing_outputs(folder, bench.per_phase)
    if missing:
        raise RunFailed(f"Snakemake left {len(missing)} outputs missing, e.g. {missing[0]}")
    return timing


def missing_outputs(folder: Path, per_phase: int) -> list[str]:
    expected = [f"{phase}/{i}.done" for phase in "AB" for i in range(per_phase)]
    return [name for name in expected if not (folder / name).is_file()]


def jobdb(bench: Bench, backend: str, run: int) -> tuple[Timing, Timing]:
    """Schedule W2 into a fresh database (untimed), then time ``jobdb dispatch``.

    Returns (``init`` + ``schedule``, ``dispatch``).
    """
    assert bench.jobdb is not None
    folder = fresh_folder(bench, f"jobdb-{backend}-{run}")
    spec = folder / "w2.yaml"
    spec.write_text(spec_text(bench.per_phase))
    with fresh_database(bench, backend, folder, run) as url:
        init = run_timed([*bench.jobdb, "init", "--db", url], folder, "init")
        schedule = [*bench.jobdb, "schedule", str(spec), "--db", url, "-y"]
        scheduled = run_timed(schedule, folder, "schedule")
        setup = Timing(init.seconds + scheduled.seconds, init.cpu + scheduled.cpu)
        argv = [*bench.jobdb, "dispatch", "--executor", "local", "--slots", str(bench.slots)]
        timing = run_timed([*argv, "--watch", "--db", url], folder, "dispatch")
        check_all_done_once(url, bench.jobs)
    return setup, timing


@contextlib.contextmanager
def fresh_database(bench: Bench, backend: str, folder: Path, run: int) -> Iterator[str]:
    """An empty database's URL: a SQLite file in ``folder``, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'jobdb.sqlite'}"
        return
    assert bench.cluster is not None
    name = f"w2_{run}"
    url = bench.cluster.create_database(name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        bench.cluster.drop_database(name)


def check_all_done_once(url: str, jobs: int) -> None:
    """RunFailed unless all ``jobs`` jobs are done on attempt 1 with one done attempt row each."""
    from sqlalchemy import distinct, func, select
    from sqlalchemy.engine import make_url

    from jobdb.models import Attempt, Job
    from jobdb.states import State
    from jobdb.store import connect

    store = connect(make_url(url))
    try:
        with store.read() as conn:
            counts = {
                "jobs": select(func.count()).select_from(Job),
                "done on attempt 1": select(func.count()).where(
                    Job.state == State.DONE.value, Job.attempt == 1
                ),
                "attempt rows": select(func.count()).select_from(Attempt),
                "jobs with an attempt": select(func.count(distinct(Attempt.job_id))),
                "done attempt rows": select(func.count()).where(Attempt.state == State.DONE.value),
            }
            found = {name: conn.execute(query).scalar_one() for name, query in counts.items()}
    finally:
        store.dispose()
    wrong = {name: n for name, n in found.items() if n != jobs}
    if wrong:
        raise RunFailed(f"expected {jobs} everywhere, found {found}")


# --------------------------------------------------------------------------
# the whole benchmark


def measure_run(bench: Bench, run: int) -> None:
    """One run of every contender, interleaved so that they share the machine's mood."""
    attempt(bench, "floor", lambda: floor(bench, run))
    if bench.snakemake is not None:
        attempt(bench, "snakemake", lambda: snakemake(bench, run))
        attempt(bench, "setup: snakemake -n", lambda: snakemake(bench, run, dry_run=True))
    if bench.jobdb is not None:
        for backend in bench.backends:
            measure_jobdb(bench, backend, run)


def attempt(bench: Bench, name: str, measure: Callable[[], Timing]) -> None:
    try:
        timing = measure()
    except RunFailed as exc:
        bench.series(name).failures.append(str(exc))
        log(f"  {name:24} FAILED: {exc}")
        return
    record(bench, name, timing)
    log(f"  {name:24} {timing.seconds:7.2f} s  (CPU {timing.cpu:.2f} s)")


def record(bench: Bench, name: str, timing: Timing) -> None:
    bench.series(name).seconds.append(timing.seconds)
    bench.series(name).cpu.append(timing.cpu)


def measure_jobdb(bench: Bench, backend: str, run: int) -> None:
    name = f"jobdb dispatch, {backend}"
    try:
        setup, timing = jobdb(bench, backend, run)
    except RunFailed as exc:
        bench.series(name).failures.append(str(exc))
        log(f"  {name:24} FAILED: {exc}")
        return
    record(bench, f"setup: jobdb init + schedule, {backend}", setup)
    record(bench, name, timing)
    log(
        f"  {name:24} {timing.seconds:7.2f} s  (CPU {timing.cpu:.2f} s; "
        f"init + schedule {setup.seconds:.2f} s; all done once)"
    )


LABELS = {
    "floor": "floor: `xargs -P{slots} -n1 true`",
    "snakemake": "Snakemake `--cores {slots}`",
    "jobdb dispatch, sqlite": "jobdb dispatch, SQLite",
    "jobdb dispatch, postgres": "jobdb dispatch, PostgreSQL",
}


def makespan_table(bench: Bench) -> str:
    floor_s = median(bench.series("floor").seconds)
    peer_s = median(bench.series("snakemake").seconds)
    rows: list[list[object]] = []
    for name, label in LABELS.items():
        if name not in bench.results:
            continue
        series = bench.results[name]
        seconds = median(series.seconds)
        overhead_ms = (seconds - floor_s) / bench.jobs * bench.slots * 1000
        rows.append(
            [
                label.format(slots=bench.slots),
                seconds,
                spread(series.seconds),
                overhead_ms,
                seconds / floor_s,
                seconds / peer_s,
                median(series.cpu),
                len(series.failures),
            ]
        )
    headers = [
        "what",
        "makespan s (median)",
        "runs: min–max s",
        "per-job overhead ms",
        "× floor",
        "× Snakemake",
        "CPU s (median)",
        "failed runs",
    ]
    return markdown_table(headers, rows)


def setup_table(bench: Bench) -> str:
    rows: list[list[object]] = [
        [name.removeprefix("setup: "), median(s.seconds), spread(s.seconds), len(s.failures)]
        for name, s in bench.results.items()
        if name.startswith("setup: ")
    ]
    headers = ["setup, not in the makespan", "s (median)", "runs: min–max s", "failed runs"]
    return markdown_table(headers, rows)


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if values else "–"


def report(bench: Bench, header: str) -> str:
    failures = [
        f"- {name}, failure {i + 1}: {summary(message)}"
        for name, series in bench.results.items()
        for i, message in enumerate(series.failures)
    ]
    parts = [header, makespan_table(bench), setup_table(bench)]
    if failures:
        parts.append("\n".join(["Failed runs:", *failures]))
    return "\n\n".join(parts)


def summary(message: str) -> str:
    """The first and the last line of a failure (the command, and usually its error)."""
    lines = [line for line in message.splitlines() if line.strip()]
    return " … ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else "?"


def json_dump(bench: Bench, header: str, load: dict[str, list[float]]) -> str:
    results = {
        name: {
            "seconds": series.seconds,
            "median": median(series.seconds) if series.seconds else None,
            "min": min(series.seconds, default=None),
            "max": max(series.seconds, default=None),
            "cpu_seconds": series.cpu,
            "failures": series.failures,
        }
        for name, series in bench.results.items()
    }
    document = {
        "workload": "W2",
        "jobs": bench.jobs,
        "slots": bench.slots,
        "header": header,
        "load_average": load,
        "results": results,
    }
    return json.dumps(document, indent=2, allow_nan=False, default=str)


# --------------------------------------------------------------------------
# finding the contenders


def find_jobdb() -> list[str] | None:
    """The ``jobdb`` command next to this interpreter, if it has ``dispatch``."""
    script = Path(sys.executable).parent / "jobdb"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "jobdb"]
    probe = subprocess.run(
        [*argv, "dispatch", "--help"], capture_output=True, text=True, check=False
    )
    return argv if probe.returncode == 0 else None


def find_snakemake(given: str | None) -> tuple[str | None, str]:
    """(path, version) of Snakemake from ``--snakemake`` or ``PATH``; (None, why) when absent."""
    path = given or shutil.which("snakemake")
    if path is None or not Path(path).exists():
        return None, "not found (give --snakemake PATH, or put snakemake on PATH)"
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return path, version


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of every contender")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--per-phase", type=int, default=500, help="jobs in phase A (and B)")
    parser.add_argument("--slots", type=int, default=2, help="jobs running at once")
    parser.add_argument("--snakemake", help="the snakemake executable (default: on PATH)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    command = find_jobdb()
    if command is None:
        log("jobdb dispatch: not available in this jobdb (`jobdb dispatch --help` failed); skipped")
    snakemake_path, snakemake_version = find_snakemake(args.snakemake)
    if snakemake_path is None:
        log(f"Snakemake: {snakemake_version}; skipped")
    load: dict[str, list[float]] = {"start": list(os.getloadavg()), "runs": []}
    with contextlib.ExitStack() as stack:
        wants_postgres = command is not None and "postgres" in backends
        cluster = stack.enter_context(postgres_cluster()) if wants_postgres else None
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobdb-w2-")))
        bench = Bench(
            args.per_phase, args.slots, folder, command, snakemake_path, cluster, backends
        )
        for run in range(args.runs):
            load["runs"].append(os.getloadavg()[0])
            log(f"run {run + 1}/{args.runs} (load average {load['runs'][-1]:.2f})")
            measure_run(bench, run)
        pg = postgres_version(cluster) if cluster is not None else None
    load["end"] = list(os.getloadavg())
    header = (
        f"W2 — dispatch {bench.jobs:,} `true` jobs ({args.per_phase} → {args.per_phase}) "
        f"on {args.slots} slots; median of {args.runs} runs; {machine(pg)}; "
        f"Snakemake {snakemake_version if snakemake_path else 'skipped'}; "
        f"jobdb at {git_revision()}; load average at start {load['start'][0]:.2f}, "
        f"at end {load['end'][0]:.2f}"
    )
    print(report(bench, header))
    if args.json is not None:
        args.json.write_text(json_dump(bench, header, load) + "\n")
    return 1 if any(series.failures for series in bench.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
