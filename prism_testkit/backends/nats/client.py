"""The NATS connection's lifecycle: how the backend's one nats-py client is opened (reconnecting
for ever once connected, so a restarted or killed node is left for another), how it and its
subscriptions are closed for good, and the nats-py quirks that take working around (a transport
left open by a failed handshake, a close waiter cancelled by an earlier close, callback and
reader tasks still running after a close, a reader ended by the answer to a flush that timed
out). Apart from the driver because none of it knows JetStream or the harness's interfaces: it
is about the client object alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

import nats.errors
from nats.aio.client import PING_PROTO
from nats.aio.client import Client as NATS

CONNECT_TIMEOUT = 15.0
CLOSE_GRACE = 5.0  # seconds a closed client's cancelled tasks get to end


class ClosingClient(NATS):
    """nats-py reuses one transport for every (re)connect attempt and, when a handshake fails
    (a fault proxy or a server going down accepts, then hangs up), opens the next connection
    over the previous one without closing it; collected later, that stream warns "unclosed"."""

    async def _connect_to_server(self, s: Any) -> None:
        if self._transport is not None:
            self._transport.close()
        await super()._connect_to_server(s)

    async def _process_pong(self) -> None:
        """nats-py answers each PONG by resolving the oldest PING's future, but a flush that timed
        out (or was cancelled) left that future cancelled in the queue: resolving it raised in
        the reader, which ended for good, so the connection stayed "connected", took every
        publish, delivered nothing and timed out the next flush (docs/findings.md). Each PONG
        still answers the oldest PING; a future nobody waits for any more is just dropped."""
        if self._pongs:
            future = self._pongs.pop(0)
            if not future.done():
                future.set_result(True)
            self._pongs_received += 1
            self._pings_outstanding = 0

    async def _process_connect_init(self) -> None:
        """On a reconnect nats-py forgets the PINGs still awaiting a PONG: their flushes then wait
        out their timeout on a connection that works again. A worker's connection idles between
        tests (the harness's loop runs only inside them), the server drops it as stale after
        two unanswered PINGs, and the next test's first flush met the reconnect (CI's test
        command: "nats: flush timeout", docs/findings.md). Each such PING is sent again on the
        new connection, after the subscriptions nats-py replays, so its PONG still proves the
        server has everything sent before it."""
        waiting = [future for future in self._pongs if not future.done()]
        await super()._process_connect_init()  # a fresh queue of PINGs; the reader not yet run
        for future in waiting:
            self._pongs.append(future)
            self._pending.append(PING_PROTO)  # written once the replayed subscriptions are
            self._pending_data_size += len(PING_PROTO)

    @classmethod
    async def opened(cls, servers: list[str]) -> Self:
        """A client connected to one of ``servers`` (a cluster's nodes), reconnecting without end
        once connected. Whatever ends the first connection (also a cancellation by the harness's
        deadline) closes the client before it propagates."""

        async def quiet(*_args: object) -> None:  # nats-py logs every reconnect attempt otherwise
            return None

        nc = cls()
        try:
            # nats-py keeps retrying an unreachable server when reconnects are unlimited (which we
            # want after a restart), so the first connection gets a deadline of its own.
            await asyncio.wait_for(
                nc.connect(
                    servers,
                    name="prism-testkit",
                    connect_timeout=5,
                    reconnect_time_wait=0.2,  # type: ignore[arg-type]  # annotated int, sleeps this float
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=quiet,
                    disconnected_cb=quiet,
                    reconnected_cb=quiet,
                    closed_cb=quiet,
                ),
                CONNECT_TIMEOUT,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        return nc


async def unsubscribed(sub: Any) -> None:
    """Unsubscribe and wait until the callback task nats-py cancels has really ended: a task
    still pending when the loop closes is destroyed, and its coroutine raises into a closed loop."""
    with contextlib.suppress(nats.errors.Error, OSError):
        await sub.unsubscribe()
    task = getattr(sub, "_wait_for_msgs_task", None)  # nats-py has no public handle on it
    if task is not None and not task.done():
        task.cancel()  # unsubscribe() leaves it running when the connection is closed or draining
        await asyncio.wait([task], timeout=CLOSE_GRACE)


async def close_client(nc: NATS) -> None:
    """Close ``nc`` for good, whatever state its connection is in. nats-py ends its close by
    awaiting the stream's close waiter, one future per stream: a task cancelled while it waited
    on it before (a close bounded in time, ended by its timeout) cancelled that future too, and
    every later close of the client then raises CancelledError though nobody cancelled it."""
    try:
        await nc.close()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # this close itself is being cancelled
            if nc._transport is not None:
                nc._transport.close()  # nats-py never closes it again: it already counts as closed
            raise
    except Exception:
        pass
    # close() cancels the client's reader, pinger, flusher and reconnect tasks without
    # waiting for them; they must be gone before the harness closes the loop.
    await _settled(nc)


async def _settled(nc: NATS) -> None:
    tasks = [
        task
        for task in (nc._reading_task, nc._ping_interval_task, nc._flusher_task, nc._reconnection_task)
        if task is not None and not task.done() and task is not asyncio.current_task()
    ]
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_GRACE)


def connection_state(nc: NATS) -> str:
    """What a timed-out round trip leaves to go on: whether the client's reader and flusher still
    run, the PINGs awaiting a PONG (and how many of them nobody waits for), its reconnects."""
    pongs = list(nc._pongs)
    abandoned = sum(1 for future in pongs if future.done())

    def task(found: asyncio.Task[None] | None) -> str:
        return "none" if found is None else "ended" if found.done() else "running"

    return (
        f"status {nc._status}, reader {task(nc._reading_task)}, flusher {task(nc._flusher_task)}, "
        f"{len(pongs)} PING(s) awaiting a PONG ({abandoned} abandoned), {nc._pings_outstanding} outstanding, "
        f"{nc.stats.get('reconnects', 0)} reconnect(s), {nc._pending_data_size} bytes unsent"
    )
