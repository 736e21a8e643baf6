"""No section of a report is forgotten (#51, item 7): every section a run writes is declared in
the report's typed shape (prism_testkit/report/shape.py), and the merge of a report keeps every
section it had. A new section that the shape or the merge does not know fails here."""

from __future__ import annotations

from typing import Any

from prism_testkit.report import unavailable_faults
from prism_testkit.report.merge import LoadedReport, merge_reports
from prism_testkit.report.results import PrismResults
from prism_testkit.report.shape import Report, problems

ROW_TEST = "suites/test_kv.py::test_put[backend=memstore]"
TWIN_TEST = "suites/test_kv.py::test_put[backend=bag-cluster]"
UNFIT_TEST = "suites/test_objects.py::test_get[no-runnable-combination-objects]"
PLAIN_TEST = "suites/test_kv.py::test_plain"


def every_section() -> dict[str, Any]:
    """A run's report with every section a run can write filled."""
    results = PrismResults(unavailable={"kafka": "no URL given"}, available={"memstore": "embedded (in this process)"})
    results.not_provisioned = {"redis": "no redis-server binary"}
    results.failed_to_start = {"nats": "exited at start"}
    results.server_versions = {"memstore": None}
    for test, outcome in ((ROW_TEST, "failed"), (TWIN_TEST, "skipped"), (UNFIT_TEST, "skipped")):
        results.categories[test] = [outcome]
        results.durations[test] = 0.5
    results.rows_of[ROW_TEST] = ("kv", None, (("backend", "memstore"),))
    results.rows_of[TWIN_TEST] = ("kv", None, (("backend", "bag-cluster"),))
    results.covered[TWIN_TEST] = {"bag-cluster": "bag"}
    results.anomalies_of[ROW_TEST] = {"anomalies": {"lost": 1}, "faults": {"kill": 2}}
    results.failures[ROW_TEST] = {"test": ROW_TEST, "suite": "kv", "combination": {"backend": "memstore"}}
    results.unfit_tests[UNFIT_TEST] = "objects"
    results.not_applicable["objects"] = "needs an object store"
    results.no_combination["cdc"] = "needs a changefeed"
    results.outside_suites[PLAIN_TEST] = "failed"
    results.outside_failures[PLAIN_TEST] = {"test": PLAIN_TEST, "suite": None, "combination": None}
    results.hunts = [{"test": ROW_TEST, "failed": True, "rounds": 1, "examples": 3, "faults": 2, "seconds": 1.0}]
    results.simulations = {ROW_TEST: {"simulated": True, "examples": 3, "digest": "ab"}}
    results.power_cuts = {ROW_TEST: {"test": ROW_TEST, "fault": "power-cut", "lost": 0}}
    results.judged = {ROW_TEST: {"test": ROW_TEST, "scenario": "established", "verdict": "held"}}
    unavailable_faults.gather(
        results.unavailable_faults,
        {"fault": "power-cut", "reason": "no FUSE", "hint": "apt install fuse3"},
        "kv",
        {"backend": "memstore"},
    )
    results.shard = {"index": 1, "count": 1, "selection": "--prism-backend=memstore"}
    results.run = {"prism_testkit_version": "0", "started_at": "2026-11-26T00:00:00+00:00", "duration_s": 1.0}
    return results.to_json()


def test_every_section_a_run_writes_is_in_the_typed_shape() -> None:
    report = every_section()
    declared = set(Report.model_fields) | {"totals"}  # totals: recounted by whoever reads a report
    assert set(report) <= declared, f"sections the shape does not declare: {sorted(set(report) - declared)}"
    assert problems(report) == []


def test_a_merge_keeps_every_section() -> None:
    report = every_section()
    merged = merge_reports([LoadedReport("run.json", report)])
    lost = set(report) - set(merged) - {"totals", "run", "shard"}  # runs and shards: listed per report
    assert not lost, f"sections the merge drops: {sorted(lost)}"
    assert merged["runs"][0]["id"] == report["run"]["id"]
    assert merged["shards"][0]["index"] == 1
    assert problems(merged) == []
