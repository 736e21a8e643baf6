"""Mutant: the producer writes a content's dedup mark before the sink accepted the message, so a
publish that fails leaves a mark and the application's retry of that content is dropped as a
duplicate (the message is lost).

Loaded with ``-p tests.mutants.producer_marks_before_publish``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer

_attempts = Producer._attempts


async def _mark_then_send(self: Producer, items: Any) -> None:
    for item in items:
        if item.digest is not None:
            await self._write_mark(item)  # the bug: before the sink took it
    await _attempts(self, items)


Producer._attempts = _mark_then_send  # type: ignore[method-assign]
