"""The report says what pytest says: a zero count is no finding, and dict-valued properties
reach ``--junitxml`` as JSON."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prism_testkit.cli import main
from prism_testkit.registry.shards import read_durations
from prism_testkit.report.merge import totals
from prism_testkit.report.shape import parse

NOTHING_LOST = """
from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.stateful.checkers import Verdict

pytestmark = prism_suite("zero_lost", backend=Slot.needs("keyvalue"))

def test_checked_and_found_nothing(prism_env: PrismEnv) -> None:
    prism_env.anomalies["lost"] += 0
    prism_env.tolerated["duplicated"] += 0
    for _ in range(2):
        prism_env.record_verdict(Verdict("zero-checker", None, {}, {}, {"ok": 1}))
"""


def test_a_zero_count_is_no_finding_in_the_table_the_json_or_junit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_zero=NOTHING_LOST)
    # in a subprocess: a run inside a Hypothesis example cannot register the plugin's profiles
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--prism-backend=memstore", "--prism-report=r.json", "--junitxml=out.xml"
    )
    result.assert_outcomes(passed=1)
    (row,) = json.loads((pytester.path / "r.json").read_text())["suites"]
    assert (row["anomalies"], row["tolerated"]) == ({}, {})
    assert row["verdicts"] == {"zero-checker": 2}, "what was judged, valid verdicts included"
    assert "lost=" not in result.stdout.str()
    (case,) = ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
    properties = {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}
    found = json.loads(properties["prism_anomalies"])
    assert found == {"anomalies": {}, "tolerated": {}, "faults": {}, "verdicts": {"zero-checker": 2}}
    assert json.loads(properties["prism"])["combination"] == {"backend": "memstore"}  # JSON, not a repr


# Two modules declare one suite name (as prism_testkit/suites/test_cqrs.py and
# prism_testkit/suites/test_cqrs_cdc.py both declare cqrs), with slots that different backends fit,
# and tests of every outcome pytest counts.
SHARED_NAME = """
import pytest
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("shared", backend=Slot.needs("{needs}"))

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_passes(prism_env: PrismEnv) -> None:
    pass

def test_fails(prism_env: PrismEnv) -> None:
    assert prism_env.combination["backend"] == "nothing", "wrong backend"

def test_skips(prism_env: PrismEnv) -> None:
    pytest.skip("not today")

def test_setup_errors(prism_env: PrismEnv, broken_setup) -> None:
    pass

def test_teardown_errors(prism_env: PrismEnv, broken_teardown) -> None:
    pass

def test_fails_and_teardown_errors(prism_env: PrismEnv, broken_teardown) -> None:
    assert False, "failed first"

def test_plain() -> None:  # in a suite module, outside the suite: no backend
    pass
"""
BACKENDS = ("memstore", "sqlite", "localfs")
TESTS = ("passes", "fails", "skips", "setup_errors", "teardown_errors", "fails_and_teardown_errors", "plain")


def run_selection(
    pytester: pytest.Pytester, backends: list[str], tests: list[str], *extra: str, subprocess: bool = False
) -> dict[str, Any]:
    """pytest's own counts and the report of one selection."""
    pytester.makepyfile(
        test_shared_objects=SHARED_NAME.format(needs="objects"), test_shared_queue=SHARED_NAME.format(needs="queue")
    )
    selection = ["-k", " or ".join(f"test_{name}" for name in tests)] if tests else []
    # in a subprocess under Hypothesis: a run inside an example cannot register the plugin's profiles
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    result = run(
        "-p", "no:cacheprovider", f"--prism-backend={','.join(backends)}", "--prism-report=r.json", *selection, *extra
    )
    outcomes = result.parseoutcomes()
    counted = {name: outcomes.get(name, 0) for name in ("passed", "failed", "skipped", "errors")}
    return {"pytest": counted, "report": json.loads((pytester.path / "r.json").read_text()), "stdout": result.stdout}


def assert_report_counts_as_pytest(found: dict[str, Any]) -> None:
    report, counted = found["report"], found["pytest"]
    assert report["totals"] == counted
    in_rows = {name: sum(row[name] for row in report["suites"]) for name in counted}
    unfit = report["without_combination"]  # tests of a module nothing selected fits
    outside = report["outside_suites"]
    assert {name: in_rows[name] + unfit[name] + outside[name] for name in counted} == counted


def test_a_suite_name_two_modules_declare_keeps_the_rows_of_the_module_that_fits(pytester: pytest.Pytester) -> None:
    found = run_selection(pytester, ["sqlite"], ["passes"])  # sqlite has a queue, no object store
    (sqlite,) = found["report"]["backends"]
    assert sqlite["server_version"] == f"SQLite {sqlite3.sqlite_version}"
    assert found["pytest"] == {"passed": 1, "failed": 0, "skipped": 1, "errors": 0}
    (row,) = found["report"]["suites"]
    assert (row["suite"], row["combination"], row["passed"]) == ("shared", {"backend": "sqlite"}, 1)
    assert found["report"]["not_applicable"] == []  # it ran: the other module is only pytest's skip
    assert "not applicable" not in found["stdout"].str()
    assert_report_counts_as_pytest(found)


@pytest.mark.parametrize("insisting", ["--prism-pattern=shared", "--prism-require-fit"])
def test_a_module_that_fits_nothing_is_no_gap_when_another_module_of_its_suite_runs(
    pytester: pytest.Pytester, insisting: str
) -> None:
    # Named with --prism-pattern (or required to fit), the suite runs: the queue module's tests
    # are let off with a reason naming their module, not 12 "zero runnable combinations" errors.
    found = run_selection(pytester, ["localfs"], ["passes"], insisting, "-rs")
    assert found["pytest"] == {"passed": 1, "failed": 0, "skipped": 1, "errors": 0}
    assert found["report"]["no_runnable_combinations"] == []
    found["stdout"].fnmatch_lines(["*not applicable*(in test_shared_queue.py; other modules of 'shared' run)*"])


def test_errors_have_their_own_column_and_failures_their_first_line(pytester: pytest.Pytester) -> None:
    found = run_selection(pytester, ["localfs"], [])  # only the objects module fits
    assert found["pytest"] == {"passed": 4, "failed": 2, "skipped": 7, "errors": 3}  # 6 skips: queue module
    (row,) = found["report"]["suites"]
    assert (row["passed"], row["failed"], row["skipped"], row["errors"]) == (2, 2, 1, 3)
    assert found["report"]["outside_suites"]["passed"] == 2  # test_plain of each module
    assert row["tests"]["test_shared_objects.py::test_fails_and_teardown_errors[backend=localfs]"]["outcome"] == (
        "failed+error"
    )
    failures = {f["test"].split("::")[1]: (f["when"], f["message"]) for f in found["report"]["failures"]}
    assert failures == {
        "test_fails[backend=localfs]": ("call", "AssertionError: wrong backend"),
        "test_fails_and_teardown_errors[backend=localfs]": ("call", "AssertionError: failed first"),
        "test_setup_errors[backend=localfs]": ("setup", "RuntimeError: setup broke"),
        "test_teardown_errors[backend=localfs]": ("teardown", "RuntimeError: teardown broke"),
    }
    found["stdout"].re_match_lines([r"suite\s+combination\s+passed\s+failed\s+skipped\s+errors\s+findings"])
    assert found["report"]["backends"] == [
        {"backend": "localfs", "provisioned": "embedded (files in a temp dir)", "server_version": None}
    ]
    run = found["report"]["run"]
    assert run["prism_testkit_version"] == importlib.metadata.version("prism-testkit")
    assert datetime.fromisoformat(run["started_at"]) <= datetime.now(UTC)
    assert run["duration_s"] >= 0


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    backends=st.lists(st.sampled_from(BACKENDS), min_size=1, max_size=3, unique=True),
    tests=st.lists(st.sampled_from(TESTS), max_size=3, unique=True),
    require_fit=st.booleans(),
)
@example(backends=["sqlite"], tests=[], require_fit=False)
@example(backends=["localfs"], tests=["passes"], require_fit=True)
def test_the_report_counts_what_pytest_counts_for_any_selection(
    pytester: pytest.Pytester, backends: list[str], tests: list[str], require_fit: bool
) -> None:
    found = run_selection(pytester, backends, tests, *(["--prism-require-fit"] if require_fit else []), subprocess=True)
    assert_report_counts_as_pytest(found)


LONG_COMBINATION = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite(
    "a_suite_with_a_long_name", first_slot=Slot.needs("keyvalue"), second_slot=Slot.needs("objects")
)

def test_finds(prism_env: PrismEnv) -> None:
    prism_env.anomalies["lost-acknowledged-writes"] += 3
    prism_env.tolerated["duplicated-after-redelivery"] += 2
    prism_env.faults["kill-node"] += 4
"""


@pytest.mark.parametrize("columns", [60, 100, 200])
def test_the_table_fits_the_terminal_and_keeps_every_finding(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    pytester.makepyfile(test_long=LONG_COMBINATION)
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore,localfs")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    section = lines[next(n for n, line in enumerate(lines) if "suites x combinations" in line) + 1 :]
    section = section[: next(n for n, line in enumerate(section) if line.startswith("="))]
    assert [line for line in section if len(line) > columns] == []  # the slowest rows too
    table = section[: next(n for n, line in enumerate(section) if line.startswith("-"))]
    text = " ".join(" ".join(table).split())  # wrapped lines read as one text
    findings = "lost-acknowledged-writes=3 duplicated-after-redelivery=2 (tolerated) faults: kill-node=4"
    assert text.count(findings) == 2, table  # the faults a row was checked under, beside its findings
    assert "second_slot=localfs" in text, table
    assert "second_slot=memstore" in text, table
    assert (columns >= 100) == any(line.startswith("suite ") for line in table), table  # else one block per row
    assert "(1 test)" in result.stdout.str()  # the slowest rows: one test each, not "1 tests"


BROKEN_BACKEND = """
from prism_testkit import Availability, BackendProperties, BackendSpec, Provisioner, hookimpl
from prism_testkit.provision.base import Via
from bagdriver import BagDriver


class BrokenProvisioner(Provisioner):
    def probe(self, ctx):
        return Availability(Via.BINARY, "broken-server on PATH")

    def start(self, ctx):
        raise RuntimeError("broken-server exited with status 1: bad config line 3")


@hookimpl
def prism_register_backends():
    return [BackendSpec(name="broken", capabilities=frozenset({"keyvalue"}),
                        properties=BackendProperties(durable=True), provisioner=BrokenProvisioner(),
                        driver=BagDriver)]
"""
THREE_TESTS = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("three", backend=Slot.needs("keyvalue"))

def test_a(prism_env: PrismEnv) -> None:
    pass

def test_b(prism_env: PrismEnv) -> None:
    pass

def test_c(prism_env: PrismEnv) -> None:
    pass
"""


def test_a_backend_that_fails_to_start_is_one_line_with_its_reason(
    pytester: pytest.Pytester, third_party: Callable[..., None]
) -> None:
    driver = (Path(__file__).parent / "outoftree" / "bagstore.py").read_text()
    third_party("prism-broken", {"broken": BROKEN_BACKEND, "bagdriver": driver}, {"broken": "broken"})
    pytester.makepyfile(test_three=THREE_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=broken,memstore", "--prism-report=r.json")
    result.assert_outcomes(passed=3, errors=3)
    reason = (
        "backend 'broken' could not be started: RuntimeError: broken-server exited with status 1: bad config line 3"
    )
    output = result.stdout.str()
    assert "During handling" not in output
    assert "direct cause" not in output
    errors = output.split("= ERRORS =")[1].split("prism-testkit: suites x combinations")[0]
    assert errors.count(reason) == 3  # one line per test, no chain
    result.stdout.fnmatch_lines(["*backends that FAILED TO START*", f"broken: {reason}"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["failed_to_start"] == [{"backend": "broken", "reason": reason}]


BROKEN_CLEANUP = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("cleanup", backend=Slot.needs("keyvalue"))

async def broken_purge() -> None:
    raise RuntimeError("purge broke")

def test_fails_and_its_cleanup_fails(prism_env: PrismEnv) -> None:
    prism_env.purge = broken_purge
    assert False, "the failure"

def test_passes_but_its_cleanup_fails(prism_env: PrismEnv) -> None:
    prism_env.purge = broken_purge
"""


def test_a_failure_is_listed_once_even_when_its_cleanup_fails_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cleanup=BROKEN_CLEANUP)
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", "-rA")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # a failed cleanup after a pass stays an error
    summary = result.stdout.str().split("short test summary info")[1]
    assert summary.count("test_fails_and_its_cleanup_fails") == 1
    result.stdout.fnmatch_lines(["*cleaning up after the failure failed too: RuntimeError: purge broke*"])


ONE_KEY = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("one_key", backend=Slot.needs("keyvalue"))

async def test_put(prism_env: PrismEnv) -> None:
    await prism_env.driver("backend").keyvalue().put(prism_env.ns.name("k"), b"v")
"""


@pytest.mark.parametrize("backend", ["redis", "postgres", "nats"])
def test_the_report_names_each_servers_version(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makepyfile(test_one_key=ONE_KEY)
    # in a subprocess: the server and its client library's connections end with it
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--prism-backend={backend}", "--prism-report=r.json"
    )
    result.assert_outcomes(passed=1)
    (entry,) = json.loads((pytester.path / "r.json").read_text())["backends"]
    assert re.match(r"\d+\.\d+", entry["server_version"]), entry  # postgres adds its build: "15.20 (Debian ...)"
    assert entry["provisioned"].split()[0] in ("binary", "url", "container"), entry


TWO_TESTS = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("{name}", backend=Slot.needs("keyvalue"))

def test_one(prism_env: PrismEnv) -> None:
    pass

def test_two(prism_env: PrismEnv) -> None:
    pass
"""


def test_long_runs_show_progress_per_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_first=TWO_TESTS.format(name="first"), test_second=TWO_TESTS.format(name="second"))
    quick = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore")
    quick.assert_outcomes(passed=4)
    assert "prism-testkit progress" not in quick.stdout.str()  # a run shorter than the interval says nothing more
    monkeypatch.setenv("PRISM_PROGRESS_EVERY", "0.000001")  # as if every test took longer than the interval
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "prism-testkit progress after *s: first 1/2 (all suites 1/4, about *s left)",
            "prism-testkit progress after *s: first 2/2 (all suites 2/4, about *s left)",
            "prism-testkit progress after *s: second 1/2 (all suites 3/4, about *s left)",
            "prism-testkit progress after *s: second 2/2 (all suites 4/4)",
        ]
    )


def test_tests_outside_the_suites_are_counted_apart(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_first=TWO_TESTS.format(name="first"), test_plain="def test_plain() -> None:\n    pass\n")
    monkeypatch.setenv("PRISM_PROGRESS_EVERY", "0.000001")
    for xdist in ((), ("-n", "2")):
        result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", *xdist)
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(["*prism-testkit progress after *s* (all suites */2, other tests */1*"])


def test_under_xdist_the_totals_come_from_a_workers_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller collects nothing: the totals are read from the ids a worker collected."""
    pytester.makepyfile(test_first=TWO_TESTS.format(name="first"), test_second=TWO_TESTS.format(name="second"))
    monkeypatch.setenv("PRISM_PROGRESS_EVERY", "0.000001")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", "-n", "2")
    result.assert_outcomes(passed=4)
    output = result.stdout.str()
    assert "/?" not in output
    result.stdout.fnmatch_lines(["*prism-testkit progress after *s: * 2/2 (all suites 4/4)"])
    glued = [line for line in output.splitlines() if "prism-testkit progress" in line and not line.startswith("prism")]
    assert not glued, "a progress line starts a line of its own, never after the dots"


PROGRESS = re.compile(
    r"^prism-testkit progress after \d+s(?:: .*)? \(all suites (\d+)/(\d+)(?:, other tests (\d+)/(\d+))?"
)


def test_under_xdist_every_progress_line_totals_the_suite_tests_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of the two workers reports the whole run's collection: the total in every line is
    the number of suite tests (and of other tests), never once per worker."""
    pytester.makepyfile(
        test_first=TWO_TESTS.format(name="first"),
        test_second=TWO_TESTS.format(name="second"),
        test_third=TWO_TESTS.format(name="third"),
        test_plain="def test_plain() -> None:\n    pass\n",
    )
    monkeypatch.setenv("PRISM_PROGRESS_EVERY", "0.000001")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", "-n", "2")
    result.assert_outcomes(passed=7)
    counts = [m.groups() for line in result.stdout.lines if (m := PROGRESS.match(line))]
    assert len(counts) == 7, result.stdout.str()
    assert {(total, other_total) for _, total, _, other_total in counts} == {("6", "1")}
    assert counts[-1][::2] == ("6", "1")  # all done: each counted once


def test_shards_of_one_backends_run_merge_into_the_single_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_shard=TWO_TESTS.format(name="sharded"), test_other=TWO_TESTS.format(name="other"))
    backend = ["-p", "no:cacheprovider", "--prism-backend=memstore,sqlite"]
    pytester.runpytest(*backend, "-k", "test_one", "--prism-report=one.json").assert_outcomes(passed=4)
    pytester.runpytest(*backend, "-k", "not test_one", "--prism-report=two.json").assert_outcomes(passed=4)
    pytester.runpytest(*backend, "--prism-report=single.json").assert_outcomes(passed=8)
    paths = [str(pytester.path / name) for name in ("one.json", "two.json")]
    assert main(["report", "merge", *paths, "--json", str(pytester.path / "merged.json")]) == 0
    merged = json.loads((pytester.path / "merged.json").read_text())
    single = json.loads((pytester.path / "single.json").read_text())
    assert merged["totals"] == totals(parse(single)).dump()
    assert [(r["suite"], r["combination"], r["passed"], sorted(r["tests"])) for r in merged["suites"]] == [
        (r["suite"], r["combination"], r["passed"], sorted(r["tests"])) for r in single["suites"]
    ]
    assert main(["report", "merge", *paths, paths[0]]) == 2, "a run given twice would count its tests twice"


# A suite module with a plain test beside the suite's (the docs count it as outside the suites).
SUITE_AND_PLAIN = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("mixed", backend=Slot.needs("keyvalue"))

def test_in_the_suite(prism_env: PrismEnv) -> None:
    pass

def test_plain_{which}() -> None:
    assert {holds}, "the plain test's own verdict"
"""


def untimed(tests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A bucket's tests without their durations (a plain test's may round to 0.0)."""
    return {test: {k: v for k, v in entry.items() if k != "duration_s"} for test, entry in tests.items()}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_each_plain_test_s_duration_is_in_the_report_for_the_shard_planner(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Tests outside the suites (a project's own) carry their time as the rows' tests do, so
    ``--prism-shard-durations`` balances a project's test run by them too, setup included: each
    test its own, in a serial run and when workers ran them (CI's), one slow and one quick."""
    pytester.makepyfile(
        test_mixed=SUITE_AND_PLAIN.format(which="sleeps", holds="__import__('time').sleep(0.3) is None")
        + "\ndef test_plain_quick() -> None:\n    pass\n",
        conftest="import time\nimport pytest\n\n@pytest.fixture(autouse=True)\n"
        "def slow_setup(request):\n    time.sleep(0.3 if 'sleeps' in request.node.name else 0)\n",
    )
    pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--prism-backend=memstore", "--prism-report=r.json", *workers
    )
    report = json.loads((pytester.path / "r.json").read_text())
    timed = {test: entry["duration_s"] for test, entry in report["outside_suites"]["tests"].items()}
    slow, quick = timed["test_mixed.py::test_plain_sleeps"], timed["test_mixed.py::test_plain_quick"]
    assert slow >= 0.6, f"the slow test's setup and call took 0.6 s, the report says {timed}"
    assert quick < slow - 0.5, f"the quick test carries another test's time: {timed}"
    planned = read_durations(pytester.path / "r.json")
    assert {test: planned[test] for test in timed} == timed


def test_a_red_plain_test_in_a_suite_module_keeps_its_shard_and_the_merge_red(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 51: the shard exited 1 with ``failures: []`` and the merge said green."""
    pytester.makepyfile(test_mixed=SUITE_AND_PLAIN.format(which="fails", holds="False"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", "--prism-report=red.json")
    result.assert_outcomes(passed=1, failed=1)
    report = json.loads((pytester.path / "red.json").read_text())
    test, identity = "test_mixed.py::test_plain_fails", "test_mixed::test_plain_fails"
    assert untimed(report["outside_suites"]["tests"]) == {test: {"outcome": "failed", "identity": identity}}
    (failure,) = report["failures"]
    assert failure == {
        "test": test,
        "identity": identity,
        "suite": None,
        "combination": None,
        "when": "call",
        "message": "AssertionError: the plain test's own verdict",
    }
    assert main(["report", "merge", str(pytester.path / "red.json"), "--json", str(pytester.path / "m.json")]) == 1
    merged = json.loads((pytester.path / "m.json").read_text())
    assert (merged["totals"]["passed"], merged["totals"]["failed"]) == (1, 1)
    assert untimed(merged["outside_suites"]["tests"]) == {test: {"outcome": "failed", "identity": identity}}
    assert [f["test"] for f in merged["failures"]] == [test]
    capsys.readouterr()
    assert main(["report", "merge", str(pytester.path / "red.json")]) == 1
    markdown = capsys.readouterr().out
    assert "**1 passed, 1 failed, 0 skipped** in 1 suite x combination rows and 1 test outside them" in markdown
    assert f"- ❌ `{test}` (outside the suites): AssertionError: the plain test's own verdict" in markdown


def test_a_module_that_fit_nothing_and_failed_stays_red_when_another_shard_ran_its_suite(
    pytester: pytest.Pytester,
) -> None:
    """A shard that insisted on fit (``--prism-require-fit``) failed the module nothing fitted;
    another shard ran the suite. The merge no longer lists the suite without a combination,
    and must not lose the red tests of the first shard with it."""
    pytester.makepyfile(test_shared_objects=SHARED_NAME.format(needs="objects"))
    base = ["-p", "no:cacheprovider", "-k", "test_passes"]
    unfit = pytester.runpytest(*base, "--prism-backend=sqlite", "--prism-require-fit", "--prism-report=a.json")
    assert unfit.ret == 1  # sqlite has no object store
    ran = pytester.runpytest(*base, "--prism-backend=localfs", "--prism-report=b.json")
    assert ran.ret == 0
    first = json.loads((pytester.path / "a.json").read_text())
    assert first["without_combination"]["failed"] + first["without_combination"]["errors"] >= 1
    assert first["without_combination"]["tests"], "each test's outcome, for the merge"
    out = pytester.path / "m.json"
    assert (
        main(["report", "merge", str(pytester.path / "a.json"), str(pytester.path / "b.json"), "--json", str(out)]) == 1
    )
    merged = json.loads(out.read_text())
    assert merged["no_runnable_combinations"] == []  # the suite ran in b.json
    red = merged["totals"]["failed"] + merged["totals"]["errors"]
    assert red == first["without_combination"]["failed"] + first["without_combination"]["errors"]
    assert {f["test"] for f in merged["failures"]} == set(first["without_combination"]["tests"])


def test_a_sharded_run_names_its_shard_and_a_bad_one_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_shard=TWO_TESTS.format(name="sharded"))
    args = ["-p", "no:cacheprovider", "--prism-backend=memstore", "-k", "test_one"]
    monkeypatch.setenv("PRISM_SHARD", "2/3")
    pytester.runpytest(*args, "--prism-report=r.json").assert_outcomes(passed=1)
    shard = json.loads((pytester.path / "r.json").read_text())["shard"]
    assert shard == {"index": 2, "count": 3, "selection": "-k test_one --prism-backend=memstore"}
    for bad in ("2", "0/3", "4/3", "two/three"):
        monkeypatch.setenv("PRISM_SHARD", bad)
        result = pytester.runpytest(*args, "--prism-report=bad.json")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: PRISM_SHARD={bad}: *"])
        assert not (pytester.path / "bad.json").exists()
    monkeypatch.delenv("PRISM_SHARD")
    # pytest-split's options, as it declares them (it need not be installed for the report to read them)
    pytester.makeconftest(
        """
def pytest_addoption(parser):
    parser.addoption("--splits", dest="splits", type=int)
    parser.addoption("--group", dest="group", type=int)
"""
    )
    pytester.runpytest(*args, "--splits", "3", "--group", "1", "--prism-report=s.json").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "s.json").read_text())["shard"] == {
        "index": 1,
        "count": 3,
        "selection": "-k test_one --prism-backend=memstore",
    }
    pytester.runpytest(*args, "--prism-report=whole.json").assert_outcomes(passed=1)
    assert "shard" not in json.loads((pytester.path / "whole.json").read_text())


def test_a_power_cuts_details_reach_the_json_report_as_they_reach_junit(pytester: pytest.Pytester) -> None:
    # the replay: a real cut of sqlite's files under the lazy filesystem
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pyargs", "prism_testkit.suites", "--prism-backend=sqlite",
        "--prism-pattern=power_loss", "-k", "clean", "--prism-report=r.json", "--junitxml=out.xml",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes, result.stdout.str()[-3000:]
    assert outcomes.get("passed", 0) >= 1
    cuts = json.loads((pytester.path / "r.json").read_text())["power_cuts"]
    junit = [
        json.loads(p.get("value") or "")
        for p in ET.parse(pytester.path / "out.xml").getroot().iter("property")
        if p.get("name") == "power_loss"
    ]
    assert len(cuts) == outcomes["passed"] == len(junit)
    in_json = sorted(
        json.dumps({k: v for k, v in cut.items() if k not in ("test", "identity")}, sort_keys=True) for cut in cuts
    )
    assert in_json == sorted(json.dumps(cut, sort_keys=True) for cut in junit)
    for cut in cuts:
        assert cut["backend"] == "sqlite"
        assert "discarded" in cut
        # runs from any directory, as the shipped suites are named under --pyargs
        assert cut["replay"].startswith("pytest --pyargs prism_testkit.suites.test_contract_power_loss ")
    again = json.loads((pytester.path / "r.json").read_text())
    again["run"]["id"] = "another job of the same selection"
    (pytester.path / "again.json").write_text(json.dumps(again))
    merged = json.loads(_merged(pytester.path / "r.json", pytester.path / "again.json"))
    assert merged["power_cuts"] == cuts, "the merge keeps each test's cut once"


def _merged(*paths: Path) -> str:
    out = paths[0].with_name("merged.json")
    assert main(["report", "merge", *map(str, paths), "--json", str(out)]) == 0
    return out.read_text()
