"""Mutant: a message whose sends all failed is reported published (the error swallowed after
the last retry), so a publish the producer acknowledged may never have reached the sink.

Loaded with ``-p tests.mutants.producer_reports_failure_as_published``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer, PublishFailed

_attempts = Producer._attempts


async def _attempts_swallowing(self: Producer, items: Any) -> None:
    try:
        await _attempts(self, items)
    except PublishFailed:
        return  # the bug: treated as published


Producer._attempts = _attempts_swallowing  # type: ignore[method-assign]
