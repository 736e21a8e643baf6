"""Mutant: a publish whose last allowed retry went through is reported failed (the retry bound
checked after the send instead of before it), so the application would publish it again.

Loaded with ``-p tests.mutants.producer_last_retry_reported_failed``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer, PublishFailed

_attempts = Producer._attempts


async def _attempts_off_by_one(self: Producer, items: Any) -> None:
    await _attempts(self, items)
    if items[0].attempts > self.config.max_retries:  # the bug: the send succeeded
        raise PublishFailed(items[0].message_id, items[0].attempts, "retries ran out")


Producer._attempts = _attempts_off_by_one  # type: ignore[method-assign]
