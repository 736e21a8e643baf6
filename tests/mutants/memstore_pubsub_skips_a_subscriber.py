"""Mutant: memstore's publish skips the newest subscription on every fourth publish, as a
broker might that acknowledges a publish before it reached every subscriber's queue. Memstore
declares pub/sub exactly-once, so a subscriber that stayed subscribed must get every publish
acknowledged after its subscription was established.

Loaded with ``-p tests.mutants.memstore_pubsub_skips_a_subscriber``; the stateful pub/sub
suite must report a lost publish (issue 53: no backend's declared at-least-once delivery was
ever judged under faults).
"""

from __future__ import annotations

import itertools

from prism_testkit.backends.memstore import _MemPubSub
from prism_testkit.interfaces import Message

_publish = _MemPubSub.publish
_count = itertools.count()


async def _skipping(self: _MemPubSub, topic: str, message: Message) -> None:
    subscribers = self._store.topics.get(topic)
    if not subscribers or next(_count) % 4 != 3:
        await _publish(self, topic, message)
        return
    newest = list(subscribers)[-1]
    del subscribers[newest]  # the bug: acknowledged before this subscriber had it
    try:
        await _publish(self, topic, message)
    finally:
        subscribers[newest] = None


_MemPubSub.publish = _skipping  # type: ignore[method-assign]
