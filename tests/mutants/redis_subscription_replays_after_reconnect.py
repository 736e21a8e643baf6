"""Mutant: the Redis driver's subscription, after its connection broke, delivers the last
message it handed out once more, as a client might that "re-sends what may have been lost"
when it reconnects. Pub/sub at most once never delivers a message twice.

Loaded with ``-p tests.mutants.redis_subscription_replays_after_reconnect``; the stateful
pub/sub suite must report a duplicated delivery once a fault breaks a subscriber's connection.
"""

from __future__ import annotations

from prism_testkit.backends.redis.driver import RedisSubscription
from prism_testkit.interfaces import Message

_receive = RedisSubscription.receive
_last: dict[int, Message] = {}
_broken: set[int] = set()


async def _replaying(self: RedisSubscription, wait: float) -> Message | None:
    if id(self) in _broken and id(self) in _last:
        _broken.discard(id(self))
        return _last[id(self)]  # the bug: handed out before the connection broke, handed out again
    try:
        message = await _receive(self, wait)
    except Exception:
        _broken.add(id(self))
        raise
    if message is not None:
        _last[id(self)] = message
    return message


RedisSubscription.receive = _replaying  # type: ignore[method-assign]
