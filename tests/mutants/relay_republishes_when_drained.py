"""Mutant: an outbox relay that finds the outbox drained publishes the last event it relayed
once more, with a header changed: a stray that arrives only after every committed event.

Loaded with ``-p tests.mutants.relay_republishes_when_drained``; the outbox suite must report
the changed copy, which only its check for strays (the sink read to a fence) can see.
"""

from __future__ import annotations

from contextlib import suppress

from prism_testkit.interfaces import Message
from prism_testkit.patterns.outbox.relay import OutboxRelay

_original_run_once = OutboxRelay.run_once
_last: dict[int, Message] = {}  # id(relay) -> the last message it read from the outbox


async def _run_once(self: OutboxRelay) -> int:
    published = await _original_run_once(self)
    if published:
        with suppress(Exception):  # a truncated outbox has no last record to read
            records = await self.log.read(self.config.log, await self.committed() - 1, limit=1)
            _last[id(self)] = records[0].message
    elif (message := _last.pop(id(self), None)) is not None:  # the bug: drained, yet it publishes
        await self.sink.publish(message.with_headers(mutant="again"))
    return published


OutboxRelay.run_once = _run_once  # type: ignore[method-assign]
