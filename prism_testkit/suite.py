"""How a suite module declares itself: a name and its slots.

    pytestmark = prism_suite("claim_check", messaging=Slot.one_of("queue", "log", "pubsub"),
                             objects=Slot.needs("objects"))

Tests in the module then take the ``prism_env`` fixture and are run once per combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the plugin imports this module in every run: keep it light
    from prism_testkit.registry.combinations import Slot

MARKER = "prism_suite"


@dataclass(frozen=True)
class SuiteDeclaration:
    name: str
    slots: dict[str, Slot]


def prism_suite(name: str, **slots: Slot) -> pytest.MarkDecorator:
    from prism_testkit.registry.combinations import Slot

    if not slots:
        raise TypeError(f"suite {name!r} must declare at least one slot")
    for slot_name, slot in slots.items():
        if not isinstance(slot, Slot):
            raise TypeError(f"suite {name!r}: slot {slot_name!r} must be a Slot, not {type(slot).__name__}")
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARKER)(SuiteDeclaration(name, dict(slots)))
    return mark


def declaration_of(item: pytest.Item | pytest.Function) -> SuiteDeclaration | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    (decl,) = marker.args
    return decl if isinstance(decl, SuiteDeclaration) else None
