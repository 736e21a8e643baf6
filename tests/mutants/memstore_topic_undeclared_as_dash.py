"""Mutant: memstore's pub/sub writes every character its backend does not declare for names
(memstore declares all but control characters) as ``-`` in a topic, silently: ``u\\tv`` and
``u-v`` are one topic, and a subscriber of either gets what is published to the other.

Loaded with ``-p tests.mutants.memstore_topic_undeclared_as_dash``; the names suite must see
the topics alias (issue 53 item 4).
"""

from __future__ import annotations

from prism_testkit import Message, Subscription
from prism_testkit.backends import memstore
from prism_testkit.capabilities import NAME_BASE

DECLARED = frozenset(NAME_BASE + memstore.PROPERTIES.name_characters)


def _mapped(topic: str) -> str:
    return "".join(c if c in DECLARED else "-" for c in topic)  # the bug: an alias, not a refusal


_publish = memstore._MemPubSub.publish
_subscribe = memstore._MemPubSub.subscribe


async def _publish_mapped(self: memstore._MemPubSub, topic: str, message: Message) -> None:
    await _publish(self, _mapped(topic), message)


async def _subscribe_mapped(self: memstore._MemPubSub, topic: str) -> Subscription:
    return await _subscribe(self, _mapped(topic))


memstore._MemPubSub.publish = _publish_mapped  # type: ignore[method-assign]  # the mutant's replacement
memstore._MemPubSub.subscribe = _subscribe_mapped  # type: ignore[method-assign]  # the mutant's replacement
