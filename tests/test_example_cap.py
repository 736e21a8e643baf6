"""A registration whose examples cost seconds (a cluster's) declares ``stateful_examples``: a
stateful test over a combination holding it draws that many examples, not the profile's; a
hunt still draws its own rounds; the header says so. Checked with a third party's copy of
memstore that declares a cap, next to memstore itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests._stateful_sources import RECORDING_MACHINE, SLOW_MEMSTORE

SUITE = (
    """
from hypothesis.stateful import rule

import prism_testkit.stateful.runner as runner
from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import EXAMPLES, StatefulRun

pytestmark = prism_suite("capped", backend=Slot.needs("keyvalue"))
ASKED = []  # the max_examples of every Hypothesis run the test made
"""
    + RECORDING_MACHINE
    + """def test_examples(prism_env: PrismEnv, request) -> None:
    ASKED.clear()
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Puts(run))
    expected = {"slowstore": 3, "memstore": EXAMPLES}[prism_env.combination["backend"]]
    assert ASKED == [expected], (ASKED, expected)
"""
)


@pytest.fixture
def slowstore(third_party: Callable[..., None]) -> None:
    third_party("prism-slowstore", {"slowstore": SLOW_MEMSTORE}, {"slowstore": "slowstore"})


@pytest.mark.usefixtures("slowstore")
def test_a_capped_backend_draws_its_cap_and_the_header_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(
        "--prism-backend=slowstore,memstore", "--hypothesis-profile=prism-ci", "-p", "no:cacheprovider", "-v"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*slowstore: *; stateful tests over it draw 3 examples each (hunts: the profile's)"])
    assert not [line for line in result.outlines if "memstore:" in line and "draw" in line]


@pytest.mark.usefixtures("slowstore")
def test_a_hunt_on_a_capped_backend_runs_rounds_of_its_cap(pytester: pytest.Pytester) -> None:
    """A hunt honours its budget, not the cap: every round it runs is of the cap's size (not
    the hunt's 10), and it runs rounds until its budget is spent (one, on a loaded machine)."""
    pytester.makepyfile(
        SUITE.replace(
            "    assert ASKED == [expected], (ASKED, expected)",
            "    assert ASKED and set(ASKED) == {expected}, ASKED",
        ).replace('{"slowstore": 3, "memstore": EXAMPLES}', '{"slowstore": 3}')
    )
    result = pytester.runpytest_subprocess(
        "--prism-backend=slowstore", "--prism-hunt=3s", "--hypothesis-seed=7", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
