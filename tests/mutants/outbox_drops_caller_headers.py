"""Mutant: ``OutboxTransaction.publish`` builds the event from the outbox's own headers only,
dropping the headers the caller gave (a trace id, a content type, a tenant): events arrive
without them.

Loaded with ``-p tests.mutants.outbox_drops_caller_headers``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.writer import OutboxTransaction
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxTransaction,
    "publish",
    "message = Message(data, {**extra, **own}, key=aggregate_id)",
    "message = Message(data, dict(own), key=aggregate_id)",
)
