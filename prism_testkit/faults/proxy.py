"""A TCP fault proxy on loopback, for network nemeses (latency, reset, partition, refusal).

``FaultProxy`` sits between a client and a server, both on loopback, and forwards bytes both ways
until told otherwise. It runs its own asyncio event loop in a daemon thread, so it keeps forwarding
while the test's own loop (or thread) is blocked, and tests running on any loop can use it. Control
methods are thread-safe and synchronous: when one returns, the fault is in force for existing and
new connections alike.

    with FaultProxy("127.0.0.1", server_port) as proxy:
        client = connect("127.0.0.1", proxy.port)
        proxy.latency(0.2, jitter=0.05)  # every chunk, both directions, 0.2-0.25 s later, in order
        proxy.blackhole()                # partition: nothing flows, clients see timeouts
        proxy.heal()                     # transparent again; held bytes flow on
        proxy.reset()                    # RST every current connection, both sides
        proxy.refuse()                   # RST existing and every new connection until heal()

Fault semantics, chosen to stay close to what TCP can really show a client:

- **latency**: each chunk read from one side is written to the other no earlier than ``seconds``
  plus a uniform random extra in ``[0, jitter]`` after it was read. A chunk is never sent before the
  one read ahead of it, so bytes are never reordered; the delays of consecutive chunks overlap
  (a pipeline), so throughput is not divided by the latency.
- **blackhole** (partition): bytes are *held*, not dropped. The proxy stops reading and writing,
  so the kernel buffers fill and the sender's TCP window closes, as in a real partition; new
  connections are accepted (the kernel completes the handshake anyway) but the upstream is not
  contacted. Clients see timeouts, never errors. On ``heal()`` the held bytes flow on in order, as
  TCP retransmission would deliver them. Dropping bytes from the middle of a live stream is not
  something TCP can do and would desynchronise every protocol, so it is not offered; a client that
  gave up on a request during the partition should reconnect (most drivers do) rather than read a
  stale reply.
- **reset**: every current connection is aborted with SO_LINGER 0 on both sockets, so the client
  and the server each receive an RST (``ConnectionResetError``), not a graceful FIN.
- **refuse**: existing connections are reset, and every new one is accepted and reset at once. The
  listening socket stays bound (re-binding later could lose the port to someone else), so clients
  see a connect that succeeds followed by ``ConnectionResetError`` (or EOF) on first use, the closest
  equivalent of "connection refused" that keeps the port.
- A peer that resets its side gets the other side reset too; a half-close (EOF one way) is passed
  on as a half-close, and the other direction keeps flowing.

Memory is bounded per connection and direction (about half a MiB: the stream reader's buffer, a
queue of four 64 KiB chunks, the transport's write buffer): the proxy reads a chunk only when its
queue has room and awaits ``drain()`` after every write, so a slow reader slows the writer down.

Always ``close()`` a proxy (or use it as a context manager / fixture): the thread is a daemon, so a
forgotten proxy cannot hang interpreter exit, but it keeps its port and connections until then.

Brokers that advertise their own address (Kafka ``advertised.listeners``, NATS cluster URLs and
``client_advertise``) hand clients an address to reconnect to, which must be the proxy's or the
clients would bypass it after the first metadata request. The upstream port is only dialled when
a client connects, so a provisioner can start the proxy *before* the server::

    server_port = free_port()                           # the server will bind this one itself
    proxy = FaultProxy("127.0.0.1", server_port).start() # binds its own port: no race for it
    start_broker(bind=f"127.0.0.1:{server_port}", advertise=f"127.0.0.1:{proxy.port}")

A client connecting before the server is up is reset at once (as the server itself would refuse it).
``set_upstream()`` points new connections elsewhere, e.g. after a server restarted on another port.

All traffic stays on loopback: both the listening and the upstream address must be loopback
addresses (``127.0.0.0/8``, ``::1`` or ``localhost``), anything else is a ``ValueError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from prism_testkit.provision.netns import SUPERNET

__all__ = ["FaultProxy", "FaultState", "ProxyStats"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024  # bytes per read; also the StreamReader limit
_QUEUE_DEPTH = 4  # chunks in flight per direction: the memory bound, and the latency pipeline depth
_CONTROL_TIMEOUT = 10.0  # seconds to wait for the proxy thread to apply a control call
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN

Direction = Literal["upstream", "client"]


@dataclass(frozen=True)
class FaultState:
    """The faults in force. ``str()`` gives a short description for reports."""

    latency: float = 0.0
    jitter: float = 0.0
    blackhole: bool = False
    refusing: bool = False

    @property
    def transparent(self) -> bool:
        return not (self.latency or self.jitter or self.blackhole or self.refusing)

    def __str__(self) -> str:
        parts: list[str] = []
        if self.refusing:
            parts.append("refusing")
        if self.blackhole:
            parts.append("blackhole")
        if self.latency or self.jitter:
            parts.append(f"latency {self.latency:g}s" + (f" +0-{self.jitter:g}s" if self.jitter else ""))
        return ", ".join(parts) or "transparent"


@dataclass(frozen=True)
class ProxyStats:
    """Counters since start. A snapshot: fields are read one by one, not atomically together."""

    bytes_to_upstream: int  # client -> server bytes written to the server socket
    bytes_to_client: int  # server -> client bytes written to the client socket
    connections_accepted: int
    connections_active: int
    resets: int  # established connections reset by reset() / refuse()
    refused: int  # new connections reset at once while refusing
    upstream_failures: int  # clients reset because the upstream could not be reached


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"  # not resolved: "localhost" could map to a non-loopback address in /etc/hosts
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"FaultProxy only uses loopback addresses, got host name {host!r}") from None
    if not (address.is_loopback or address in SUPERNET):  # the harness's own cluster hosts
        raise ValueError(f"FaultProxy only uses loopback addresses or the harness's own hosts, got {host!r}")
    return host


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Abort the connection so the peer gets an RST, not a FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


class _Conn:
    """One proxied connection: the accepted client side, the upstream side once dialled, the task."""

    __slots__ = ("client", "task", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        _rst(self.client)
        _rst(self.upstream)

    def abort(self) -> None:
        # Not close(): a peer that is not reading would keep the socket open until it drained.
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.close()


class FaultProxy:
    """A loopback TCP proxy with injectable faults, on its own event loop thread."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self._upstream = (_loopback(upstream_host), upstream_port)
        self._listen = (_loopback(listen_host), listen_port)
        self._lock = threading.Lock()  # guards the fault fields and the lifecycle fields below
        self._state = FaultState()
        self._random = random.Random()  # private: never disturbs (or depends on) the global seed
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._port: int | None = None
        self._startup_error: BaseException | None = None
        # Loop-thread-only state.
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None  # cleared while blackholed
        self._conns: set[_Conn] = set()
        self._bytes = {"upstream": 0, "client": 0}
        self._accepted = 0
        self._resets = 0
        self._refused = 0
        self._upstream_failures = 0
        self._faults = 0  # faults injected since start (any non-transparent state, or a reset)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and start forwarding; returns once the listening socket is bound."""
        with self._lock:
            if self._thread is not None or self._closed:
                raise RuntimeError("a FaultProxy can be started only once")
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(ready,), name="prism-faultproxy", daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def close(self) -> None:
        """Close the listener and every connection, stop the loop and join the thread. Idempotent."""
        with self._lock:
            thread, loop = self._thread, self._loop
            self._closed = True
            self._loop = None
        if thread is None:
            return
        self._not_on_proxy_thread()
        if loop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already stopped
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_CONTROL_TIMEOUT)
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_CONTROL_TIMEOUT)

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound listening port (known once started)."""
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def host(self) -> str:
        return self._listen[0]

    @property
    def upstream(self) -> tuple[str, int]:
        return self._upstream

    def set_upstream(self, host: str, port: int) -> None:
        """Send new connections to ``host:port`` (existing ones keep their server)."""
        address = (_loopback(host), port)
        with self._lock:
            self._upstream = address

    # --- faults ----------------------------------------------------------------------------------

    def latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every forwarded chunk, both directions, by ``seconds`` + uniform [0, ``jitter``]."""
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        self._control(latency=seconds, jitter=jitter)

    def blackhole(self) -> None:
        """Partition: hold all bytes both ways (see the module docstring); clients time out."""
        self._control(blackhole=True)

    partition = blackhole

    def refuse(self) -> None:
        """Reset existing connections and every new one until ``heal()``."""
        self._control(refusing=True, reset=True)

    def reset(self) -> None:
        """RST every current connection on both sides; new connections are unaffected."""
        self._control(reset=True)

    def heal(self) -> None:
        """Back to transparent forwarding: no latency, no blackhole, no refusal."""
        self._control(latency=0.0, jitter=0.0, blackhole=False, refusing=False)

    @property
    def faults_injected(self) -> int:
        """How many faults were injected since start: clients whose connections went through
        any of them may hold broken connections (half-read replies, reset sockets)."""
        with self._lock:
            return self._faults

    @property
    def state(self) -> FaultState:
        return self._state

    @property
    def stats(self) -> ProxyStats:
        return ProxyStats(
            bytes_to_upstream=self._bytes["upstream"],
            bytes_to_client=self._bytes["client"],
            connections_accepted=self._accepted,
            connections_active=len(self._conns),
            resets=self._resets,
            refused=self._refused,
            upstream_failures=self._upstream_failures,
        )

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "unbound"
        return f"FaultProxy({self._listen[0]}:{port} -> {self._upstream[0]}:{self._upstream[1]}, {self._state})"

    # --- control plumbing ------------------------------------------------------------------------

    def _not_on_proxy_thread(self) -> None:
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            raise RuntimeError("FaultProxy must be controlled from outside its own thread (it would deadlock)")

    def _control(
        self,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        blackhole: bool | None = None,
        refusing: bool | None = None,
        reset: bool = False,
    ) -> None:
        with self._lock:
            old = self._state
            self._state = FaultState(
                latency=old.latency if latency is None else latency,
                jitter=old.jitter if jitter is None else jitter,
                blackhole=old.blackhole if blackhole is None else blackhole,
                refusing=old.refusing if refusing is None else refusing,
            )
            if reset or not self._state.transparent:
                self._faults += 1
            loop = self._loop
        if loop is None:  # not started (start() applies the state) or closed (nothing to apply to)
            return
        self._not_on_proxy_thread()
        # Wait for the loop to apply it, so the fault is in force when the call returns.
        asyncio.run_coroutine_threadsafe(self._apply(reset), loop).result(_CONTROL_TIMEOUT)

    async def _apply(self, reset: bool) -> None:
        assert self._flowing is not None
        if self._state.blackhole:
            self._flowing.clear()
        else:
            self._flowing.set()
        if reset:
            self._resets += len(self._conns)
            await self._abort(self._conns, rst=True)

    async def _abort(self, conns: Iterable[_Conn], *, rst: bool) -> None:
        """Abort the transports and cancel the tasks, and wait until the sockets are closed."""
        tasks = []
        for conn in list(conns):
            if rst:
                conn.reset()
            else:
                conn.abort()
            if conn.task is not None:
                conn.task.cancel()
                tasks.append(conn.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the transports close their sockets in a call_soon callback

    # --- the loop thread -------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # handed to start(), which re-raises it in the caller's thread
                self._startup_error = exc
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._flowing = asyncio.Event()
        if not self._state.blackhole:
            self._flowing.set()
        self._server = await asyncio.start_server(self._on_accept, *self._listen, limit=_CHUNK, backlog=1024)
        self._port = self._server.sockets[0].getsockname()[1]
        with self._lock:
            self._loop = asyncio.get_running_loop()
        # A control call made between start() and here only changed _state: apply it now.
        await self._apply(reset=False)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()  # closes the listening socket at once
        await self._abort(self._conns, rst=False)

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        conn = _Conn(writer)
        self._conns.add(conn)
        conn.task = asyncio.get_running_loop().create_task(self._serve(conn, reader))

    async def _serve(self, conn: _Conn, client: asyncio.StreamReader) -> None:
        try:
            if self._state.refusing:
                self._refused += 1
                conn.reset()
                return
            assert self._flowing is not None
            await self._flowing.wait()  # blackhole: hold the connection, dial the upstream on heal
            try:
                reader, conn.upstream = await asyncio.open_connection(*self._upstream, limit=_CHUNK)
            except OSError:
                self._upstream_failures += 1
                conn.reset()  # as the server itself would refuse it
                return
            async with asyncio.TaskGroup() as group:
                self._pipe(group, client, conn.upstream, "upstream")
                self._pipe(group, reader, conn.client, "client")
        except asyncio.CancelledError:
            pass  # reset(), refuse() or close(): the canceller handled the transports
        except Exception as exc:
            conn.reset()  # one peer reset or vanished: pass the abrupt close on to the other
            errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            log.debug("fault proxy connection ended with %r", errors)
            if not all(isinstance(error, OSError) for error in errors):
                log.exception("fault proxy connection failed")
        finally:
            self._conns.discard(conn)
            conn.close()  # both directions ended (EOF both ways) or already aborted: a no-op

    def _pipe(
        self, group: asyncio.TaskGroup, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: Direction
    ) -> None:
        # Reader and writer apart, joined by a bounded queue: delays overlap while order is kept,
        # and a full queue stops the reading (backpressure to the sender).
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_DEPTH)
        group.create_task(self._read(src, queue))
        group.create_task(self._write(queue, dst, direction))

    def _delay(self) -> float:
        state = self._state
        return state.latency + (self._random.uniform(0.0, state.jitter) if state.jitter else 0.0)

    async def _read(self, src: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        last_due = 0.0
        while True:
            await self._flowing.wait()  # blackhole: stop reading, so the sender's window closes
            chunk = await src.read(_CHUNK)
            # Never due before the chunk ahead of it: jitter must not reorder bytes.
            last_due = max(loop.time() + self._delay(), last_due)
            await queue.put((last_due, chunk))
            if not chunk:  # EOF, queued behind the data so it is passed on last
                return

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter, direction: Direction
    ) -> None:
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            # No await between this check and the write: once blackhole() returns, nothing more is sent.
            await self._flowing.wait()
            if not chunk:
                if dst.can_write_eof():
                    dst.write_eof()  # half-close: the other direction keeps flowing
                return
            self._bytes[direction] += len(chunk)  # before write(): a peer that has the bytes sees them counted
            dst.write(chunk)
            await dst.drain()
