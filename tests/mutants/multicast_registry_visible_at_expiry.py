"""Mutant: an identity is still live at the instant its TTL runs out (``<=`` where the expiry
is exclusive), so it is listed and sent to one instant too long.

Loaded with ``-p tests.mutants.multicast_registry_visible_at_expiry``.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import Registration


def live(self: Registration, now: float) -> bool:
    return self.expires_at is None or now <= self.expires_at  # the bug: inclusive


Registration.live = live  # type: ignore[method-assign]
