"""A pytest plugin for ``benchmarks/depth_curve.py``: for every Hypothesis search a test runs,
write one JSON line to ``$PRISM_DEPTH_PROBE``: the test, how many examples the search ran, its
budget (``max_examples``) and the smallest budget that reaches its first failing example (the
valid examples before it, plus one; None: none failed).

Hypothesis draws an example's choices from the seed alone, so a search with a budget of N runs
the same first examples as a search with a budget of M > N, as long as both budgets are below
10 (Hypothesis's generation policy changes at 10: ``small_test_case_cap`` is ``max_examples // 10``).
A search of budget 8 whose first failure is example k therefore tells what budgets 1, 2, 4 and 8
find: k <= N. Budget 12 is measured by a search of its own.

It also registers the ``prism-depth-curve`` profile: ``prism-mutant`` (no shrink phase: only
*whether* a mutant is caught matters) without derandomisation, so ``--hypothesis-seed`` picks
the search.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis.internal.conjecture import engine

from prism_testkit.hunting import profiles

profiles.register_profiles()
settings.register_profile(
    "prism-depth-curve",
    settings.get_profile(profiles.CI),
    phases=[Phase.explicit, Phase.generate],
    derandomize=False,
)

_current: list[str] = [""]
_run = engine.ConjectureRunner.run
_test_function = engine.ConjectureRunner.test_function
_FOUND_AT = "_prism_depth_probe_found_at"


def _counted(self: Any, data: Any) -> None:
    """The budget the first failing example needed: the valid examples before it, plus one
    (``max_examples`` counts valid examples; invalid ones and the failure are not counted)."""
    valid_before = self.valid_test_cases
    _test_function(self, data)
    if self.first_bug_found_at is not None and not hasattr(self, _FOUND_AT):
        setattr(self, _FOUND_AT, valid_before + 1)


def _probed(self: Any) -> None:
    try:
        _run(self)
    finally:
        where = os.environ.get("PRISM_DEPTH_PROBE")
        if where:
            line = {
                "test": _current[0],
                "calls": self.call_count,
                "valid": self.valid_test_cases,
                "max_examples": self.settings.max_examples,
                "first_failure_call": self.first_bug_found_at,
                "first_failure": getattr(self, _FOUND_AT, None),
            }
            with open(where, "a") as out:
                out.write(json.dumps(line) + "\n")


engine.ConjectureRunner.run = _probed  # type: ignore[method-assign]
engine.ConjectureRunner.test_function = _counted  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = ""
