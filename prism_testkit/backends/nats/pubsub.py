"""Pub/sub on core NATS: subject ``prism.ps.<topic>``, at-most-once and ephemeral (nothing is
stored, nothing redelivered). Apart from the stored interfaces because it uses no JetStream at
all, only the connection (and the JetStream client's guard, which turns a failed request into
:class:`ConnectionLost` alike everywhere). ``subscribe`` flushes, so the server knows the
interest before it returns; the subscriptions still open are closed with the driver.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from prism_testkit import patience
from prism_testkit.errors import ConnectionLost
from prism_testkit.interfaces import Message

from .._common import check_wait
from .client import connection_state, unsubscribed
from .codec import decode, encode, named
from .jetstream import API_TIMEOUT, JetStream


class NatsSubscription:
    def __init__(self, still_open: set[NatsSubscription]) -> None:
        self._still_open = still_open  # its pub/sub's open subscriptions, which it leaves on close
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None
        self._closed = False

    async def _deliver(self, msg: Msg) -> None:
        if not self._closed:
            self._inbox.put_nowait(msg)

    async def receive(self, wait: float) -> Message | None:
        wait = check_wait(wait)
        if self._closed:
            return None
        try:
            msg = self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            if wait == 0:
                return None
            try:
                msg = await asyncio.wait_for(self._inbox.get(), wait)
            except TimeoutError:
                return None
        if self._closed:
            return None
        return decode(msg.data, msg.headers)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._still_open.discard(self)
        if self._sub is not None:
            await unsubscribed(self._sub)


class NatsPubSub:
    def __init__(self, js: JetStream) -> None:
        self._js = js
        self.subscriptions: set[NatsSubscription] = set()  # open ones: the driver's close ends them

    async def publish(self, topic: str, message: Message) -> None:
        payload, headers = encode(message)
        with self._js.guard():
            await self._js.nc.publish(f"prism.ps.{named(topic, 'topic')}", payload, headers=headers)

    async def subscribe(self, topic: str) -> NatsSubscription:
        subject = f"prism.ps.{named(topic, 'topic')}"
        sub = NatsSubscription(self.subscriptions)
        with self._js.guard():
            sub._sub = await self._js.nc.subscribe(
                subject, cb=sub._deliver, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            # The server must know the interest before subscribe returns (at-most-once:
            # anything published before that is not for this subscriber). Its PONG waited on a
            # loaded CI machine past a fixed 5 s: the bound scales with slowness, as the API's do.
            flushed_within = API_TIMEOUT * patience.slowness()
            try:
                await self._js.nc.flush(timeout=flushed_within)  # type: ignore[arg-type]  # annotated int, takes float
            except nats.errors.FlushTimeoutError as exc:
                raise ConnectionLost(
                    f"backend {self._js.name!r}: subscribe: the server's PONG did not come within "
                    f"{flushed_within:.1f} s ({connection_state(self._js.nc)})"
                ) from exc
        self.subscriptions.add(sub)
        return sub

    async def close(self) -> None:
        """End every subscription still open."""
        for sub in list(self.subscriptions):
            await sub.close()
