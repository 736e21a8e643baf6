"""Under pytest-xdist the controller aggregates the workers' results into the same report."""

from __future__ import annotations

import json

import pytest

SUITE = """
from hypothesis import given, strategies as st
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_kv", backend=Slot.needs("keyvalue"))

@given(value=st.binary(max_size=64))
async def test_round_trip(prism_env: PrismEnv, value: bytes) -> None:
    async with prism_env.example() as ns:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(ns.name("k"), value)
        assert await kv.get(ns.name("k")) == value

async def test_isolated(prism_env: PrismEnv) -> None:
    kv = prism_env.driver("backend").keyvalue()
    await kv.put(prism_env.ns.name("shared"), b"mine")
    assert await kv.get(prism_env.ns.name("shared")) == b"mine"
"""

PAIR = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_pair", a=Slot.needs("keyvalue"), b=Slot.needs("keyvalue"))

def test_pair(prism_env: PrismEnv) -> None:
    assert prism_env.combination["a"] != prism_env.combination["b"]
"""


def test_two_workers_report_the_same_totals_as_a_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kv=SUITE, test_pair=PAIR)
    serial = pytester.runpytest_subprocess("--prism-report=serial.json")
    parallel = pytester.runpytest_subprocess("-n", "2", "--prism-report=parallel.json")
    assert serial.parseoutcomes() == {"passed": 6}
    assert parallel.parseoutcomes() == {"passed": 6}
    serial_report = json.loads((pytester.path / "serial.json").read_text())
    parallel_report = json.loads((pytester.path / "parallel.json").read_text())
    # the same rows; their durations, measured on the workers, arrive with the reports (a row of
    # two memstore tests can take under the half millisecond that rounds to 0.0: only the sum is > 0)
    for report in (serial_report, parallel_report):
        durations = [row.pop("duration_s") for row in report["suites"]]
        for row in report["suites"]:
            for test in row["tests"].values():
                test.pop("duration_s")
        assert all(isinstance(d, float) and d >= 0 for d in durations), durations
        assert sum(durations) > 0, durations
    assert serial_report["suites"] == parallel_report["suites"]
    assert len(serial_report["suites"]) == 4  # 2 backends x xdist_kv + 2 covering pairs
    parallel.stdout.fnmatch_lines(["*prism-testkit: suites x combinations*"])
