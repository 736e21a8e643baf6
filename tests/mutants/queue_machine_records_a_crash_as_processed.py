"""Mutant (a wrong judge, issue 66 item 2): the queue machine records a consumer that crashed
holding a delivery as one that processed it (an ok dequeue), so a queue that drops the
messages of crashed consumers is never judged lost.

Loaded with ``-p tests.mutants.queue_machine_records_a_crash_as_processed``; the stateful queue
suite's step-by-step crash must fail.
"""

from __future__ import annotations

import importlib

from ._rewrite import rewrite_line

module = importlib.import_module("prism_testkit.suites._queue_machine")
rewrite_line(
    module.QueueMachine,
    "crash_consumer",
    '        self.held.pop(which % len(self.held)).handle.fail("consumer crashed before processing")',
    "        taken = self.held.pop(which % len(self.held))\n"
    "        taken.handle.ok(value=self.decode(taken.delivery))  # the bug: a crash is a processed message",
)
