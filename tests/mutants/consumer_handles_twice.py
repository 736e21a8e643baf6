"""Mutant: the consumer calls the handler a second time for the second message it receives
(a duplicate handling with no fault to explain it).

Loaded with ``-p tests.mutants.consumer_handles_twice``; the plain suite's in-order test must stay
red on it under any load (issue #48: redeliveries are tolerated only when skipped by their mark).
"""

from __future__ import annotations

from prism_testkit.patterns.consumer import Consumer
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Consumer,
    "_handle",
    "            await self.handler(message)",
    "            await self.handler(message)\n"
    "            if self.metrics.received == 2:  # the bug: handled again\n"
    "                await self.handler(message)",
)
