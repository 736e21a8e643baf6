"""The run profile's arithmetic (benchmarks.run_profile), on made-up records: no run, no clock."""

from __future__ import annotations

from typing import Any

from benchmarks.run_profile import analyse, summarise
from benchmarks.stats import compare


def record(nodeid: str, worker: str, start: float, stop: float, suite: str | None, examples: int = 0) -> dict:
    return {"kind": "test", "nodeid": nodeid, "worker": worker, "start": start, "stop": stop, "suite": suite,
            "examples": examples}  # fmt: skip


def a_run(wall: float = 100.0, cpu: float = 50.0) -> dict[str, Any]:
    records = [
        record("a", "gw0", 0, 60, "stateful_queue", examples=30),
        record("b", "gw0", 60, 90, "keyvalue"),
        record("c", "gw1", 0, 40, "stateful_queue", examples=10),
        {"kind": "server_start", "name": "redis", "at": 1.0, "worker": "gw0"},
        {"kind": "server_start", "name": "redis", "at": 2.0, "worker": "gw1"},
        {"kind": "server_start", "name": "postgres", "at": 2.0, "worker": "gw1"},
    ]
    return {"exit_code": 0, "wall": wall, "cpu": cpu, "records": records}


def test_a_run_is_told_apart_into_wait_time_servers_suites_and_its_critical_path() -> None:
    figures = analyse(a_run(), cores=2)
    assert figures["wait_bound"] == 4.0  # 100 s of wall for 25 s of two cores' time
    assert figures["server_starts"] == 3
    assert figures["server_starts_by_name"] == {"postgres": 1, "redis": 2}
    assert figures["suites"]["stateful_queue"] == {"tests": 2, "seconds": 100.0, "examples": 40}
    critical = figures["critical_path"]
    assert (critical["worker"], critical["tests"], critical["busy_seconds"], critical["span_seconds"]) == (
        "gw0",
        2,
        90,
        90,
    )
    assert critical["lower_bound_seconds"] == 65  # 130 s of tests over 2 workers beats the longest (60 s)


def test_examples_per_hour_are_counted_per_stateful_suite_only() -> None:
    result = summarise("job", [analyse(a_run(), cores=2)])
    assert [row["measure"] for row in result["run_profile_rates"]] == ["job examples/hour stateful_queue"]
    assert result["run_profile_rates"][0]["rate"] == 3600 * 40 / 100


def test_compare_flags_a_slower_run_and_fewer_examples_per_hour_as_regressions() -> None:
    before = summarise("job", [analyse(a_run(wall=w), cores=2) for w in (100, 104)])
    slower = a_run(wall=150)
    slower["records"][0]["examples"] = 5
    after = summarise("job", [analyse(slower, cores=2)])
    regressed = {change.row for change in compare(before, after) if change.status == "regression"}
    assert {"measure=job wall", "measure=job wait-bound", "measure=job examples/hour stateful_queue"} <= regressed
    assert "measure=job cpu" not in regressed
