"""Mutant: a log consumer starts from the beginning instead of its saved position, so a restart
hands every earlier record to the application again.

Loaded with ``-p tests.mutants.consumer_forgets_saved_position``.
"""

from __future__ import annotations

from prism_testkit.patterns.consumer import Consumer


async def _nothing_saved(self: Consumer) -> int | None:
    return None  # the bug: the saved position is never read


Consumer.saved_position = _nothing_saved  # type: ignore[method-assign]
