"""Repository-level glue for the project's own tests (not shipped)."""

from __future__ import annotations

import pytest

# The harness tests drive pytest in sandboxes; declared here rather than in addopts, so a run of
# the installed suites elsewhere does not depend on this repository's configuration.
pytest_plugins = ["pytester"]

# The project's longest tests (from the report's per-row durations and --durations), longest
# kinds first. Under xdist a two-minute test that starts last holds the run for its length while
# the other workers idle; started first, the short tests fill in around it.
LONGEST_FIRST = (
    "tests/test_clean_shutdown.py::",
    "tests/test_ci_example.py::",
    "suites/test_stateful_",
    "tests/test_mutants.py::",
    "tests/test_hunt.py::",
    "suites/test_cqrs_cdc.py::",
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
