"""The expansion of a suite's slots into backend combinations."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.registry.backend_spec import BackendSpec
from prism_testkit.registry.slots import Expansion as Expansion  # re-exported: expand() takes one
from prism_testkit.registry.slots import Slot as Slot  # re-exported: its old home


@dataclass(frozen=True)
class Combination:
    """One backend per slot, in the suite's slot order."""

    assignment: tuple[tuple[str, str], ...]
    namespace: str | None = None  # set when the combination comes from a namespace file
    pattern_config: Any = field(default=None, compare=False)  # that namespace's config for the pattern
    # replicated backend -> its twin, when the row only repeats what the twin runs in this run
    # (prism_testkit.registry.twins): its tests are skipped as "covered by <twin>"
    covered_by: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def slots(self) -> dict[str, str]:
        return dict(self.assignment)

    @property
    def id(self) -> str:
        slots = "-".join(f"{slot}={backend}" for slot, backend in self.assignment)
        return f"ns={self.namespace}-{slots}" if self.namespace else slots

    def __getitem__(self, slot: str) -> str:
        return self.slots[slot]


@dataclass(frozen=True)
class NoCombination:
    """Stands in for the combinations of a suite that has none: its tests fail with ``reason``."""

    suite: str
    reason: str

    id = "no-runnable-combination"


def candidates(
    slots: Mapping[str, Slot], backends: Sequence[BackendSpec], leave_out: Mapping[str, Collection[str]] | None = None
) -> dict[str, list[str]]:
    """Per slot, the backends that fit it (but those ``leave_out`` names for that slot)."""
    left = leave_out or {}
    return {
        name: [b.name for b in backends if slot.fits(b) and b.name not in left.get(name, ())]
        for name, slot in slots.items()
    }


def expand(
    suite: str,
    slots: Mapping[str, Slot],
    backends: Sequence[BackendSpec],
    how: Expansion,
    leave_out: Mapping[str, Collection[str]] | None = None,
) -> list[Combination] | NoCombination:
    """The combinations to run ``suite`` over, or why there are none.

    The covering set rotates through each slot's candidates in parallel, so its size is the
    largest candidate count and every candidate appears in its slot at least once.
    ``leave_out`` takes backends out of a slot's candidates (see :mod:`.twins`).
    """
    pools = candidates(slots, backends, leave_out)
    empty = [name for name, pool in pools.items() if not pool]
    if empty:
        offered = ", ".join(b.name for b in backends) or "(none available)"
        wants = "; ".join(f"slot {name!r} needs {slots[name].describe()}" for name in empty)
        return NoCombination(
            suite,
            f"suite {suite!r} has zero runnable combinations: {wants}, and no selected, available "
            f"backend provides it (selected and available: {offered}). Select a backend that does "
            f"with --prism-backend, or leave this suite out with --prism-pattern.",
        )
    names = list(pools)
    rows: Iterable[tuple[str, ...]]
    if how is Expansion.ALL:
        rows = itertools.product(*(pools[n] for n in names))
    else:
        rows = _covering_rows([pools[n] for n in names], frozenset(b.name for b in backends if b.exclusive))
    seen: dict[tuple[str, ...], None] = {}
    for row in rows:
        seen.setdefault(tuple(row), None)
    return [Combination(tuple(zip(names, row, strict=True))) for row in seen]


def _covering_rows(pools: list[list[str]], exclusive: frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
    """Rotate every pool in parallel; each pool's starting offset is chosen so that as few rows
    as possible put one backend in two slots (cross-backend rows test more). Then entries swap
    places within a column (so every candidate keeps its rows in its slot) wherever that puts
    fewer ``exclusive`` backends together in a row without more such clashes: one worker runs an
    exclusive backend's rows, and a row holding two makes that worker start the other one too
    (a second cluster, seen as six clusters started by six workers)."""
    width = max(len(pool) for pool in pools)
    columns: list[list[str]] = []
    for pool in pools:

        def clashes(offset: int, pool: list[str] = pool) -> int:
            column = [pool[(i + offset) % len(pool)] for i in range(width)]
            return sum(column[i] in {c[i] for c in columns} for i in range(width))

        best = min(range(len(pool)), key=clashes)
        columns.append([pool[(i + best) % len(pool)] for i in range(width)])
    if exclusive:
        _separate_exclusive(columns, exclusive)
    return [tuple(column[i] for column in columns) for i in range(width)]


def _separate_exclusive(columns: list[list[str]], exclusive: frozenset[str]) -> None:
    """Swap entries within columns, in a fixed order (every xdist worker must derive the same
    rows), while a swap lowers two rows' (clashes, exclusive backends past the first)."""

    def cost(i: int) -> tuple[int, int]:
        row = [column[i] for column in columns]
        return len(row) - len(set(row)), max(0, len(exclusive.intersection(row)) - 1)

    def pair_cost(i: int, j: int) -> tuple[int, int]:
        (a, b), (c, d) = cost(i), cost(j)
        return a + c, b + d

    improved = True
    while improved:
        improved = False
        for column in columns[1:]:
            for i, j in itertools.combinations(range(len(column)), 2):
                if column[i] == column[j]:
                    continue
                before = pair_cost(i, j)
                column[i], column[j] = column[j], column[i]
                if pair_cost(i, j) < before:
                    improved = True
                else:
                    column[i], column[j] = column[j], column[i]
