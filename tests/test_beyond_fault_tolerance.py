"""A loss a test measures past what its server promises to survive (two of three nodes damaged,
where R3 tolerates one) is allowed, so the test passes; but never silently: the run's summary
lists it with its count, under its own heading."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = "from tests.conftest import pytest_terminal_summary  # noqa: F401\n"
TESTS = """
from tests.conftest import BEYOND_FAULT_TOLERANCE

def test_lost_some(record_property):
    record_property(BEYOND_FAULT_TOLERANCE, "1 of 200 acknowledged messages lost with 2 of 3 nodes damaged")

def test_lost_none(record_property):
    record_property("acknowledged_lost", 0)
"""


def test_a_loss_beyond_the_fault_tolerance_is_listed_in_the_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the sandbox's conftest imports tests.conftest
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_losses=TESTS)
    # a process of its own: in this one, -W error turns pytest's "already imported, cannot
    # rewrite prism_testkit" warning into an INTERNALERROR before the summary is reached
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*losses beyond the fault tolerance (allowed, not hidden)*",
            "test_losses.py::test_lost_some: 1 of 200 acknowledged messages lost with 2 of 3 nodes damaged",
        ]
    )
    assert "test_lost_none:" not in result.stdout.str()


def test_no_loss_no_section(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_losses="def test_fine():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert "beyond the fault tolerance" not in result.stdout.str()
