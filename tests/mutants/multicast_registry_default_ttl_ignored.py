"""Mutant: ``default_ttl`` is ignored: a registration that gives no TTL never expires, where
the configuration says it lives ``default_ttl`` seconds.

Loaded with ``-p tests.mutants.multicast_registry_default_ttl_ignored``.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import MulticastRegistry

_expiry = MulticastRegistry._expiry


def expiry(self: MulticastRegistry, now: float, ttl: object) -> float | None:
    if ttl is None:
        return None  # the bug: no TTL given means "never expires", whatever default_ttl says
    return _expiry(self, now, ttl)


MulticastRegistry._expiry = expiry  # type: ignore[method-assign]
