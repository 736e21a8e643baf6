"""Hypothesis profiles the plugin registers; select one with ``--hypothesis-profile``.

* ``prism-dev``: the local default, quick.
* ``prism-ci``: used when ``CI`` is set: derandomised, no example database, prints the
  reproduce blob so a failure in CI replays locally with ``@reproduce_failure``.
* ``prism-hunt``: long property-based regression hunts.

The suites talk to real servers, so no profile has a deadline, and the function-scoped
fixture check is off: suites isolate every example in its own namespace themselves.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

DEV, CI, HUNT = "prism-dev", "prism-ci", "prism-hunt"

# What every profile shares, as a parent profile (Hypothesis settings inherit from a parent).
_COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def register_profiles() -> None:
    settings.register_profile(DEV, _COMMON, max_examples=20)
    settings.register_profile(CI, _COMMON, max_examples=30, derandomize=True, database=None, print_blob=True)
    # No explain phase in hunts: after hours of examples, its source analysis of a failure
    # crashed CPython 3.11's AST constructor ("recursion depth mismatch"), an INTERNALERROR
    # that lost every failure of a 60-minute hunt. The replay command and blob remain.
    hunt_phases = [phase for phase in Phase if phase is not Phase.explain]
    settings.register_profile(HUNT, _COMMON, max_examples=5_000, print_blob=True, phases=hunt_phases)


def default_profile() -> str:
    return CI if os.environ.get("CI", "").lower() not in ("", "0", "false") else DEV
