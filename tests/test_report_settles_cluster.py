"""A real cluster row's settle times after each fault, end to end: a stateful test on
``jetstream-r3`` (three nats-server nodes) whose run owes a leader kill (its machine has no
nemesis rules, so only the failover pass strikes: one ``kill-leader``, then the end-of-example
heal) writes them into the JSON report's test entry and the HTML report's row.

The unit-level tests: ``tests/test_report_settles.py``."""

from __future__ import annotations

import json
import re

import pytest

from tests._sandbox_machines import WRITES_MACHINE

SUITE = (
    """
    from hypothesis.stateful import rule

    from prism_testkit import PrismEnv, Slot, prism_suite
    from prism_testkit.stateful.machine import FaultMachine
    from prism_testkit.stateful.runner import StatefulRun

    pytestmark = prism_suite("settles", backend=Slot.needs("keyvalue"))


"""
    + WRITES_MACHINE
    + """
        def check(self):
            return [], "writes"


    def test_writes(prism_env: PrismEnv, request) -> None:
        run = StatefulRun(prism_env, request)
        run.execute(lambda: Writes(run))
"""
)


def test_a_jetstream_cluster_rows_settles_after_its_leader_kill_reach_both_reports(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    report, page = pytester.path / "out" / "report.json", pytester.path / "out" / "report.html"
    result = pytester.runpytest_subprocess(
        "--prism-backend=jetstream-r3",
        "--hypothesis-profile=prism-ci",
        "--prism-depth=1",
        f"--prism-report={report}",
        f"--prism-report-html={page}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    [row] = json.loads(report.read_text())["suites"]
    assert row["combination"] == {"backend": "jetstream-r3"}
    [entry] = row["tests"].values()
    kinds = entry["settles"]["kinds"]
    assert kinds["kill-leader"]["count"] == 1  # the leader kill the run owed: a new leader elected
    assert kinds["heal"]["count"] >= 1  # the end-of-example restore after it
    for found in kinds.values():
        assert 0 <= found["max_s"] <= found["total_s"]
    assert {sample[2] for sample in entry["settles"]["samples"]} == {"jetstream-r3"}
    shown = page.read_text()
    faults = re.findall(r'<tr data-fault="([^"]+)">', shown)
    assert "kill-leader" in faults
    assert "heal" in faults
