"""Mutant (a wrong judge, issue 66 item 2): the queue machine records a consumer that nacked a
delivery as one that processed it (an ok dequeue), so a queue that drops nacked messages is
never judged lost.

Loaded with ``-p tests.mutants.queue_machine_records_a_nack_as_processed``;
``tests/test_queue_machine_recording.py`` must fail.
"""

from __future__ import annotations

import importlib

from ._rewrite import rewrite_line

module = importlib.import_module("prism_testkit.suites._queue_machine")
rewrite_line(
    module.QueueMachine,
    "_settle",
    'handle.fail("nacked before processing")',
    "handle.ok(value=value)  # the bug: a nack is a processed message",
)
