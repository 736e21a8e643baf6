"""``--prism-shard=K/N``: this run is shard K (from 1) of N of the collected tests.

Every machine of a CI matrix collects the same tests and splits them the same way, with no
coordination: the split depends only on what was collected (after ``-k``, ``-m`` and every other
deselection) and on the recorded durations, if given. Each test lands in exactly one shard, and
the N shards together are the unsharded run.

Tests are packed into shards in units: one test, except that every row of an exclusive backend
(a cluster that owns its ports and nodes, :mod:`.xdist_scheduler`) is one unit, so
a cluster is started by one shard only. Units are placed heaviest first on the lightest shard
(ties: the lower shard), which keeps the shards within one unit of each other; a unit weighs
its tests' recorded durations (``--prism-shard-durations``: an earlier ``--prism-report``, whose
tests are found by identity too, so one machine's report balances another layout's run, or
pytest-split's ``.test_durations``), a test with none recorded the median of those recorded that took any time, or
1 when nothing was recorded (then shards balance by count). Ties are broken by each test's
package-relative identity (:mod:`prism_testkit.hunting.identity`), the same on a machine that
installed the package and on a checkout.

The report of a shard names it (``shard``: index, count and the selection that was split), so
``prism-testkit report merge`` refuses a missing or doubled shard.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from prism_testkit.errors import RepeatedField

OPTION = "prism_shard"
DURATIONS_OPTION = "prism_shard_durations"
T = TypeVar("T")
DURATIONS = pytest.StashKey[dict[str, float]]()  # the recorded durations read, by node id and identity


# The fields of K/N, in order: the tests generate each one given twice from this table.
FIELDS = ("K", "N")


def repeated_field(text: str) -> str | None:
    """The field of K/N that ``text`` gives twice (``1,2/3``: K; ``1/2/3``: N), or None. Refused,
    never resolved: either value kept would be another shard than the one the user read."""
    parts = text.strip().split("/")
    for field, part in zip(FIELDS, [*parts[: len(FIELDS) - 1], "/".join(parts[len(FIELDS) - 1 :])], strict=True):
        if len([value for value in re.split(r"[,/\s]+", part) if value]) > 1:
            return field
    return None


def parse(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3); ValueError saying what was expected (RepeatedField for a field given
    twice). The message does not repeat the value: each caller names where it came from."""
    if (field := repeated_field(text)) is not None:
        raise RepeatedField("--prism-shard", field, f"{field} is given twice: give one K/N")
    parts = text.strip().split("/")
    try:
        index_text, count_text = parts
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError("expected K/N, shard K (from 1) of N, e.g. 2/3") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {index} of {count} cannot be (K from 1 to N)")
    return index, count


def split(weights: Mapping[str, float], count: int) -> list[list[str]]:
    """The units (name -> weight) packed into ``count`` shards: heaviest first onto the lightest
    shard, ties by name and then by shard; deterministic, each unit in exactly one shard."""
    shards: list[list[str]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for name in sorted(weights, key=lambda unit: (-weights[unit], unit)):
        lightest = min(range(count), key=lambda shard: (loads[shard], len(shards[shard]), shard))
        shards[lightest].append(name)
        loads[lightest] += weights[name]
    return shards


def weigh(units: Mapping[str, Collection[T]], recorded: Callable[[T], float | None]) -> dict[str, float]:
    """Each unit's weight (name -> its tests): the sum of its tests' recorded seconds, a test
    with none weighing the median of those recorded that took any time (a main job records its
    thousands of skipped rows at 0 s, which made a cluster never recorded weigh nothing and start
    last, the run's tail), or 1 when none was (then units weigh their count). What the shards and
    the order xdist deals the tests in both balance by."""
    known = [seconds for members in units.values() for test in members if (seconds := recorded(test))]
    default = statistics.median(known) if known else 1.0
    return {
        unit: sum(default if (seconds := recorded(test)) is None else seconds for test in members)
        for unit, members in units.items()
    }


def select(
    items: Sequence[pytest.Item],
    index: int,
    count: int,
    identity: Callable[[pytest.Item], str],
    unit_of: Callable[[pytest.Item], str | None],
    durations: Mapping[str, float],
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(the items of shard ``index`` of ``count``, the others), both in collection order.
    ``unit_of``: the unit an item belongs to beside others (None: a unit of its own);
    ``durations``: recorded seconds by node id or identity."""

    def recorded(item: pytest.Item) -> float | None:  # once per test: a report records it under both
        return next((durations[key] for key in (item.nodeid, identity(item)) if key in durations), None)

    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        name = identity(item)
        group = unit_of(item)
        units.setdefault(f"{group}\0" if group is not None else name, []).append(item)
    weights = weigh(units, recorded)
    mine = {id(item) for unit in split(weights, count)[index - 1] for item in units[unit]}
    return [item for item in items if id(item) in mine], [item for item in items if id(item) not in mine]


def read_durations(path: Path) -> dict[str, float]:
    """Recorded seconds per test from an earlier ``--prism-report`` (each test's ``duration_s``
    in the rows and the buckets outside them, by node id and by identity) or pytest-split's
    ``.test_durations`` (node id -> seconds), gzip-compressed when its name ends in ``.gz``
    (what ``prism-testkit report durations -o NAME.gz`` writes). ValueError for a file that is
    neither."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        data: Any = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:  # gzip's BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot be read as JSON: {exc}") from None
    if isinstance(data, dict) and all(isinstance(v, int | float) for v in data.values()):
        return {str(test): float(seconds) for test, seconds in data.items()}  # pytest-split's
    if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
        raise ValueError(f"{path}: neither a --prism-report nor pytest-split's .test_durations")
    found: dict[str, float] = {}
    sections = [*data["suites"], *(data.get(bucket) or {} for bucket in ("without_combination", "outside_suites"))]
    for section in sections:
        tests = section.get("tests") if isinstance(section, dict) else None
        for test, entry in (tests or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("duration_s"), int | float):
                found[str(test)] = float(entry["duration_s"])
                if isinstance(entry.get("identity"), str):  # found on a machine of another install layout
                    found[entry["identity"]] = float(entry["duration_s"])
    return found


class Sharding:
    """Registered when ``--prism-shard`` is given: after every other deselection, keeps this
    shard's tests and deselects the rest. ``identity``: a test's package-relative identity;
    ``exclusive``: the run's exclusive backends, asked for once the tests are collected."""

    def __init__(
        self,
        index: int,
        count: int,
        durations: dict[str, float],
        identity: Callable[[pytest.Item], str],
        exclusive: Callable[[], set[str]],
    ) -> None:
        self.index, self.count, self.durations = index, count, durations
        self.identity, self.exclusive = identity, exclusive

    @pytest.hookimpl(trylast=True)  # after -k, -m and the plugin's own selection
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        exclusive = self.exclusive()

        def unit_of(item: pytest.Item) -> str | None:
            callspec = getattr(item, "callspec", None)
            combo = callspec.params.get("prism_combination") if callspec is not None else None
            slots = getattr(combo, "slots", None) or {}
            found = sorted(set(slots.values()) & exclusive)
            return "exclusive:" + ",".join(found) if found else None

        keep, others = select(items, self.index, self.count, self.identity, unit_of, self.durations)
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = keep

    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]) -> str:
        return f"prism-testkit shard {self.index} of {self.count}: {len(items)} tests"


def configure(
    config: pytest.Config, identity: Callable[[pytest.Item], str], exclusive: Callable[[], set[str]]
) -> tuple[int, int] | None:
    """Read ``--prism-shard`` and its durations (stashed under :data:`DURATIONS`: given alone,
    they weigh the progress line's time left only), register :class:`Sharding`; the shard, or
    None when the run is not split by this option. pytest.UsageError for a bad value or when
    another splitter is given too."""
    durations: dict[str, float] = {}
    if path := config.getoption(DURATIONS_OPTION, None):
        try:
            durations = read_durations(Path(path))
        except ValueError as exc:
            raise pytest.UsageError(f"--prism-shard-durations: {exc}") from None
        config.stash[DURATIONS] = durations  # the progress line's time left weighs tests by them too
    given = config.getoption(OPTION, None)
    if not given:
        return None
    try:
        index, count = parse(given)
    except ValueError as exc:
        raise pytest.UsageError(f"--prism-shard={given}: {exc}") from None
    if getattr(config.option, "splits", None) or getattr(config.option, "group", None):
        raise pytest.UsageError("--prism-shard and pytest-split's --splits/--group both split the run: give one")
    config.pluginmanager.register(Sharding(index, count, durations, identity, exclusive), "prism-shard")
    return index, count
