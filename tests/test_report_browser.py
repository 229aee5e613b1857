"""report.html renders in a real headless browser (Debian's chromium), without errors."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from growth_world import add_growth_tables, one_plain_sentence
from PIL import Image
from test_publish_fixtures import AS_OF, STORE_A, STORE_B, build_warehouse

from storepulse.publish import publish_store
from storepulse.publish.growth import EXPERIMENTS_TITLE, ORDERS_TITLE, PARTNERS_TITLE

GROWTH_TITLES = (PARTNERS_TITLE, EXPERIMENTS_TITLE, ORDERS_TITLE)

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
def reports(tmp_path_factory) -> dict[str, Path]:
    """store-a with partners, A/B tests and risky orders (the hand world of
    tests/growth_world.py); store-b without any of them."""
    con = duckdb.connect()
    build_warehouse(con)
    add_growth_tables(con)
    root = tmp_path_factory.mktemp("browser") / "exports"
    paths = {s: publish_store(con, s, AS_OF, root).path / "report.html" for s in (STORE_A, STORE_B)}
    con.close()
    return paths


@pytest.fixture(scope="module")
def report_path(reports) -> Path:
    return reports[STORE_A]


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
    # seven analysis sections, the next experiment (#14), partners, A/B tests, orders to
    # review (#17) and "How this report was made"
    assert dom.count("<section>") == 12 and "How this report was made" in dom


def _rendered_sections(dom: str) -> dict[str, str]:
    found = re.findall(r"<section><h2>(.*?)</h2>(.*?)</section>", dom, re.S)
    return {html.unescape(title): body for title, body in found}


def test_growth_sections_render_with_a_plot_each(reports, tmp_path):
    done = run_chromium(tmp_path, "--dump-dom", reports[STORE_A].as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    sections = _rendered_sections(done.stdout)
    for title in GROWTH_TITLES:
        assert "<svg" in sections[title], title
        assert "What to do:" in sections[title], title
    assert "Mia" in sections[PARTNERS_TITLE] and "SPRING5" in sections[PARTNERS_TITLE]
    assert "The next conversion test needs" in sections[EXPERIMENTS_TITLE]
    assert "billed in US but shipped to BR" in sections[ORDERS_TITLE]
    assert "s1a" in sections[ORDERS_TITLE] and "cash on delivery" in sections[ORDERS_TITLE]


def test_growth_sections_degrade_to_one_plain_sentence_without_data(reports, tmp_path):
    done = run_chromium(tmp_path, "--dump-dom", reports[STORE_B].as_uri())
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if CONSOLE_LINE.search(line)]
    assert console == []
    sections = _rendered_sections(done.stdout)
    assert len(sections) == 12
    for title in GROWTH_TITLES:
        assert one_plain_sentence(sections[title]), (title, sections[title])
    assert "add a partners.csv" in sections[PARTNERS_TITLE]
    assert "no A/B test data yet" in sections[EXPERIMENTS_TITLE]
