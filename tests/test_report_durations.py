"""How long each suite x combination row took: in the JSON report and, the ten slowest, in the
terminal summary. The durations are fixed by a conftest hook, so nothing here depends on timing."""

from __future__ import annotations

import json

import pytest

from prism_testkit.report.results import RowTally, slowest_rows

# Each phase (setup, call, teardown) of a test in suite s<n> "takes" n seconds, plus 0.5 on sqlite.
FIXED_DURATIONS = """
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    suite = int(item.module.__name__.rsplit("_", 1)[1])
    report.duration = suite + (0.5 if "sqlite" in item.nodeid else 0.0)
    return report
"""

SUITE = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("s{n}", backend=Slot.needs("keyvalue"))

def test_one(prism_env: PrismEnv) -> None:
    pass

def test_two(prism_env: PrismEnv) -> None:
    pass
"""


def test_rows_carry_their_duration_and_the_ten_slowest_are_summarised(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FIXED_DURATIONS)
    pytester.makepyfile(**{f"test_suite_{n}": SUITE.format(n=n) for n in range(6)})  # 6 suites x 2 backends
    result = pytester.runpytest("--prism-backend=memstore,sqlite", "--prism-report=r.json")
    result.assert_outcomes(passed=24)
    rows = json.loads((pytester.path / "r.json").read_text())["suites"]
    durations = {(r["suite"], r["combination"]["backend"]): r["duration_s"] for r in rows}
    # two tests of three phases each
    assert durations[("s3", "memstore")] == pytest.approx(2 * 3 * 3.0)
    assert durations[("s3", "sqlite")] == pytest.approx(2 * 3 * 3.5)
    assert durations[("s0", "memstore")] == 0.0
    result.stdout.fnmatch_lines(
        [
            "*prism-testkit: 10 slowest rows (setup + call + teardown of their tests)*",
            "    33.00s  s5  backend=sqlite  (2 tests)",
            "    30.00s  s5  backend=memstore  (2 tests)",
            "    27.00s  s4  backend=sqlite  (2 tests)",
        ]
    )
    slowest = result.stdout.str().split("slowest rows")[1]
    assert "s1  backend=memstore" in slowest
    assert "s0  backend" not in slowest  # the two fastest of twelve rows are left out


def test_no_slowest_rows_when_the_plugin_is_not_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "slowest rows" not in result.stdout.str()


def test_slowest_rows_are_ordered_and_capped() -> None:
    rows = [RowTally(f"s{n}", {}, None, [], duration_s=float(n % 4)) for n in range(6)]
    assert [r.suite for r in slowest_rows(rows, 3)] == ["s3", "s2", "s1"]  # s1 and s5 tie: the first row wins
