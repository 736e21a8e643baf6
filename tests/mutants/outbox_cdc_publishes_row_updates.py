"""Mutant: the outbox CDC publisher takes every captured row with an after-image as an event,
not only inserts, so an outbox row updated in place (a manual repair) is published again.

Loaded with ``-p tests.mutants.outbox_cdc_publishes_row_updates``; the outbox CDC suite must
report an update of an outbox row published as an event.
"""

from __future__ import annotations

from prism_testkit.interfaces import ChangeSet, Message
from prism_testkit.patterns.outbox import decode_record
from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher


def _records(self: OutboxCdcPublisher, change_set: ChangeSet) -> list[Message]:
    inserted = [
        decode_record(change.key, change.after)
        for change in change_set.changes
        if change.after is not None and change.key.startswith(self.config.record_prefix)  # the bug: updates too
    ]
    return [message for _, message in sorted(inserted, key=lambda item: item[0])]


OutboxCdcPublisher.records = _records  # type: ignore[method-assign]
