"""A failing example's timeline and the run's HTML report, opened in a real browser (Debian's
Chromium, headless).

The page is rendered from a seeded failing WAL history: two writers, the applier, a kill of
the log's server (a fault band), a pause healed by a resume, a partition left to the
end-of-example heal, and a ``lost`` anomaly on one acknowledged write. Chromium loads it from
a file with every host name unresolvable, prints its DOM and takes a screenshot (kept in the
test's tmp dir, ``timeline.png``); the lanes, bands and the anomaly's mark must be in that DOM,
and the browser's log must hold no console error and no request that tried to leave the page.

Chromium is driven through its own command line (``--dump-dom``, ``--screenshot``), not
selenium and chromedriver: the page has no script to wait for, and the test needs nothing from
PyPI. ``scripts/bootstrap --project`` installs it; without it the test skips locally and fails
under ``CI=true``, where a skip would hide that the page was never looked at.

The same for a REAL failing example: a registered WAL mutant (``tests/mutants``: a checkpoint
committed before the apply, so a batch is lost when the applier dies) runs its suite in a
sandbox with ``--prism-report-html``; the timeline its failure names opens in Chromium with its
lanes (writers, the applier, the nemesis), the applier's crash bands and the ``lost`` marks on
the operations the checker named, no console error, and a screenshot kept in the test's dir
(``real-timeline.png``); the report beside it links to that page.

The report (``--prism-report-html``) is the page of a synthetic run (``tests/test_report_html.py``)
whose failing WAL row links to the timeline above. Opened at ``#row-N-tests`` (the link a failure
in the page follows), Chromium must open that row (``<details open>``): no script does it, the
browser does. Screenshots: ``report.png`` (the matrix) and ``report-row.png`` (the opened row).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from prism_testkit.report import plots
from prism_testkit.report.html import write_html
from prism_testkit.stateful.checkers import Anomaly, suite_verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.timeline import Timeline, fault_bands, write_timeline
from tests.test_report_html import HOSTILE as HOSTILE_NAME
from tests.test_report_html import planned, run_of
from tests.test_timeline import ROOT, failing_wal_timelines

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HOSTILE = '<script>alert("x")</script>&"'


def seeded_failure() -> tuple[History, list, int]:
    """A WAL example whose applier dropped write ``b:3`` after a kill of the log's server:
    the history, its verdict and the index of the lost write's invocation."""
    clock = iter(range(0, 10**12, 3_000_000))  # 3 ms per event
    h = History(clock=lambda: next(clock))
    h.invoke("writer", "write", "ns:a", "a:0").ok(offset=0)
    h.invoke("writer", "write", "ns:b", "b:1").ok(offset=1)
    apply = h.invoke("applier", "apply", "wal")
    h.invoke(HOSTILE, "write", "ns:c", "c:2").ok(offset=2)
    apply.ok(value=2)
    kill = h.invoke("nemesis", "kill", "memstore", None)
    kill.ok()
    lost = h.invoke("writer", "write", "ns:b", "b:3")
    lost.ok(offset=3)
    h.invoke("nemesis", "pause", "sqlite").ok()
    stuck = h.invoke("applier", "apply", "wal")
    h.invoke("writer", "write", "ns:a", "a:4").info("TimeoutError")
    stuck.info("TimeoutError")
    h.invoke("nemesis", "resume", "sqlite").ok()
    h.invoke("nemesis", "partition-isolate-node", "memstore", ((0,), (1, 2))).ok()
    h.invoke("writer", "write", "ns:c", "c:5").fail("NotSupported: too large")
    h.invoke("applier", "apply", "wal").ok(value=1)
    pair = next(p for p in h.pairs() if p.invoke.index == lost.invoke.index)
    anomaly = Anomaly("lost", "acknowledged write b:3 at offset 3 was never applied", h.subhistory([pair]))
    verdict = suite_verdict("wal-checker", {"lost": [anomaly]}, {"writes": 6})
    return h, [verdict], lost.invoke.index


def render(tmp_path: Path) -> tuple[Path, int]:
    history, verdicts, lost = seeded_failure()
    timeline = Timeline(
        f"prism_testkit/suites/test_stateful_wal.py::test_wal[{HOSTILE}]",
        history,
        verdicts,
        summary="INVALID (1 lost)",
        notes=["replay: pytest prism_testkit/suites/test_stateful_wal.py --prism-backend=memstore"],
        faults=fault_bands(history, healed_at=history[-1].time + 1_000_000),
    )
    return write_timeline(tmp_path / "timeline.html", timeline), lost


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    why = "Chromium is not installed: scripts/bootstrap --project installs it (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why}; CI must open the timeline in a real browser")
    pytest.skip(why)


def headless(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # as root (the project's CI), Chromium refuses its sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may be fetched: any attempt fails, and logs
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


class Dom(HTMLParser):
    """The elements of the DOM Chromium printed: (tag, attributes) in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, css_class: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if css_class in a.get("class", "").split()]


def console_errors(log: str) -> list[str]:
    """Lines of Chromium's log that report a console message, a failed load or a blocked request."""
    wanted = re.compile(r"CONSOLE|Uncaught|Failed to load|net::ERR_|Refused to|Content Security Policy")
    return [line for line in log.splitlines() if wanted.search(line)]


def test_a_failing_timeline_opens_in_chromium_with_its_lanes_bands_and_anomaly(tmp_path: Path) -> None:
    browser = chromium()
    page, lost = render(tmp_path)
    url = page.as_uri()

    dumped = headless(browser, tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Dom()
    dom.feed(dumped.stdout)

    lanes = [a["data-lane"] for a in dom.having("lane") if "data-lane" in a]
    assert lanes == ["writer", "applier", HOSTILE, "nemesis"]  # first appearance, the nemesis last
    bands = {a["data-fault"]: a["class"].split() for a in dom.having("band")}
    assert set(bands) == {"kill", "pause", "partition-isolate-node"}
    assert "open" in bands["partition-isolate-node"]  # left to the end-of-example heal
    tags = " ".join(dumped.stdout.split())
    assert "sides [0] | [1, 2]" in tags  # a partition names its sides
    marked = dom.having("anomalous")
    assert [(a["id"], a["data-anomalies"]) for a in marked] == [(f"op-{lost}", "lost")]
    assert "witness" in marked[0]["class"].split()  # the smallest witness, highlighted
    assert [a["data-anomaly"] for a in dom.having("anomaly")] == ["lost"]
    outcomes = sorted(a["data-outcome"] for a in dom.having("op"))
    assert {"ok", "fail", "info"} <= set(outcomes)
    assert not [tag for tag, _ in dom.elements if tag == "script"], "a hostile name became a script"
    assert HOSTILE in {a.get("data-process") for a in dom.having("op")}  # escaped, and shown as it is
    # self-contained: nothing to fetch, and a policy that would block (and log) any attempt
    fetched = [a.get("src") or a.get("href") for tag, a in dom.elements if tag in ("script", "link", "img", "iframe")]
    assert fetched == []
    assert not [a["href"] for a in dom.having("op") if not a["href"].startswith("#")]
    policies = [a.get("content", "") for _, a in dom.elements if a.get("http-equiv") == "Content-Security-Policy"]
    assert ["default-src 'none'" in p for p in policies] == [True]
    assert console_errors(dumped.stderr) == []

    shot = tmp_path / "timeline.png"
    taken = headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1500,900", "--hide-scrollbars", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.exists(), "no screenshot"
    assert shot.stat().st_size > 10_000, "a blank screenshot"
    assert console_errors(taken.stderr) == []


def test_the_report_opens_in_chromium_with_its_matrix_and_a_failing_row_opened(tmp_path: Path) -> None:
    browser = chromium()
    timeline, _ = render(tmp_path)
    report = run_of(planned(str(timeline)), "2026-11-26T09:00:00+00:00")
    page = write_html(tmp_path / "report.html", report)

    top = headless(browser, tmp_path, "--dump-dom", page.as_uri())
    assert top.returncode == 0, top.stderr[-2000:]
    dom = Dom()
    dom.feed(top.stdout)
    suites = [a["data-suite"] for tag, a in dom.elements if tag == "tr" and "data-suite" in a]
    backends = [a["data-backend"] for tag, a in dom.elements if tag == "th" and "data-backend" in a]
    assert suites == ["keyvalue", "stateful_wal"]
    assert backends == ["memstore", "postgres", "sqlite"]
    cells = [(a["data-backend"], a["data-status"]) for tag, a in dom.elements if tag == "td" and "data-status" in a]
    assert len(cells) == len(suites) * len(backends)  # a cell per row and backend
    assert cells.count(("postgres", "unavailable")) == len(suites)
    rows = [a for tag, a in dom.elements if tag == "details"]
    assert len(rows) == 4
    assert not [a for a in rows if "open" in a]
    assert not [tag for tag, _ in dom.elements if tag in ("script", "iframe", "link", "object", "embed")]
    images = [a["src"] for tag, a in dom.elements if tag == "img"]
    if plots.available():  # the stateful rows' plots, drawn into the page
        assert len(images) == 2
        assert all(src.startswith("data:image/png;base64,") for src in images)
    else:
        assert images == []
        assert "plots-missing" in top.stdout
    shown = HOSTILE_NAME.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert shown in top.stdout  # a hostile test name is text in the DOM, never markup
    assert console_errors(top.stderr) == []

    failing = next(a for a in rows if a["data-status"] == "failed" and a["data-suite"] == "stateful_wal")
    url = f"{page.as_uri()}#{failing['id']}-tests"  # what the page's failure links to
    opened = headless(browser, tmp_path, "--dump-dom", url)
    assert opened.returncode == 0, opened.stderr[-2000:]
    dom = Dom()
    dom.feed(opened.stdout)
    now_open = [a["id"] for tag, a in dom.elements if tag == "details" and "open" in a]
    assert now_open == [failing["id"]], "following the link opens the failing row, and only it"
    tests = [a for tag, a in dom.elements if tag == "tr" and "test" in a.get("class", "").split()]
    assert {a["data-outcome"] for a in tests} >= {"failed", "passed"}
    links = [a["href"] for tag, a in dom.elements if tag == "a" and a.get("href", "").endswith(".html")]
    assert links == [timeline.name]  # beside the page: the CI artifact keeps both
    assert console_errors(opened.stderr) == []

    # the row's shot is tall enough to need no scrolling (headless Chromium paints a scrolled
    # shot's top blank)
    for name, where, size in (("report.png", page.as_uri(), "1400,1000"), ("report-row.png", url, "1400,2000")):
        shot = tmp_path / name
        taken = headless(browser, tmp_path, f"--screenshot={shot}", f"--window-size={size}", "--hide-scrollbars", where)
        assert taken.returncode == 0, taken.stderr[-2000:]
        assert shot.exists(), f"no screenshot: {name}"
        assert shot.stat().st_size > 10_000, f"a blank screenshot: {name}"
        assert console_errors(taken.stderr) == []


def test_a_real_failing_wal_mutants_timeline_opens_in_chromium_with_lanes_bands_and_lost_marks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = chromium()
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    report = pytester.path / "site" / "report.html"
    page = failing_wal_timelines(pytester, f"--prism-report-html={report}")[0]
    assert page.parent == report.parent / "prism-timelines"

    dumped = headless(browser, pytester.path, "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Dom()
    dom.feed(dumped.stdout)
    lanes = [a["data-lane"] for a in dom.having("lane") if "data-lane" in a]
    assert "applier" in lanes, lanes
    assert any(lane.startswith("writer") for lane in lanes), lanes
    assert lanes[-1] == "nemesis" or "nemesis" not in lanes  # the nemesis lane, when any, last
    bands = dom.having("band")
    assert bands, "the applier's crash (the fault that loses the batch) is no band"
    assert {a["class"].split()[1] for a in bands} >= {"crash"}
    listed = [a["data-anomaly"] for a in dom.having("anomaly")]
    assert "lost" in listed, listed
    marked = dom.having("anomalous")
    assert marked, "no operation carries the anomaly's mark"
    assert any("lost" in a["data-anomalies"].split() for a in marked)
    assert [a for a in marked if "witness" in a["class"].split()], "the smallest witness is not highlighted"
    for a in marked:  # each mark sits on a write the history acknowledged
        assert a.get("data-process", "").startswith("writer"), a
        assert a["data-outcome"] == "ok", a
    assert not [tag for tag, _ in dom.elements if tag in ("script", "link", "iframe", "img")]
    assert console_errors(dumped.stderr) == []

    shot = pytester.path / "real-timeline.png"
    taken = headless(
        browser, pytester.path, f"--screenshot={shot}", "--window-size=1500,1100", "--hide-scrollbars", page.as_uri()
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.exists(), "no screenshot"
    assert shot.stat().st_size > 10_000, "a blank screenshot"
    assert console_errors(taken.stderr) == []

    # the report beside it links to that page, and opens without a console error too
    opened = headless(browser, pytester.path, "--dump-dom", report.as_uri())
    assert opened.returncode == 0, opened.stderr[-2000:]
    links = re.findall(r'<a href="([^"]+\.html)">timeline</a>', opened.stdout)
    assert f"prism-timelines/{quote(page.name)}" in [html.unescape(link) for link in links], links
    assert console_errors(opened.stderr) == []
