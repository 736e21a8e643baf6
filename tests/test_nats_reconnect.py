"""The NATS driver's client closes every connection a failed reconnect attempt opened.

A fault proxy (or a server going down) accepts a connection and hangs up before INFO; nats-py then
opens its next attempt over the previous stream without closing it, and the stream warns
"unclosed" whenever it is collected, which failed a stateful suite mid-run in CI. A tiny NATS
server over real sockets: it serves the first connection, drops it, hangs up on the next few, and
serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

from prism_testkit.backends.nats.client import ClosingClient, close_client

INFO = b'INFO {"server_id":"fake","version":"2.10.0","proto":1,"max_payload":1048576}\r\n'
HANGUPS = 3


class FlakyNatsServer:
    def __init__(self) -> None:
        self.connections = 0
        self.first: asyncio.StreamWriter | None = None
        self.served_again = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        if 1 < number <= 1 + HANGUPS:
            writer.close()  # accepted, then hung up before INFO
            return
        if number == 1:
            self.first = writer
        writer.write(INFO)
        try:
            while line := await reader.readline():
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                    if number > 1:
                        self.served_again.set()
        finally:
            writer.close()


async def reconnect_through_hangups() -> None:
    fake = FlakyNatsServer()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def quiet(*_args: object) -> None:
        return None

    nc = ClosingClient()
    await nc.connect(
        f"nats://127.0.0.1:{port}",
        reconnect_time_wait=0.01,  # type: ignore[arg-type]
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        error_cb=quiet,
        disconnected_cb=quiet,
        reconnected_cb=quiet,
        closed_cb=quiet,
    )
    try:
        assert fake.first is not None
        fake.first.close()  # the server goes away: the client starts reconnecting
        await asyncio.wait_for(fake.served_again.wait(), 10)
        assert fake.connections == HANGUPS + 2, "the client must have retried through every hang-up"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert unclosed == []
    finally:
        await nc.close()
        server.close()
        await server.wait_closed()


def test_connections_of_failed_reconnect_attempts_are_closed() -> None:
    asyncio.run(reconnect_through_hangups())


async def connected_to_a_fresh_server() -> tuple[ClosingClient, asyncio.Server]:
    server = await asyncio.start_server(FlakyNatsServer().handle, "127.0.0.1", 0)
    nc = ClosingClient()
    await nc.connect(f"nats://127.0.0.1:{server.sockets[0].getsockname()[1]}", allow_reconnect=False)
    return nc, server


async def close_after_a_cancelled_wait() -> None:
    nc, server = await connected_to_a_fresh_server()
    try:
        # An earlier close bounded in time: its timeout cancelled the task awaiting the stream's
        # close waiter, and with it the waiter itself (one future per stream, shared by all).
        writer = nc._transport._io_writer  # type: ignore[union-attr]
        writer._protocol._get_close_waiter(writer).cancel()
        await close_client(nc)  # must not raise CancelledError: nobody cancelled this close
        assert nc.is_closed
    finally:
        server.close()
        await server.wait_closed()
    nc, server = await connected_to_a_fresh_server()
    try:  # ...while a close that is itself cancelled still ends cancelled
        closing = asyncio.ensure_future(close_client(nc))
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        assert closing.cancelled()
        await close_client(nc)
    finally:
        server.close()
        await server.wait_closed()


def test_a_close_survives_a_close_waiter_cancelled_by_an_earlier_timeout() -> None:
    """The hunt found it: a fault-proxied JetStream client raised CancelledError when the
    harness closed it after healing, failing a stateful suite where nothing was wrong."""
    asyncio.run(close_after_a_cancelled_wait())
