"""The loopback fault proxy, over real sockets: an echo server in a thread, and a real redis-server.

Timing assertions are lower bounds only (latency adds at least what was asked); upper bounds flake.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import shutil
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.faults.proxy import FaultProxy, FaultState
from prism_testkit.patience import bound, poll_until
from prism_testkit.provision.processes import ServerProcess, free_port, port_open

LOCAL = "127.0.0.1"
SHORT = 0.3  # client timeout that a blackhole must trip


class EchoServer:
    """Threaded echo server: echoes until EOF, then half-closes; records how each connection ended."""

    def __init__(self, port: int = 0) -> None:
        self.outcomes: queue.Queue[str] = queue.Queue()
        outcomes = self.outcomes

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                try:
                    while data := sock.recv(65536):
                        sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    outcomes.put("eof")
                except ConnectionResetError:
                    outcomes.put("reset")
                except OSError as exc:
                    outcomes.put(f"error {exc!r}")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # the default 5 overflows with 50 concurrent connects

        self.server = Server((LOCAL, port), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="echo-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(LOCAL, echo.port) as fault_proxy:
        yield fault_proxy


def connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((LOCAL, proxy.port), timeout=timeout)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        data = sock.recv(min(size, 1 << 20))
        if not data:
            raise EOFError(f"EOF with {size} bytes still expected")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload
    return time.monotonic() - started


def assert_turned_away(proxy: FaultProxy) -> None:
    """The connection is reset at once: during connect() (the RST can beat its return) or on first use."""
    try:
        with connect(proxy) as sock:
            with contextlib.suppress(OSError):  # the RST may already have arrived
                sock.sendall(b"anyone?")
            data = sock.recv(1)
    except ConnectionResetError:
        data = b""
    assert data == b""


def socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def proxy_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("prism-faultproxy")]


# --- transparent forwarding ----------------------------------------------------------------------


def test_transfers_5_mb_byte_exact_both_ways_and_counts_it(proxy: FaultProxy) -> None:
    payload = random.Random(7).randbytes(5 * 1024 * 1024)
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))  # echo needs a concurrent reader
        sender.start()
        received = recv_exact(sock, len(payload))
        sender.join()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    stats = proxy.stats
    assert stats.bytes_to_upstream == len(payload)
    assert stats.bytes_to_client == len(payload)
    assert stats.connections_accepted == 1
    assert stats.resets == stats.refused == stats.upstream_failures == 0
    assert proxy.state.transparent
    assert str(proxy.state) == "transparent"


def test_half_close_is_passed_on_and_the_other_direction_keeps_flowing(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the echo server only answers EOF after it saw ours
        assert recv_exact(sock, 10) == b"last words"
        assert sock.recv(1) == b""
    assert echo.outcomes.get(timeout=5) == "eof"
    poll_until(lambda: proxy.stats.connections_active == 0, what="the proxy to count no connection active")


def test_many_concurrent_connections_from_another_event_loop(proxy: FaultProxy) -> None:
    async def one(index: int) -> bool:
        payload = random.Random(index).randbytes(256 * 1024)
        reader, writer = await asyncio.open_connection(LOCAL, proxy.port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        received = await reader.read()  # to EOF: the half-close comes back through the proxy
        writer.close()
        await writer.wait_closed()
        return received == payload

    async def main() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)

    assert all(asyncio.run(main()))
    assert proxy.stats.connections_accepted == 50
    assert proxy.stats.bytes_to_client == 50 * 256 * 1024


def test_a_reader_that_never_reads_bounds_the_proxy_buffering() -> None:
    # The upstream accepts nothing: only kernel buffers and the proxy's own bounded queues can hold bytes.
    with socket.socket() as sink:
        sink.bind((LOCAL, 0))
        sink.listen()
        with FaultProxy(LOCAL, sink.getsockname()[1]) as proxy, connect(proxy, timeout=1.0) as sock:
            sent, chunk, limit = 0, b"x" * (1 << 20), 256 << 20
            with contextlib.suppress(TimeoutError):
                while sent < limit:
                    sent += sock.send(chunk)
            # Unbounded buffering would have swallowed the whole 256 MiB.
            assert sent < 64 << 20
            assert proxy.stats.bytes_to_upstream < 64 << 20


# --- latency -------------------------------------------------------------------------------------


def test_latency_delays_both_directions_of_an_existing_connection(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        round_trip(sock)
        proxy.latency(0.15)
        assert proxy.state == FaultState(latency=0.15)
        assert "latency 0.15s" in str(proxy.state)
        assert round_trip(sock) >= 2 * 0.15  # one delay on the way in, one on the way out
        proxy.heal()
        assert proxy.state.transparent


def test_latency_applies_to_new_connections_and_jitter_never_reorders_bytes(proxy: FaultProxy) -> None:
    proxy.latency(0.01, jitter=0.05)
    messages = [f"{i:05d}|".encode() * 20 for i in range(150)]
    with connect(proxy) as sock:
        started = time.monotonic()
        for message in messages:  # separate small writes, so the proxy reads many separate chunks
            sock.sendall(message)
            time.sleep(0.001)
        received = recv_exact(sock, sum(map(len, messages)))
        assert time.monotonic() - started >= 2 * 0.01
    assert received == b"".join(messages)


def test_latency_set_before_start_is_applied(echo: EchoServer) -> None:
    fault_proxy = FaultProxy(LOCAL, echo.port)
    fault_proxy.latency(0.1)
    with fault_proxy, connect(fault_proxy) as sock:
        assert round_trip(sock) >= 0.2


# --- reset, blackhole, refuse --------------------------------------------------------------------


def test_reset_sends_rst_to_both_sides_and_new_connections_work(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        round_trip(sock)
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert echo.outcomes.get(timeout=5) == "reset"
    assert proxy.stats.resets == 1
    with connect(proxy) as sock:
        round_trip(sock)


def test_blackhole_times_out_and_heal_restores_existing_and_new_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as existing:  # the round trip before the fault may be slow: only the held one is short
        round_trip(existing)
        proxy.blackhole()
        assert proxy.state.blackhole
        before = proxy.stats
        existing.sendall(b"held")
        existing.settimeout(SHORT)
        with pytest.raises(TimeoutError):
            existing.recv(4)
        with connect(proxy) as new:  # accepted, so a timeout rather than an error
            new.sendall(b"also held")
            new.settimeout(SHORT)
            with pytest.raises(TimeoutError):
                new.recv(9)
            after = proxy.stats
            assert (after.bytes_to_upstream, after.bytes_to_client) == (
                before.bytes_to_upstream,
                before.bytes_to_client,
            )
            proxy.heal()
            existing.settimeout(5)
            new.settimeout(5)
            assert recv_exact(existing, 4) == b"held"  # held, not dropped: the stream stays intact
            assert recv_exact(new, 9) == b"also held"
            round_trip(new)
        round_trip(existing)
    assert proxy.stats.resets == 0


def test_partition_is_an_alias_of_blackhole(proxy: FaultProxy) -> None:
    proxy.partition()
    assert str(proxy.state) == "blackhole"


def test_refuse_resets_existing_and_new_connections_until_heal(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as existing:
        round_trip(existing)
        proxy.refuse()
        with pytest.raises(ConnectionResetError):
            existing.recv(1)
    assert echo.outcomes.get(timeout=5) == "reset"
    for _ in range(3):
        assert_turned_away(proxy)
    stats = proxy.stats
    assert (stats.resets, stats.refused, stats.bytes_to_upstream - 4) == (1, 3, 0)
    assert str(proxy.state) == "refusing"
    proxy.heal()
    with connect(proxy) as sock:
        round_trip(sock)


def test_upstream_down_resets_the_client_and_advertise_first_recipe_works() -> None:
    # The broker recipe: pick the server's port, start the proxy first, then the server.
    server_port = free_port()
    with FaultProxy(LOCAL, server_port) as proxy:
        assert_turned_away(proxy)  # no server yet: reset, as the server itself would refuse
        assert proxy.stats.upstream_failures == 1
        echo = EchoServer(server_port)
        try:
            with connect(proxy) as sock:
                round_trip(sock)
            other = EchoServer()
            try:
                proxy.set_upstream(LOCAL, other.port)  # e.g. a server restarted on another port
                assert proxy.upstream == (LOCAL, other.port)
                with connect(proxy) as sock:
                    round_trip(sock)
                assert other.outcomes.get(timeout=5) == "eof"
            finally:
                other.close()
        finally:
            echo.close()


# --- lifecycle -----------------------------------------------------------------------------------


def test_close_leaves_no_thread_no_listener_and_no_socket(echo: EchoServer) -> None:
    baseline = socket_fds()
    # Proxies of suites that ran earlier in this process (the runtime's, per backend) live on.
    others = set(proxy_threads())
    fault_proxy = FaultProxy(LOCAL, echo.port).start()
    assert len(set(proxy_threads()) - others) == 1
    clients = [connect(fault_proxy) for _ in range(5)]
    for sock in clients:
        round_trip(sock)
    fault_proxy.blackhole()  # a connection held mid-flight must not keep a socket alive either
    clients[0].sendall(b"stuck")
    fault_proxy.close()
    fault_proxy.close()  # idempotent
    assert set(proxy_threads()) - others == set()
    assert not port_open(LOCAL, fault_proxy.port)
    for sock in clients:
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(16) == b""
        sock.close()
    # The echo server closes its side in its own threads: wait for it, then compare.
    poll_until(lambda: socket_fds() == baseline, what=f"the process back to its {baseline} sockets")
    fault_proxy.heal()  # control after close is a harmless no-op


def test_only_loopback_addresses_are_accepted() -> None:
    for host in ("10.0.0.1", "0.0.0.0", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            FaultProxy(host, 1)
        with pytest.raises(ValueError, match="loopback"):
            FaultProxy(LOCAL, 1, listen_host=host)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(LOCAL, 1).set_upstream("192.168.1.1", 1)
    with pytest.raises(ValueError, match=">= 0"):
        FaultProxy(LOCAL, 1).latency(-1)


def test_port_before_start_and_double_start_are_errors(echo: EchoServer) -> None:
    fault_proxy = FaultProxy(LOCAL, echo.port)
    with pytest.raises(RuntimeError, match="not started"):
        _ = fault_proxy.port
    with fault_proxy, pytest.raises(RuntimeError, match="only once"):
        fault_proxy.start()


# --- through a real client library ---------------------------------------------------------------

REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[ServerProcess]:
    if shutil.which(REDIS_SERVER) is None:
        pytest.skip(f"{REDIS_SERVER} is not installed")
    port = free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", LOCAL]
    server = ServerProcess("redis", argv, port=port, log_path=tmp_path / "redis.log", cwd=tmp_path)
    server.start()
    yield server
    server.kill()


def test_redis_through_the_proxy_times_out_in_a_blackhole_and_recovers(redis_server: ServerProcess) -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    async def scenario(proxy: FaultProxy) -> None:
        # The calm commands get a calm bound (a fixed 0.5 s was outrun by a loaded machine); the
        # read into the blackhole is given up after SHORT, a wait nothing can end sooner.
        calm = bound("calm-op")
        client = redis_asyncio.Redis(
            host=LOCAL, port=proxy.port, socket_timeout=calm, socket_connect_timeout=calm, retry=Retry(NoBackoff(), 0)
        )
        try:
            assert await client.ping()
            await client.set("k", "v")
            proxy.blackhole()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get("k"), SHORT)
            proxy.heal()
            assert await client.get("k") == b"v"  # redis-py dropped the abandoned connection: a new one
            proxy.latency(0.1)
            started = time.monotonic()
            assert await client.ping()
            assert time.monotonic() - started >= 0.2
        finally:
            await client.aclose()

    with FaultProxy(LOCAL, redis_server.port) as proxy:
        asyncio.run(scenario(proxy))
        assert proxy.stats.connections_accepted >= 2
