"""``jobdb report`` written by the CLI and opened in headless Chromium.

The experiment has two phases (train → eval), a cross-validation grid done
with results, and one eval job that failed with a log. The page must render
with no console errors; a probe script added to a *copy* of the page (the
report itself has no scripts) checks after load that the results table has
its rows and that every plot decoded, and a screenshot must be a real PNG.

Skipped when Chromium is missing, unless ``JOBDB_REQUIRE_CHROMIUM=1`` (CI).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb import queries
from jobdb.analysis import fetch
from jobdb.states import State
from jobdb.store import Store, connect
from tests.acceptance.cli import db_arg, jobdb
from tests.integration.test_results import ACTOR, SPEC, schedule_and_finish

REQUIRE_ENV = "JOBDB_REQUIRE_CHROMIUM"
SPEC_WITH_EVAL = (
    SPEC
    + """\
  - name: eval
    after: train
    command: "true"
    grid: {split: ["<test & dev>"]}
"""
)
ERRORS = """<script>window.__errors = [];
addEventListener("error", function (e) {
  __errors.push(String(e.message || (e.target && e.target.src)));
}, true);</script>"""
PROBE = """<script>addEventListener("load", function () {
  var images = [].slice.call(document.querySelectorAll("img.plot"));
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var rows = document.querySelectorAll("table.results tbody tr").length;
  var marker = document.createElement("p");
  marker.id = "probe";
  marker.textContent = "PROBE images=" + images.length + " decoded=" + decoded.length +
    " rows=" + rows + " errors=" + __errors.length + " END";
  document.body.appendChild(marker);
});</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Chromium not found (Debian package chromium) for the report test"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def fail_one_eval_job(store: Store, log: Path) -> int:
    """Run the first eval job (its parent is done) to failed, with a stderr log."""
    log.write_text("".join(f"epoch {i}\n" for i in range(30)) + "Error: <boom> & out\n")
    with store.read() as conn:
        scope = fetch.resolve(conn, fetch.Selection(phases=("eval",)))
        job = next(fetch.job_rows(conn, scope))
    with store.write() as conn:
        attempt = queries.start(conn, job.id, actor=ACTOR, stderr_path=str(log))
        queries.finish(
            conn, job.id, attempt, State.FAILED, actor=ACTOR, exit_code=3, error="<boom>"
        )
    return job.id


def browse(page: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_renders_in_chromium_with_table_and_plots(db_url: URL, tmp_path: Path) -> None:
    chromium()
    store = connect(db_url)
    try:
        schedule_and_finish(store, SPEC_WITH_EVAL)
        failed = fail_one_eval_job(store, tmp_path / "stderr.log")
    finally:
        store.dispose()
    page = tmp_path / "report.html"
    out = jobdb("report", "cv", "--db", db_arg(db_url), "-o", str(page), cwd=tmp_path)
    assert "wrote" in out.stdout
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "&lt;boom&gt; &amp; out" in html and "<boom>" not in html  # escaped log tail
    assert "epoch 29" in html and "epoch 5\n" not in html  # only the tail
    assert f"job {failed}" in html and "&lt;test &amp; dev&gt;" in html

    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + ERRORS, 1).replace("</body>", PROBE))
    dumped = browse(probe, tmp_path, "--dump-dom")
    marker = re.search(
        r"PROBE images=(\d+) decoded=(\d+) rows=(\d+) errors=(\d+) END", dumped.stdout
    )
    assert marker, dumped.stdout[-2000:]
    images, decoded, rows, errors = map(int, marker.groups())
    assert images >= 1 and decoded == images
    assert rows == 4  # lr × model, grouped over folds
    assert errors == 0
    console = [
        line for line in dumped.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
    ]
    assert console == []

    shot = tmp_path / "shot.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000")
    content = shot.read_bytes()
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", content[16:24]) == (1200, 3000)
    assert len(content) > 50_000  # text, tables and plots, not a blank page
