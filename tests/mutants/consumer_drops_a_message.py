"""Mutant: the consumer reports the third message it receives handled without calling the
handler (a message lost while everything looks processed).

Loaded with ``-p tests.mutants.consumer_drops_a_message``; the plain suite's in-order test must
stay red on it under any load (issue #48: it now tolerates redeliveries, never a loss).
"""

from __future__ import annotations

from prism_testkit.patterns.consumer import Consumer
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Consumer,
    "_handle",
    "            await self.handler(message)",
    "            if self.metrics.received != 3:  # the bug: the third one is never handled\n"
    "                await self.handler(message)",
)
