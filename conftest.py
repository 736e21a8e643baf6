"""Repository-level glue for the project's own tests (not shipped)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# This machine's environment sets PYTHONDONTWRITEBYTECODE, so every Python process of the run
# (xdist workers, the mutants' and sandboxes' pytest subprocesses, servers' helpers) compiled
# the project and assertion-rewrote its ~250 modules again: about 1 s of CPU each, over a
# hundred times a run. The project's own run writes the caches Python writes by default; set
# here, before xdist starts its workers, so they and every subprocess inherit it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# The harness tests drive pytest in sandboxes; declared here rather than in addopts, so a run of
# the installed suites elsewhere does not depend on this repository's configuration.
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent

# The project's longest tests (from the report's per-row durations and --durations), longest
# kinds first. Under xdist a two-minute test that starts last holds the run for its length while
# the other workers idle; started first, the short tests fill in around it.
LONGEST_FIRST = (
    "tests/test_clean_shutdown.py::",
    "tests/test_ci_example.py::",
    "prism_testkit/suites/test_stateful_",
    "tests/test_mutants.py::",
    "tests/test_hunt.py::",
    "prism_testkit/suites/test_cqrs_cdc.py::",
    "tests/test_plugin_xdist.py::",
)
# xdist hands a worker its first quarter of the tests in one block, so the longest would all go
# to one worker: two at a time instead, the next when one ends (the order above then holds).
SCHEDULING_CHUNK = 2


def _rank(item: pytest.Item) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keep pytest's order (fixtures set up once per module)


def pytest_configure(config: pytest.Config) -> None:
    # Set here, not in addopts: the option exists only when pytest-xdist is installed.
    if getattr(config.option, "maxschedchunk", False) is None:
        config.option.maxschedchunk = SCHEDULING_CHUNK
    if not hasattr(config, "workerinput") and Path.cwd() == ROOT:
        # The project's own run, before its workers start: Hypothesis's constants and Unicode
        # tables computed once per machine, not by each worker of a fresh clone (~2 s each).
        from tests._suite_runs import share_hypothesis_caches

        share_hypothesis_caches(ROOT / ".hypothesis")
