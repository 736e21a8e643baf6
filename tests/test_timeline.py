"""The timeline of a stateful example (:mod:`prism_testkit.stateful.timeline`): faults as bands
from strike to heal, anomalies on the operations their witnesses name, every string escaped;
and the runner writing it (``--prism-timelines``) where the failure message says.

The page in a real browser: ``tests/test_timeline_browser.py``."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

import prism_testkit.faults.jitter as global_jitter
from prism_testkit.faults.jitter import Jitter, stalls_between
from prism_testkit.stateful.checkers import Anomaly, suite_verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.timeline import Timeline, anomaly_marks, band_at, fault_bands, render_html
from tests._suite_runs import suite_run

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "<img src=x onerror=alert(1)>&\"'"


def ticking(step: int = 1_000_000) -> Iterator[int]:
    return iter(range(0, 10**15, step))


def history() -> History:
    clock = ticking()
    return History(clock=lambda: next(clock))


def test_a_kill_lasts_from_its_invocation_to_its_completion() -> None:
    h = history()
    h.invoke("writer", "write", "k", 1).ok()
    kill = h.invoke("nemesis", "kill", "sqlite")
    kill.ok()
    [band] = fault_bands(h)
    assert (band.kind, band.name, band.target, band.start, band.end) == ("kill", "kill", "sqlite", 2, 3)
    assert (band.start_ns, band.end_ns) == (2_000_000, 3_000_000)


def test_a_pause_lasts_until_its_resume_and_a_partition_until_the_heal_of_its_target() -> None:
    h = history()
    h.invoke("nemesis", "pause", "postgres").ok()  # 0, 1
    h.invoke("nemesis", "partition", "redis").ok()  # 2, 3
    h.invoke("nemesis", "latency", "redis", 0.05).ok()  # 4, 5
    h.invoke("nemesis", "heal", "postgres").ok()  # 6, 7: heals nothing of redis
    h.invoke("nemesis", "resume", "postgres").ok()  # 8, 9
    h.invoke("nemesis", "heal", "redis").ok()  # 10, 11: ends both of redis's
    bands = {band.name: band for band in fault_bands(h)}
    assert (bands["pause"].start, bands["pause"].end) == (0, 9)
    assert (bands["partition"].start, bands["partition"].end) == (2, 11)
    assert (bands["latency"].start, bands["latency"].end) == (4, 11)
    assert bands["partition"].detail == "the harness | redis"  # a proxy's partition: the client cut off
    assert bands["latency"].detail == "0.05"
    assert {"heal", "resume"}.isdisjoint(bands)


def test_a_fault_never_healed_in_the_history_ends_at_the_end_of_example_heal() -> None:
    h = history()
    h.invoke("nemesis", "partition-bridge", "jetstream-r5", ((0, 1), (3, 4))).ok()
    h.invoke("writer", "write", "k", 1).info("TimeoutError")
    [band] = fault_bands(h, healed_at=99)
    assert (band.kind, band.end, band.end_ns) == ("partition", None, 99)
    assert band.detail == "sides [0, 1] | [3, 4]"
    assert band.label() == "partition-bridge jetstream-r5: sides [0, 1] | [3, 4]"


def test_failovers_power_cuts_and_a_suites_own_crash_are_bands_with_what_they_did() -> None:
    h = history()
    h.invoke("nemesis", "failover", "postgres-ha", {"node": 0}).ok(value={"from": 0, "to": 1, "seconds": 0.8})
    h.invoke("nemesis", "power-cut", "sqlite", {"fault": {"kept": 0}}).ok()
    h.invoke("applier", "crash-before-checkpoint", "wal").ok()
    h.invoke("applier", "apply", "wal").ok(value=2)  # not a fault
    h.invoke("nemesis", "target-rejects", "memstore", 2).ok()
    found = [(b.kind, b.name, b.target) for b in fault_bands(h)]
    assert found == [
        ("failover", "failover", "postgres-ha"),
        ("power-cut", "power-cut", "sqlite"),
        ("crash", "crash-before-checkpoint", "applier"),
        ("other", "target-rejects", "memstore"),
    ]
    failover = fault_bands(h)[0]
    assert failover.detail == "node 0 → from 0, to 1, seconds 0.8"


def test_a_fault_the_history_does_not_hold_is_placed_by_its_times() -> None:
    h = history()
    for value in range(4):
        h.invoke("writer", "write", "k", value).ok()  # events at 0, 1, ... 7 ms
    band = band_at(h, "stall", "stall", "redis-server[42]", 2_500_000, 5_000_000)
    assert band is not None
    assert (band.start, band.end) == (3, 5)
    assert band_at(h, "stall", "stall", None, 9_000_000, 10_000_000) is None  # after the last event


def test_anomalies_mark_the_invocations_their_witnesses_name_and_the_smallest_is_flagged() -> None:
    h = history()
    h.invoke("producer", "enqueue", "q", 1).ok()  # 0, 1
    h.invoke("producer", "enqueue", "q", 2).ok()  # 2, 3
    h.invoke("drainer", "drain", "q").ok(value=[2])  # 4, 5
    pairs = h.pairs()
    lost = Anomaly("lost", "1 never dequeued", h.subhistory([pairs[0], pairs[2]]))
    nothing = Anomaly("phantom", "log offset 7 holds nothing written", History())  # names no op
    wider = Anomaly("duplicated", "2 twice", h.subhistory([pairs[0], pairs[1], pairs[2]]))
    verdict = suite_verdict("queue", {"lost": [lost], "phantom": [nothing], "duplicated": [wider]}, {})
    marks = {m.name: m for m in anomaly_marks(h, [verdict])}
    assert marks["lost"].ops == (0, 4)
    assert marks["lost"].smallest  # the smallest witness that names an operation
    assert not marks["phantom"].smallest
    assert marks["phantom"].ops == ()
    assert not marks["duplicated"].smallest
    completion_only = Anomaly("lost", "by its completion", History([h[5]]))  # a completion points to its invoke
    assert anomaly_marks(h, [suite_verdict("q", {"lost": [completion_only]}, {})])[0].ops == (4,)


def test_every_string_from_a_history_is_escaped() -> None:
    h = history()
    h.invoke(HOSTILE, "write", HOSTILE, HOSTILE).info(HOSTILE)
    h.invoke("nemesis", "partition", HOSTILE).ok()
    h.invoke("nemesis", HOSTILE, HOSTILE, {HOSTILE: HOSTILE}).ok()
    anomaly = Anomaly(HOSTILE, HOSTILE, h.subhistory([h.pairs()[0]]))
    verdict = suite_verdict(HOSTILE, {HOSTILE: [anomaly]}, {HOSTILE: 1})
    page = render_html(Timeline(HOSTILE, h, [verdict], summary=HOSTILE, notes=[HOSTILE], faults=fault_bands(h)))
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#x27;") > 10  # shown as text, everywhere
    assert "<script" not in page


def test_a_failed_or_unknown_operation_shows_what_it_was_told() -> None:
    """Issue #53: the records an aborted poll returned and the offset an unknown append was
    given are on their bars, as an ok one's are."""
    h = history()
    h.invoke("consumer", "poll", "log").fail("aborted", value=[(3, "c")])
    h.invoke("producer", "append", "log", "d").info("commit timed out", offset=4)
    page = render_html(Timeline("t", h))
    assert "returned ((3, &#x27;c&#x27;),)" in page
    assert "offset 4" in page
    assert "error aborted" in page


def test_an_operation_never_completed_runs_to_the_end_of_the_page() -> None:
    h = history()
    h.invoke("consumer", "dequeue", "q")  # never completes
    h.invoke("producer", "enqueue", "q", 1).ok()
    h.invoke("producer", "enqueue", "q", 2).ok()
    page = render_html(Timeline("t", h))
    bar = re.search(r'<a class="op info open" id="op-0"[^>]*style="top:(\d+)px;height:(\d+)px', page)
    assert bar is not None
    top, height = int(bar.group(1)), int(bar.group(2))
    assert top + height > 4 * 22  # past the last row's top: to the end


# --- the runner writes it ------------------------------------------------------------------------


def run_mutant(pytester: pytest.Pytester, mutant: str, backends: str, suite: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *suite_run(pytester.path, ("-p", f"tests.mutants.{mutant}"), suite),
        *(f"--prism-backend={backends}", "--hypothesis-profile=prism-mutant"),
        *("-p", "no:cacheprovider", "-k", "under_faults"),
        *args,
    )


def named_timelines(result: pytest.RunResult) -> list[Path]:
    return [Path(m) for m in re.findall(r"^E\s+timeline: (\S+\.html)", result.stdout.str(), re.M)]


def failing_wal_timelines(pytester: pytest.Pytester, report_option: str) -> list[Path]:
    """The seeded WAL bug of tests/mutants (a checkpoint committed before the apply loses the
    rest of a batch when the applier dies) run with ``report_option``: the timeline pages its
    failure names (the run failed, and named at least one)."""
    result = run_mutant(pytester, "wal_checkpoint_before_apply", "sqlite,memstore", "stateful_wal", report_option)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    pages = named_timelines(result)
    assert pages, result.stdout.str()[-3000:]
    return pages


def test_a_failing_stateful_test_names_its_timeline_written_beside_the_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seeded WAL bug of tests/mutants (a checkpoint committed before the apply loses the
    rest of a batch when the applier dies): the failure names the page, which marks the loss."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    report = pytester.path / "out" / "report.json"
    for page in failing_wal_timelines(pytester, f"--prism-report={report}"):
        assert page.parent == report.parent / "prism-timelines"
        text = page.read_text()
        assert 'data-anomalies="lost"' in text
        assert 'class="lane" data-lane="applier"' in text
        assert "INVALID" in text


def test_with_only_the_html_report_timelines_go_beside_it_and_its_links_resolve(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--prism-report-html`` alone (no JSON report, no --basetemp): the failing test's page goes
    to ``prism-timelines/`` beside the HTML report, not under basetemp (which keeps three runs and
    no CI artifact of the report's folder holds), and the report's link to it resolves from the
    page's folder."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    page = pytester.path / "site" / "report.html"
    named = failing_wal_timelines(pytester, f"--prism-report-html={page}")
    assert {path.parent for path in named} == {page.parent / "prism-timelines"}
    links = re.findall(r'<a href="([^"]+)">timeline</a>', page.read_text())
    assert links, "the failing row links no timeline"
    for link in links:
        assert not link.startswith(("/", "file:", "..")), link  # relative, inside the report's folder
        assert (page.parent / unquote(html.unescape(link))).resolve() in {p.resolve() for p in named}


def test_all_writes_every_example_under_basetemp_and_none_writes_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    base = pytester.path / "base"
    args = ("queue_acks_on_delivery", "memstore", "stateful_queue", "--prism-simulate", f"--basetemp={base}")
    result = run_mutant(pytester, *args, "--prism-timelines=all")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    [page] = named_timelines(result)
    assert page.parent == base / "prism-timelines"
    assert "virtual time (a simulated example)" in page.read_text()
    examples = list((page.parent / page.stem).glob("example-*.html"))
    assert len(examples) > 1  # every example judged, the passing ones too
    assert any("valid" in p.read_text() and "INVALID" not in p.read_text() for p in examples)

    none = run_mutant(
        pytester, *args[:3], "--prism-simulate", f"--basetemp={pytester.path / 'none'}", "--prism-timelines=none"
    )
    assert none.ret == pytest.ExitCode.TESTS_FAILED
    assert named_timelines(none) == []
    assert not (pytester.path / "none" / "prism-timelines").exists()


def test_an_unknown_timelines_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--prism-timelines=sometimes", "--co", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prism-timelines must be failing, all or none, not 'sometimes'*"])


class _Stalled:
    """A stall target that stalls nothing and says when it was asked twice."""

    label = "redis-server[42]"

    def __init__(self) -> None:
        self.asked = 0
        self.twice = threading.Event()

    def stall(self, seconds: float, until: threading.Event) -> bool:
        self.asked += 1
        if self.asked >= 2:
            self.twice.set()
        return True


def test_load_modes_stalls_are_kept_with_their_times_for_the_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    target = _Stalled()
    before = time.monotonic_ns()
    jitter = Jitter(3, 0.001, 0.001, targets=lambda: [target]).start()
    try:
        assert target.twice.wait(60), "the jitter never stalled"
    finally:
        jitter.stop()
    after = time.monotonic_ns()
    found = stalls_between(before, after)
    assert found == []  # stopped: no jitter runs in this process any more
    recorded = list(jitter.recent)
    assert len(recorded) >= 2
    assert all(label == "redis-server[42]" and before <= start <= end <= after for label, start, end in recorded)
    monkeypatch.setattr(global_jitter, "_running", jitter)  # as while it ran
    assert stalls_between(before, after) == recorded
    assert stalls_between(after + 1, after + 2) == []
