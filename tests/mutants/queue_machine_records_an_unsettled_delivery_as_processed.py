"""Mutant (a wrong judge, issue 66 item 2): the queue machine records a delivery still held, never
settled, at the end as processed (an ok dequeue), so a queue that never redelivers it is never
judged lost.

Loaded with ``-p tests.mutants.queue_machine_records_an_unsettled_delivery_as_processed``;
``tests/test_queue_machine_recording.py`` must fail.
"""

from __future__ import annotations

import importlib

from ._rewrite import rewrite_line

# A checkout's suite run imports the suites as ``suites``, an installed one (and tests/) as
# ``prism_testkit.suites``: break the machine under both names.
for package in ("prism_testkit.suites", "suites"):
    try:
        module = importlib.import_module(f"{package}._queue_machine")
    except ModuleNotFoundError:
        continue
    rewrite_line(
        module.QueueMachine,
        "check",
        'taken.handle.fail("never processed")',
        "taken.handle.ok(value=self.decode(taken.delivery))  # the bug: held is processed",
    )
