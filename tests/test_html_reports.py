"""The HTML reports a run writes, checked as a person would see them: opened offline in headless Chromium.

Every ``*.html`` a small run writes (one pseudonymisation report per source, the linkage report, anything added
later) must load nothing but itself, render its headings and tables with the inline stylesheet, log no script
error, fit the window without sideways scrolling, and screenshot as a real page. The browser tests need Debian's
``chromium`` and Python ``playwright`` (CI installs both, see ``.ci/run``); they skip, saying why, when either is
missing. Set ``CARELINK_REPORT_PNGS`` to a folder to keep the screenshots for a look.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from carelink.config import load_config
from carelink.link.report import link_rates
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.workspace import Workspace

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    sync_playwright = None

PEOPLE = 300
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}

needs_browser = pytest.mark.skipif(
    sync_playwright is None or CHROMIUM is None,
    reason="needs Python playwright (pip install -e '.[dev]') and Debian's chromium on PATH (apt-get install chromium); "
           + ("playwright is not importable" if sync_playwright is None else "no `chromium` on PATH"),
)

#: What a reader must see on each kind of report: the h1 (a prefix) and the section headings (h2, h3; prefixes).
EXPECTED: dict[str, dict[str, Any]] = {
    "pseudonymisation_report.html": {
        "h1": "Pseudonymisation report — ",
        "headings": ["Leak scan", "What leaves the partner, field by field", "NHS number status",
                     "Re-identification risk", "k-anonymity of plaintext quasi-identifiers", "Token frequency exposure",
                     "Frequency-attack self-test", "Inputs"],
        "text": ["Leak scan passed", "records in", "records out", "nhs_number_token"],
    },
    "linkage_report.html": {
        "h1": "Linkage report",
        "headings": ["Warnings", "Model", "Match-weight distribution of scored pairs", "People by number of records",
                     "Link rates", "by source", "by source kind", "by age band",
                     "Sample links, comparison by comparison", "strongest link", "Blocking"],
        "text": ["records", "people", "expected precision", "nhs_number"],
    },
}

#: Anything that would fetch from outside the file: absolute or protocol-relative URLs in src/href/url(), @import,
#: external scripts and stylesheets.
EXTERNAL = re.compile(
    r"""(?:src|href|srcset|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|url\(\s*["']?\s*(?:https?:)?//"""
    r"""|@import"""
    r"""|<script[^>]+\bsrc\s*="""
    r"""|<link[^>]+rel\s*=\s*["']?(?:stylesheet|preload|prefetch|preconnect|dns-prefetch|icon)""",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small completed run, shared by every test here."""
    root = tmp_path_factory.mktemp("html_reports")
    generate_partnership(root / "data", people=PEOPLE, seed=5)
    report = run_all(load_config(root / "data" / "pipeline.yaml"), Workspace(root / "workspace"))
    return report.run.folder


@pytest.fixture(scope="module")
def reports(run_folder: Path) -> list[Path]:
    """Every HTML file the run wrote, anywhere in its workspace."""
    pages = sorted(run_folder.parent.parent.rglob("*.html"))
    assert pages, f"the run wrote no HTML under {run_folder.parent.parent}"
    return pages


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_run_writes_the_expected_reports(run_folder: Path, reports: list[Path]) -> None:
    sources = sorted(p.name for p in (run_folder / "pseudonymise").iterdir() if p.is_dir())
    assert len(sources) >= 2
    for source in sources:
        assert run_folder / "pseudonymise" / source / "pseudonymisation_report.html" in reports
    assert run_folder / "link" / "linkage_report.html" in reports


def test_html_names_no_outside_resource(reports: list[Path]) -> None:
    """Static check, no browser: nothing in the markup points outside the file."""
    for path in reports:
        text = path.read_text(encoding="utf-8")
        found = [m.group(0) for m in EXTERNAL.finditer(text)]
        assert not found, f"{_label(path)} refers to outside resources: {found[:5]}"
        assert text.lstrip().lower().startswith("<!doctype html>"), _label(path)
        assert '<meta charset="utf-8">' in text, _label(path)
        assert "<style>" in text, f"{_label(path)} has no inline stylesheet"


def test_link_rates_read_in_age_order() -> None:
    """Age bands as people read them (5-9 before 10-14), records without an age band last."""
    bands = ["10-14", "5-9", None, "90+", "0-4", "45-49", "50-54"]
    nodes = pl.DataFrame({"record_token": [f"r{i}" for i in range(len(bands))], "age_band": bands})
    person_map = pl.DataFrame({"record_token": nodes["record_token"], "person_id": [f"p{i}" for i in range(len(bands))]})
    rows = link_rates(nodes, person_map, "age_band")
    assert [r["age_band"] for r in rows] == ["0-4", "5-9", "10-14", "45-49", "50-54", "90+", None]


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def browser() -> Any:
    if sync_playwright is None or CHROMIUM is None:
        pytest.skip("needs Python playwright and Debian's chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


LAYOUT_JS = """() => {
    const bars = [...document.querySelectorAll('.bar')].map(b => b.getBoundingClientRect().width);
    const tables = [...document.querySelectorAll('table')];
    return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
            bodyMaxWidth: getComputedStyle(document.body).maxWidth, tables: tables.length,
            emptyTables: tables.filter(t => t.rows.length < 2).length,
            bars: bars.length, visibleBars: bars.filter(w => w > 0).length};
}"""


def _open(browser: Any, path: Path, shot: Path) -> dict[str, Any]:
    """Open ``path`` offline in a fresh context; what it requested and logged, what a reader sees, a screenshot."""
    requests: list[str] = []
    aborted: list[str] = []
    problems: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        requests.append(url)
        if url.startswith(("file:", "data:", "about:")):
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    def console(message: Any) -> None:
        if message.type in ("error", "assert"):
            problems.append(f"console {message.type}: {message.text}")

    context = browser.new_context(viewport=VIEWPORT, offline=True)
    try:
        page = context.new_page()
        page.route("**/*", route)
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.goto(path.as_uri(), wait_until="load", timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
        h1 = page.locator("h1")
        return {
            "requests": requests, "aborted": aborted, "problems": problems, "title": page.title(),
            "h1": h1.first.inner_text() if h1.count() else "", "h1_visible": h1.count() > 0 and h1.first.is_visible(),
            "headings": [t.strip() for t in page.locator("h2, h3").all_inner_texts()],
            "text": page.locator("body").inner_text(),
            "layout": page.evaluate(LAYOUT_JS),
            "screenshot": shot,
        }
    finally:
        context.close()


@pytest.fixture(scope="module")
def rendered(browser: Any, reports: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[Path, dict[str, Any]]:
    """Each report opened once; screenshots also copied to ``$CARELINK_REPORT_PNGS`` when that is set."""
    shots = tmp_path_factory.mktemp("screenshots")
    keep = os.environ.get("CARELINK_REPORT_PNGS")
    results = {}
    for path in reports:
        results[path] = _open(browser, path, shots / f"{path.parent.name}_{path.stem}.png")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(results[path]["screenshot"], Path(keep) / results[path]["screenshot"].name)
    return results


@needs_browser
def test_reports_request_nothing_but_themselves(rendered: dict[Path, dict[str, Any]]) -> None:
    for path, seen in rendered.items():
        own = path.as_uri()
        others = sorted({u for u in seen["requests"] if u != own and not u.startswith("data:") and u != "about:blank"})
        assert not others, f"{_label(path)} requested {others[:5]} (aborted: {seen['aborted'][:5]})"
        assert own in seen["requests"], f"{_label(path)}: the page itself was never requested?"


@needs_browser
def test_reports_log_no_errors(rendered: dict[Path, dict[str, Any]]) -> None:
    for path, seen in rendered.items():
        assert not seen["problems"], f"{_label(path)}: {seen['problems'][:5]}"


@needs_browser
def test_reports_show_title_and_sections(rendered: dict[Path, dict[str, Any]]) -> None:
    for path, seen in rendered.items():
        label = _label(path)
        assert seen["title"].strip(), f"{label} has no title"
        assert seen["h1"].strip() and seen["h1_visible"], f"{label} shows no h1"
        expected = EXPECTED.get(path.name)
        if expected is None:
            continue  # a report this module does not know yet still gets the generic checks
        assert seen["h1"].startswith(expected["h1"]), f"{label}: h1 is {seen['h1']!r}"
        for heading in expected["headings"]:
            assert any(h.startswith(heading) for h in seen["headings"]), \
                f"{label} lacks the section {heading!r}; it has {seen['headings']}"
        for words in expected["text"]:
            assert words in seen["text"], f"{label} does not show {words!r}"
    names = {path.name for path in rendered}
    assert set(EXPECTED) <= names, f"reports not rendered: {set(EXPECTED) - names}"


@needs_browser
def test_reports_are_styled_and_fit_the_window(rendered: dict[Path, dict[str, Any]]) -> None:
    for path, seen in rendered.items():
        label, layout = _label(path), seen["layout"]
        assert layout["bodyMaxWidth"] == "1400px", f"{label}: the inline stylesheet did not apply ({layout})"
        assert layout["scrollWidth"] <= layout["innerWidth"], f"{label} scrolls sideways at {VIEWPORT['width']}px"
        assert layout["emptyTables"] == 0, f"{label} shows a table with a header and no rows ({layout})"
        if path.name in EXPECTED:
            assert layout["tables"] >= 3, f"{label}: {layout}"
            assert layout["visibleBars"] >= 1, f"{label}: no bar drawn ({layout})"


@needs_browser
def test_report_screenshots_are_real_pages(rendered: dict[Path, dict[str, Any]]) -> None:
    for path, seen in rendered.items():
        shot = seen["screenshot"]
        width, height = _png_size(shot)
        assert shot.stat().st_size > 10_000, f"{_label(path)}: a {shot.stat().st_size}-byte screenshot is blank"
        assert width >= 800 and height >= 900, f"{_label(path)}: screenshot {width}x{height}"
