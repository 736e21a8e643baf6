"""Mutant: the outbox CDC publisher orders the events of one committed transaction by their
row key (``<prefix><event id>``, a random UUID) instead of the index they were staged at, so
two events of one aggregate written in one transaction may be published in the wrong order.

Loaded with ``-p tests.mutants.outbox_cdc_orders_by_row_key``; the outbox CDC suite must report
an aggregate delivered out of commit order.
"""

from __future__ import annotations

from prism_testkit.interfaces import ChangeSet, Message
from prism_testkit.patterns.outbox import decode_record
from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher


def _records(self: OutboxCdcPublisher, change_set: ChangeSet) -> list[Message]:
    inserted = [
        (change.key, decode_record(change.key, change.after)[1])
        for change in change_set.changes
        if change.before is None and change.after is not None and change.key.startswith(self.config.record_prefix)
    ]
    return [message for _, message in sorted(inserted, key=lambda item: item[0])]  # the bug: by key, not index


OutboxCdcPublisher.records = _records  # type: ignore[method-assign]
