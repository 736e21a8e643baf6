"""Mutant: the claim check queue adapter keeps the claims of its pending deliveries by delivery id
alone. A delivery id is unique within its queue only (Redis numbers each stream's entries on its
own), so one adapter over two queues mixes up two first deliveries: acking one queue's message
deletes the object of the other queue's message, still unacknowledged, and leaves its own behind.

Loaded with ``-p tests.mutants.claim_check_queue_pending_by_delivery_id``; the claim check
suite's two-queue test must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.claim_check import ClaimCheckQueue
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ClaimCheckQueue,
    "receive",
    "pending = (queue, raw.delivery_id)",
    'pending = ("", raw.delivery_id)  # the bug: the delivery id alone names a pending delivery',
)
rewrite_line(
    ClaimCheckQueue,
    "ack",
    "pending = (queue, delivery.delivery_id)",
    'pending = ("", delivery.delivery_id)  # the bug: the delivery id alone names a pending delivery',
)
rewrite_line(
    ClaimCheckQueue,
    "nack",
    "pending = (queue, delivery.delivery_id)",
    'pending = ("", delivery.delivery_id)',
)
