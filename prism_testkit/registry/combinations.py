"""The expansion of a suite's slots into backend combinations."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.options import Expansion as Expansion  # re-exported: it lives in the light options module
from prism_testkit.registry.backend_spec import BackendSpec
from prism_testkit.registry.slots import Slot as Slot  # re-exported: its old home


@dataclass(frozen=True)
class Combination:
    """One backend per slot, in the suite's slot order."""

    assignment: tuple[tuple[str, str], ...]
    namespace: str | None = None  # set when the combination comes from a namespace file
    pattern_config: Any = field(default=None, compare=False)  # that namespace's config for the pattern

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


def candidates(slots: Mapping[str, Slot], backends: Sequence[BackendSpec]) -> dict[str, list[str]]:
    return {name: [b.name for b in backends if slot.fits(b)] for name, slot in slots.items()}


def expand(
    suite: str, slots: Mapping[str, Slot], backends: Sequence[BackendSpec], how: Expansion
) -> list[Combination] | NoCombination:
    """The combinations to run ``suite`` over, or why there are none.

    The covering set rotates through each slot's candidates in parallel, so its size is the
    largest candidate count and every candidate appears in its slot at least once.
    """
    pools = candidates(slots, backends)
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
        rows = _covering_rows([pools[n] for n in names])
    seen: dict[tuple[str, ...], None] = {}
    for row in rows:
        seen.setdefault(tuple(row), None)
    return [Combination(tuple(zip(names, row, strict=True))) for row in seen]


def _covering_rows(pools: list[list[str]]) -> list[tuple[str, ...]]:
    """Rotate every pool in parallel; each pool's starting offset is chosen so that as few rows
    as possible put one backend in two slots (cross-backend rows test more)."""
    width = max(len(pool) for pool in pools)
    columns: list[list[str]] = []
    for pool in pools:

        def clashes(offset: int, pool: list[str] = pool) -> int:
            column = [pool[(i + offset) % len(pool)] for i in range(width)]
            return sum(column[i] in {c[i] for c in columns} for i in range(width))

        best = min(range(len(pool)), key=clashes)
        columns.append([pool[(i + best) % len(pool)] for i in range(width)])
    return [tuple(column[i] for column in columns) for i in range(width)]
