"""report.html renders in a real headless browser (Debian's chromium), without errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from PIL import Image
from test_publish_fixtures import AS_OF, STORE_A, build_warehouse

from storepulse.publish import publish_store

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium logs page console messages as `INFO:CONSOLE:1] "...", source: ...` (older
# builds: `CONSOLE(1)]`). The report has no scripts, so any console line is a problem:
# a CSP violation (something tried to load), an uncaught error, a failed resource.
CONSOLE_LINE = re.compile(r"CONSOLE[:(]\d+\)?\]|Uncaught|Refused to|Failed to load resource")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is missing: this test renders report.html in a real browser. "
            "Install Debian's chromium (`apt-get install -y chromium`, or `make browser`)."
        )
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    con = duckdb.connect()
    build_warehouse(con)
    root = tmp_path_factory.mktemp("browser") / "exports"
    result = publish_store(con, STORE_A, AS_OF, root)
    con.close()
    return result.path / "report.html"


def test_report_renders_a_non_blank_screenshot_without_console_errors(report_path, tmp_path):
    shot = tmp_path / "report.png"
    done = run_chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", report_path.as_uri()
    )
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    console = [line for line in done.stderr.splitlines() if CONSOLE_LINE.search(line)]
    assert console == [], "page logged console errors:\n" + "\n".join(console)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1_000_000)
    # A blank or error page has a handful of colours; the report has plots and text.
    assert colours is not None and len(colours) > 50
    most_common = max(count for count, _ in colours)
    assert most_common < 0.9 * 1200 * 3000


def test_rendered_page_has_at_least_four_plots(report_path, tmp_path):
    done = run_chromium(tmp_path, "--dump-dom", report_path.as_uri())
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    dom = done.stdout
    assert "<h1>" in dom and "store report" in dom
    plots = dom.count("<svg") + dom.count("data:image/png")
    assert plots >= 4, f"only {plots} plots in the rendered page"
    # seven analysis sections and "How this report was made"
    assert dom.count("<section>") == 8 and "How this report was made" in dom
