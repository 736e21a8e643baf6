"""Mutant: whether a failure is ``definite`` is judged from the last attempt's error alone, so
a send that may have reached the broker on an earlier attempt (a lost answer) and was then
refused (``PayloadTooLarge``) is reported as a definite failure, though a copy may be there.

Loaded with ``-p tests.mutants.multicast_registry_definite_from_last_error``.
"""

from __future__ import annotations

import asyncio

from prism_testkit.errors import NotSupported, PayloadTooLarge
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Message
from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry.registry import _InFlight, _Send


async def deliver(
    self: mr.MulticastRegistry, flight: _InFlight, send: _Send, message: Message, gate: asyncio.Semaphore
) -> mr.DeliveryOutcome:
    copy = message.with_headers(
        **{
            mr.MULTICAST_ID_HEADER: flight.multicast_id,
            mr.IDENTITY_HEADER: send.identity,
            MESSAGE_ID_HEADER: f"{flight.multicast_id}:{send.identity}",
        }
    )
    destination = self.destination(send.identity)
    backoff = self.config.retry_backoff
    async with gate:
        while True:
            send.attempts += 1
            send.sending = True
            try:
                if self._queue is not None:
                    await self._queue.send(destination, copy)
                else:
                    assert self._pubsub is not None
                    await self._pubsub.publish(destination, copy)
            except Exception as exc:
                send.sending = False
                send.last_error = exc
                final = isinstance(exc, PayloadTooLarge | NotSupported | ValueError | TypeError)
                definite = final  # the bug: earlier attempts of unknown outcome are forgotten
                if final or send.attempts >= self.config.attempts:
                    flight.done += 1
                    return mr.DeliveryOutcome(
                        send.identity, "failed", f"{type(exc).__name__}: {exc}", send.attempts, definite
                    )
                self.metrics.delivery_retries += 1
                await asyncio.sleep(backoff)
                backoff *= 2
                continue
            send.sending = False
            flight.done += 1
            return mr.DeliveryOutcome(send.identity, "delivered", None, send.attempts)


mr.MulticastRegistry._deliver = deliver  # type: ignore[method-assign]
