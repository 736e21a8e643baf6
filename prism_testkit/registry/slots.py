"""Slots: the roles in a suite or pattern that one backend fills, by capability and durability."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from prism_testkit.capabilities import Capability, parse_capabilities

if TYPE_CHECKING:
    from prism_testkit.registry.backend_spec import BackendSpec


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


class Expansion(StrEnum):
    """How a suite's slots expand over the backends that fit them (``--prism-combinations``)."""

    COVERING = "covering"  # every compatible backend in every slot at least once
    ALL = "all"  # the full cross product
