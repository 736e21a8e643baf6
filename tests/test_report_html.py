"""The report as one self-contained HTML page (:mod:`prism_testkit.report.html`):
``--prism-report-html`` at the end of a run, ``prism-testkit report html`` over a CI matrix's
reports. A merge of a run's shards renders the page of the run over both; everything a run
wrote (hostile test names, messages, reasons with credentials) is escaped and redacted.

The page in a real browser: ``tests/test_timeline_browser.py``."""

from __future__ import annotations

import html
import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_testkit.cli import main
from prism_testkit.report.html import PROVENANCE, render_html, write_html
from prism_testkit.report.results import PrismResults, anomaly_properties, item_properties
from prism_testkit.report.shape import Report, parse

HOSTILE = "quote'\"<script>alert(1)</script>&ü—名"
SECRET_REASON = "cannot connect to postgresql://app:s3cret@db.example:5432/x (connection refused)"
SELECTION = "--prism-backend=memstore,sqlite"


@dataclass
class Planned:
    """One test of a synthetic run: its row, its outcome and what it leaves in its properties."""

    file: str
    name: str
    suite: str | None
    combination: dict[str, str]
    outcome: str = "passed"  # of the call
    message: str = ""
    anomalies: dict[str, int] = field(default_factory=dict)
    tolerated: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    evidence: list[tuple[str, object]] = field(default_factory=list)  # user properties
    duration: float = 0.25

    @property
    def nodeid(self) -> str:
        return f"{self.file}::{self.name}"


def latency(seed: int) -> dict[str, Any]:
    """A stateful example's samples (prism_testkit.stateful.latency's shape): slow under its kill."""
    ops = []
    for n in range(60):
        start = n * 20.0 + seed
        ops.append([start, 250.0 if 400 <= start < 700 else 1.5, "ok" if n % 9 else ("fail", "info")[n % 2], "write"])
    return {"ops": ops, "faults": [[400.0, 700.0, "kill", "kill memstore"]], "span_ms": 1200.0}


def planned(timeline: str = "/tmp/out/prism-timelines/wal.html") -> list[Planned]:
    kv, wal = "prism_testkit/suites/test_contract_keyvalue.py", "prism_testkit/suites/test_stateful_wal.py"
    memstore, sqlite = {"backend": "memstore"}, {"backend": "sqlite"}
    return [
        Planned(kv, "test_put[backend=memstore]", "keyvalue", memstore),
        Planned(kv, f"test_names[{HOSTILE}-backend=memstore]", "keyvalue", memstore, duration=0.5),
        Planned(kv, "test_put[backend=sqlite]", "keyvalue", sqlite),
        Planned(
            kv,
            f"test_names[{HOSTILE}-backend=sqlite]",
            "keyvalue",
            sqlite,
            "failed",
            message=f"AssertionError: {HOSTILE} came back as {HOSTILE[:5]}",
        ),
        Planned(
            wal,
            "test_every_acknowledged_write_is_applied[log=memstore-target=sqlite]",
            "stateful_wal",
            {"log": "memstore", "target": "sqlite"},
            "failed",
            message="AssertionError: wal-checker: INVALID (1 lost)",
            anomalies={"lost": 1},
            faults={"kill": 2, "pause": 1},
            evidence=[
                ("prism_timeline", timeline),
                ("prism_replay_command", "pytest prism_testkit/suites/test_stateful_wal.py::t --hypothesis-seed=7"),
                ("prism_latency", latency(1)),
            ],
            duration=3.5,
        ),
        Planned(
            wal,
            "test_every_acknowledged_write_is_applied[log=sqlite-target=sqlite]",
            "stateful_wal",
            {"log": "sqlite", "target": "sqlite"},
            tolerated={"duplicated": 1},
            faults={"kill": 3},
            evidence=[("prism_latency", latency(2))],
            duration=2.25,
        ),
    ]


def _report(test: Planned, when: str, outcome: str, properties: list[tuple[str, object]]) -> pytest.TestReport:
    longrepr = test.message if outcome == "failed" else None
    return pytest.TestReport(
        test.nodeid,
        (test.file, 1, test.name),
        {},
        outcome,  # type: ignore[arg-type]
        longrepr,
        when,  # type: ignore[arg-type]
        duration=test.duration / 3,
        user_properties=properties,
    )


def record(results: PrismResults, test: Planned) -> None:
    """Feed ``results`` the setup, call and teardown reports of ``test``, as pytest sends them."""
    assert test.suite is not None
    # as the plugin finds it: the unavailable postgres fits keyvalue and stateful_wal's slots
    properties: list[tuple[str, object]] = [
        item_properties(test.suite, test.combination, None, unavailable_fit=["postgres"])
    ]
    results.record(_report(test, "setup", "passed", list(properties)))
    properties += test.evidence
    results.record(_report(test, "call", test.outcome, list(properties)))
    found = anomaly_properties(Counter(test.anomalies), Counter(test.tolerated), Counter(test.faults), Counter())
    results.record(_report(test, "teardown", "passed", [*properties, found]))


def run_of(tests: list[Planned], started: str, shard: int | None = None) -> Report:
    """The ``--prism-report`` of a run of ``tests`` (a shard of two when ``shard``)."""
    results = PrismResults(
        unavailable={"postgres": SECRET_REASON},
        available={"memstore": "embedded (in this process)", "sqlite": "embedded (a file)"},
    )
    for test in tests:
        record(results, test)
    results.outside_suites = {"tests/test_plain.py::test_ok": "passed"}
    results.run = {"prism_testkit_version": "0.1.0", "started_at": started, "duration_s": 9.5}
    if shard is not None:
        results.shard = {"index": shard, "count": 2, "selection": SELECTION}
    return results.report()


class Dom(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def tagged(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in wanted.items())]


def without_provenance(page: str) -> str:
    return re.sub(rf'<footer id="{PROVENANCE}">.*?</footer>', "", page, flags=re.S)


def test_a_merge_of_two_shards_renders_the_page_of_one_run_over_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = planned()
    single = run_of(tests, "2026-11-26T09:00:00+00:00")
    # each shard holds part of the keyvalue memstore row: the merge adds the row up again
    first = run_of(tests[0::2], "2026-11-26T10:00:00+00:00", shard=1)
    second = run_of(tests[1::2], "2026-11-26T10:00:01+00:00", shard=2)
    paths = []
    for name, data in (("shard-1.json", first), ("shard-2.json", second)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(data.dump()))

    out = tmp_path / "site"
    code = main(["report", "html", *map(str, paths), "-o", str(out)])
    assert code == 1, "a failing test makes the exit code 1, as report merge's"
    assert "HTML report written to" in capsys.readouterr().out
    merged_page = (out / "index.html").read_text()
    single_page = write_html(out / "single.html", single).read_text()

    assert without_provenance(merged_page) == without_provenance(single_page)
    assert merged_page != single_page  # the provenance says which runs: they differ, and only there
    assert "shard 2 of 2 of --prism-backend=memstore,sqlite" in merged_page
    assert "merged from 2 reports" in merged_page


def test_the_page_shows_the_matrix_rows_failures_and_reasons_escaped(tmp_path: Path) -> None:
    timeline = tmp_path / "out" / "prism-timelines" / "wal page.html"
    page = render_html(run_of(planned(str(timeline)), "2026-11-26T09:00:00+00:00"), base=tmp_path / "out")
    dom = Dom(page)

    assert [t for t, _ in dom.elements if t in ("script", "link", "iframe", "object", "embed")] == []
    # each stateful row's plot, drawn into the page: nothing to fetch
    plots = [a for t, a in dom.elements if t == "img"]
    assert len(plots) == 2
    assert all(a["src"].startswith("data:image/png;base64,") for a in plots)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "ü—名" in page  # shown as it is, not mangled
    assert "s3cret" not in page
    assert "postgresql://app:***@db.example" in page
    policy = dom.tagged("meta", **{"http-equiv": "Content-Security-Policy"})
    assert [p["content"].startswith("default-src 'none'") for p in policy] == [True]

    cells = {(a["data-backend"], a["data-status"]) for a in dom.tagged("td") if "data-status" in a}
    # a cell per suite and backend: keyvalue and stateful_wal x memstore, postgres, sqlite
    assert len([a for a in dom.tagged("td") if "data-status" in a]) == 2 * 3
    assert ("postgres", "unavailable") in cells
    assert ("sqlite", "failed") in cells
    assert ("memstore", "failed") in cells

    rows = {(a["data-suite"], a["data-combination"]): a for a in dom.tagged("details")}
    assert set(rows) == {
        ("keyvalue", "backend=memstore"),
        ("keyvalue", "backend=sqlite"),
        ("stateful_wal", "log=memstore target=sqlite"),
        ("stateful_wal", "log=sqlite target=sqlite"),
    }
    assert rows[("stateful_wal", "log=sqlite target=sqlite")]["data-status"] == "tolerated"
    failing = rows[("stateful_wal", "log=memstore target=sqlite")]
    assert failing["data-status"] == "failed"
    assert "open" not in failing
    assert "survived kill (3)" in page  # what the passing row survived
    assert "under kill (2), pause (1)" in page
    # a failure links into its row: following the link opens the row
    assert dom.tagged("a", href=f"#{failing['id']}-tests")
    assert dom.tagged("a", href="prism-timelines/wal%20page.html")  # beside the page, as CI keeps them
    assert "pytest prism_testkit/suites/test_stateful_wal.py::t --hypothesis-seed=7" in page  # the recorded replay
    # a test without a recorded replay gets the command that runs it, quoted for the shell
    hostile = next(test for test in planned() if test.outcome == "failed" and test.suite == "keyvalue")
    replay = f"pytest {shlex.quote(hostile.nodeid)} --prism-backend=sqlite"
    assert html.escape(replay, quote=True) in page
    passing = (
        "prism_testkit/suites/test_stateful_wal.py::test_every_acknowledged_write_is_applied[log=sqlite-target=sqlite]"
    )
    assert html.escape(f"pytest '{passing}' --prism-backend=sqlite --prism-combinations=all", quote=True) in page
    assert "Unavailable backends (not tested)" in page


def test_the_option_writes_the_page_and_a_bad_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--prism-report-html=out/report.html", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    page = (pytester.path / "out" / "report.html").read_text()
    assert "1 passed, 0 failed, 0 skipped" in page
    assert "1 test outside them" in page
    result.stdout.fnmatch_lines(["prism-testkit HTML report written to out/report.html"])

    (pytester.path / "adir").mkdir()
    bad = pytester.runpytest_subprocess("--prism-report-html=adir", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--prism-report-html adir: is a directory: give a file name*"])


ROOT = Path(__file__).resolve().parent.parent


def test_a_seeded_wal_loss_writes_a_page_whose_failing_row_links_its_timeline_and_replay(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seeded WAL bug of tests/mutants (a checkpoint committed before the apply loses the
    rest of a batch when the applier dies), run with --prism-report-html: the failing row names
    the lost write, and its test links the timeline page and carries the recorded replay."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = pytester.path / "out"
    result = pytester.runpytest_subprocess(
        *("--pyargs", "prism_testkit.suites", "-p", "tests.mutants.wal_checkpoint_before_apply"),
        *("--prism-backend=sqlite,memstore", "--prism-pattern=stateful_wal", "--hypothesis-profile=prism-mutant"),
        *("-p", "no:cacheprovider", "-k", "under_faults"),
        *(f"--prism-report={out / 'report.json'}", f"--prism-report-html={out / 'report.html'}"),
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    report = json.loads((out / "report.json").read_text())
    failed = {
        test: entry
        for row in report["suites"]
        for test, entry in row["tests"].items()
        if "failed" in entry["outcome"] and entry.get("anomalies", {}).get("lost")
    }
    assert failed, result.stdout.str()[-3000:]
    dom = Dom((out / "report.html").read_text())
    links = {a["href"] for a in dom.tagged("a") if a.get("href", "").endswith(".html")}
    page = (out / "report.html").read_text()
    for entry in failed.values():
        timeline = Path(entry["timeline"])
        assert timeline.parent == out / "prism-timelines"
        assert 'data-anomalies="lost"' in timeline.read_text()
        assert f"prism-timelines/{quote(timeline.name)}" in links  # relative: the artifact keeps both
        assert entry["replay"].startswith("pytest ")
        assert "--hypothesis-profile=prism-mutant" in entry["replay"] or "--hypothesis-seed=" in entry["replay"]
        assert html.escape(entry["replay"], quote=True) in page
        assert entry["latency"]["ops"]  # its failing example's operations, for the row's plot
    rows = [a for a in dom.tagged("details") if a["data-status"] == "failed"]
    assert rows
    assert all(a["data-suite"] == "stateful_wal" for a in rows)
    from prism_testkit.report import plots

    if plots.available():
        assert len(dom.tagged("img")) == len(report["suites"])  # a plot per stateful row


def test_without_matplotlib_a_stateful_row_says_how_to_get_its_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    from prism_testkit.report import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    page = render_html(run_of(planned(), "2026-11-26T09:00:00+00:00"))
    assert page.count(html.escape(plots.MISSING, quote=True)) == 2  # one per stateful row
    assert "<img" not in page


def test_a_plot_draws_the_same_bytes_from_the_same_samples() -> None:
    from prism_testkit.report.plots import latency_figure

    pytest.importorskip("matplotlib", reason="the plots extra: pip install 'prism-testkit[plots]'")
    assert latency_figure(latency(1)) == latency_figure(latency(1)) != latency_figure(latency(2))


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["ops", "faults", "span_ms"]), inner),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(JUNK)
def test_latency_samples_a_hand_wrote_draw_or_say_they_cannot(junk: object) -> None:
    """A report's ``latency`` is whatever its file holds (a merge checks only what it reads)."""
    report = run_of(planned(), "2026-11-26T09:00:00+00:00")
    failing = next(row for row in report.suites if row.suite == "stateful_wal" and row.failed)
    (entry,) = (failing.tests or {}).values()
    entry.latency = junk
    page = render_html(parse(json.loads(json.dumps(report.dump()))))
    assert page.count('<figure class="plot">') + page.count("cannot be drawn") >= 1  # the passing row's, at least


def test_a_report_written_before_rows_carried_their_tests_still_renders() -> None:
    older = {
        "suites": [{"suite": "kv", "combination": {"backend": "memstore"}, "passed": 2, "failed": 0, "skipped": 0}]
    }
    dom = Dom(render_html(parse(older)))
    (row,) = dom.tagged("details")
    assert row["data-status"] == "passed"
    assert "has counts only" in render_html(parse(older))
