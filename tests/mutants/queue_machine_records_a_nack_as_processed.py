"""Mutant (a wrong judge, issue 66 item 2): the queue machine records a consumer that nacked a
delivery as one that processed it (an ok dequeue), so a queue that drops nacked messages is
never judged lost.

Loaded with ``-p tests.mutants.queue_machine_records_a_nack_as_processed``;
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
        "_settle",
        'handle.fail("nacked before processing")',
        "handle.ok(value=value)  # the bug: a nack is a processed message",
    )
