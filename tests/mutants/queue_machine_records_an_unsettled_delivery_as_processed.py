"""Mutant (a wrong judge, issue 66 item 2): the queue machine records a delivery still held, never
settled, at the end as processed (an ok dequeue), so a queue that never redelivers it is never
judged lost.

Loaded with ``-p tests.mutants.queue_machine_records_an_unsettled_delivery_as_processed``;
``tests/test_queue_machine_recording.py`` must fail.
"""

from __future__ import annotations

import importlib

from ._rewrite import rewrite_line

module = importlib.import_module("prism_testkit.suites._queue_machine")
rewrite_line(
    module.QueueMachine,
    "check",
    'taken.handle.fail("never processed")',
    "taken.handle.ok(value=self.decode(taken.delivery))  # the bug: held is processed",
)
