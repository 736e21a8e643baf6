"""Mutant: a queue consumer never reads its processed marks, so a message redelivered after its
mark landed (the consumer died before the ack) is handled again instead of acked as a duplicate.

Loaded with ``-p tests.mutants.consumer_ignores_processed_marks``.
"""

from __future__ import annotations

from prism_testkit import Message
from prism_testkit.patterns.consumer import Consumer


async def _is_processed(self: Consumer, message: Message) -> bool:
    return False  # the bug


Consumer._is_processed = _is_processed  # type: ignore[method-assign]
