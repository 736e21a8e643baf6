"""Mutant: a stop does not wait for the multicasts in flight (no drain), so it returns while
copies are still being sent, and a forced stop never cancels them.

Loaded with ``-p tests.mutants.multicast_registry_stop_skips_drain``.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import MulticastRegistry


async def _drain(self: MulticastRegistry) -> None:
    return None  # the bug


MulticastRegistry._drain = _drain  # type: ignore[method-assign]
