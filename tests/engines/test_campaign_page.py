"""The campaign page: built from a stats series written by the test and from one short real
hypothesis campaign, then rendered in headless Chromium (Debian's package, installed by
``scripts/test-services``) to check that the plots and the bug table are on screen."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from reports_helpers import make_reports
from series_helpers import HYPOTHESIS, SERIES, T0, fuzzkit, write_series

from fuzzkit.campaign_page import PAGE, CampaignPage, render
from fuzzkit.program import load
from fuzzkit.runner import Session
from fuzzkit.triage.explain import render_report
from fuzzkit.triage.store import BugStore

FIGURE = re.compile(r'<figure class="(campaign|worker)-plot">\s*<svg', re.S)


def bug_folder(session: Session, reports: Path) -> BugStore:
    """Two recorded bugs; the first has a report.md (a link into its folder added), the
    second none yet. The series' findings use the first bug's slug."""
    store = make_reports(session, reports)
    bug = store.bugs[0]
    program = load(reports / bug.slug / "repro.json")
    text = render_report(session, bug, program, None, reports / bug.slug)
    (reports / bug.slug / "report.md").write_text(text + "\nReplay [the program](repro.json).\n")
    series = {
        w: [{**e, "slug": bug.slug} if e["kind"] == "finding" else e for e in events]
        for w, events in SERIES.items()
    }
    write_series(reports, series)
    return store


def test_the_page_holds_status_plots_and_bug_reports(session: Session, tmp_path: Path) -> None:
    store = bug_folder(session, tmp_path)
    first, second = store.bugs
    page = render(tmp_path, now=T0 + 200).read_text()
    assert len(FIGURE.findall(page)) == 1 + len(SERIES), "the campaign figure and one per worker"
    assert page.count("<svg") == 1 + len(SERIES) and "<path" in page
    rows = re.search(r'<table id="bug-table">(.*?)</table>\s*<h2', page, re.S)
    assert rows is not None and rows[1].count("<tr>") == 1 + len(store.bugs)
    assert f'<a href="{first.slug}/report.md">' in page and f'<a href="{second.slug}/report.md">' in page
    assert f'<a href="{first.slug}/repro.json">the program</a>' in page, "report links point into its folder"
    assert "<h1>I16 " in page and "<pre><code>" in page, "report.md is rendered, not quoted"
    assert "no report.md yet" in page
    assert "x86-fixed-2cpu/w0 at " in page, "which worker found it, and when"
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page), "self-contained"
    assert 'http-equiv="refresh"' not in page, "a stopped campaign's page does not reload"


def test_the_observer_rewrites_the_page_at_most_every_interval(tmp_path: Path) -> None:
    write_series(tmp_path)
    clock = [0.0]
    page = CampaignPage(tmp_path, every=60, clock=lambda: clock[0])
    path = tmp_path / PAGE
    page(SERIES[0][0])
    assert path.exists(), "written at the first event"
    path.unlink()
    clock[0] = 59.0
    page(SERIES[0][1])
    assert not path.exists()
    clock[0] = 60.0
    page(SERIES[0][2])
    assert path.exists()
    path.unlink()
    assert page.close() == str(path) and path.exists(), "and at the end"


# -- in a browser ---------------------------------------------------------------------------------

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.skip(
        "chromium is not installed: scripts/test-services (make test) installs Debian's chromium "
        "package, which needs root and apt-get on this machine"
    )


def headless(page: Path, profile: Path, *flags: str) -> str:
    profile.mkdir()  # a new empty profile each run: nothing cached, nothing remembered
    done = subprocess.run(
        [browser(), *BROWSER_FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def check_in_browser(page: Path, tmp_path: Path, bugs: int) -> None:
    """The DOM Chromium built has the figures with drawn paths and the bug table's rows, and
    its screenshot is a picture, not a blank page."""
    dom = headless(page, tmp_path / "dom-profile", "--dump-dom")
    figures = re.findall(r'<figure class="(?:campaign|worker)-plot">(.*?)</figure>', dom, re.S)
    assert figures and all("<svg" in f and "<path" in f for f in figures)
    table = re.search(r'<table id="bug-table">(.*?)</table>', dom, re.S)
    assert table is not None and table[1].count("<tr>") == 1 + bugs
    shot = tmp_path / "page.png"
    headless(page, tmp_path / "shot-profile", f"--screenshot={shot}", "--window-size=1200,1600")
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 50, "text, lines and axes in many shades"
        white = next((n for n, c in colors if c == (255, 255, 255)), 0)
        assert white < 0.97 * rgb.width * rgb.height, "mostly blank"


def test_chromium_shows_the_plots_and_the_bug_table(session: Session, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    store = bug_folder(session, reports)
    check_in_browser(render(reports, now=T0 + 200), tmp_path, len(store.bugs))


def test_a_real_campaign_leaves_a_page_chromium_shows(tmp_path: Path) -> None:
    """The end-to-end path: series written by the supervisor, the page by the observer at
    the end, the bug's report written by triage."""
    proc = fuzzkit(tmp_path, *HYPOTHESIS, "--runs", "20")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "campaign page: reports/campaign.html" in out
    reports = tmp_path / "reports"
    bugs = BugStore.load(reports).bugs
    page = (reports / PAGE).read_text()
    assert bugs and all(f'<a href="{bug.slug}/report.md">' in page for bug in bugs)
    assert page.count('<div class="report"><h1>') == len(bugs)
    doc = json.loads(
        subprocess.run(
            [sys.executable, "-m", "fuzzkit", "status", "reports", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    [w0] = doc["targets"][0]["worker_status"]
    assert not w0["running"] and w0["bugs"] == len(bugs) and w0["execs"] >= 20
    check_in_browser(reports / PAGE, tmp_path, len(bugs))
