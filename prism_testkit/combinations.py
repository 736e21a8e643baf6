"""Slots that suites declare, and their expansion into backend combinations."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prism_testkit.capabilities import Capability, parse_capabilities
from prism_testkit.registry import BackendSpec


class Expansion(StrEnum):
    COVERING = "covering"  # every compatible backend in every slot at least once
    ALL = "all"  # the full cross product


@dataclass(frozen=True)
class Slot:
    """A role in a suite that one backend fills. It fits a backend that declares every
    capability in ``all_of`` and at least one in ``any_of`` (when ``any_of`` is not empty)."""

    all_of: frozenset[Capability] = frozenset()
    any_of: frozenset[Capability] = frozenset()
    durable: bool = False  # the provisioned instance must keep acknowledged writes across restart

    @classmethod
    def needs(cls, *capabilities: str | Capability, durable: bool = False) -> Slot:
        return cls(all_of=parse_capabilities(list(capabilities)), durable=durable)

    @classmethod
    def one_of(cls, *capabilities: str | Capability, durable: bool = False) -> Slot:
        return cls(any_of=frozenset(Capability(c) for c in capabilities), durable=durable)

    def fits(self, spec: BackendSpec) -> bool:
        if not self.all_of <= spec.capabilities:
            return False
        if self.any_of and not (self.any_of & spec.capabilities):
            return False
        return spec.properties.durable or not self.durable

    def describe(self) -> str:
        parts = []
        if self.all_of:
            parts.append(" and ".join(sorted(c.value for c in self.all_of)))
        if self.any_of:
            parts.append(" or ".join(sorted(c.value for c in self.any_of)))
        if self.durable:
            parts.append("durable")
        return "; ".join(parts) or "any backend"


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
