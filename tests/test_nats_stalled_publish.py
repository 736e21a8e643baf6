"""A publish left unanswered past one API timeout is sent again, and stored once.

The main job's WAL contract row on jetstream-r3 (no fault injected) failed once with
``ConnectionLost: NATS request failed: TimeoutError``: one publish went unanswered for 5 s on a
loaded machine. Every publish now carries a ``Nats-Msg-Id`` kept across its resends, so the
driver sends it again after each full timeout and the server drops the copy (its answer names
the original's sequence). Here the server is stopped (SIGSTOP) just as a publish is sent and
continued after more than one timeout: the publish sits in the socket, the resend behind it,
and the server stores the first and answers the second.

A single nats-server 2.15 checks a conditional publish's expected sequence before the duplicate
(docs/findings.md): the resend of a compare-and-set that was stored is refused as "wrong last
sequence", which the driver resolves by the subject's last message; without that the CAS said
False for a value it had written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from prism_testkit import patience
from prism_testkit.backends.nats.driver import NatsDriver
from prism_testkit.backends.nats.jetstream import API_TIMEOUT, NATS_MSG_ID
from prism_testkit.backends.nats.messaging import KV_BUCKET
from prism_testkit.errors import ConnectionLost
from prism_testkit.interfaces import Message
from prism_testkit.provision.base import ServerControl
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

STALL = API_TIMEOUT + 1.5  # past one request's timeout, within the publish bound (15 s and more)


# Both start the default nats-server (2.15 from the venv, or the one --prism-binary nats= names):
# nats on the default sync interval, jetstream with sync_interval: always. A single 2.15 server
# refuses a stored conditional publish's resend instead of deduplicating it; 2.9 deduplicates it.
@pytest.fixture(scope="module", params=["nats", "jetstream"])
def nats(request: pytest.FixtureRequest, prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of(request.param, "stalled-publish", prism_binaries)


@pytest.fixture
def calm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds at their base values: the test's timing must not depend on this machine's load."""
    monkeypatch.setenv("PRISM_SLOWNESS", "1")


def stalled_on_publish(driver: NatsDriver, control: ServerControl) -> asyncio.Event:
    """Make the driver's next publish stop the server just before it is sent; the event is set
    then. Only the publish meets the stall: the reads before it (a CAS reads first) do not."""
    sent = asyncio.Event()
    publish: Callable[..., Awaitable[int]] = driver.jetstream.publish

    async def pausing(*args: Any, **kwargs: Any) -> int:
        if not sent.is_set():
            control.pause()
            sent.set()
        return await publish(*args, **kwargs)

    driver.jetstream.publish = pausing  # type: ignore[method-assign]
    return sent


async def stall(control: ServerControl, sent: asyncio.Event, task: asyncio.Future[Any], seconds: float) -> None:
    """Keep the server stopped ``seconds`` from the publish's send, then continue it."""
    try:
        await asyncio.wait_for(sent.wait(), 30)
        await asyncio.sleep(seconds)
        if task.done():
            await task  # what it raised (the driver before resends: ConnectionLost after one timeout)
            pytest.fail("the publish was answered while the server was stopped")
    finally:
        control.resume()


def driver_of(runtime: PrismRuntime, backend: str) -> tuple[NatsDriver, ServerControl]:
    driver, control = started_by_harness(runtime, backend)
    assert isinstance(driver, NatsDriver)
    return driver, control


def test_an_append_unanswered_past_one_timeout_is_stored_once(nats: PrismRuntime, calm: None) -> None:
    backend = nats.selected[0].name
    driver, control = driver_of(nats, backend)
    name = nats.namespaces.new().name("stalled")
    log = driver.log()

    async def scenario() -> tuple[int, list[bytes]]:
        assert await log.append(name, Message(b"before")) == 0  # the log exists: only the append stalls
        sent = stalled_on_publish(driver, control)
        try:
            append = asyncio.ensure_future(log.append(name, Message(b"stalled")))
            await stall(control, sent, append, STALL)
            offset = await append
        finally:
            del driver.jetstream.publish
        records = await log.read(name, 0, limit=10)
        return offset, [r.message.payload for r in records]

    offset, payloads = nats.run(scenario())
    assert payloads == [b"before", b"stalled"], "the resent append was stored twice (or not at all)"
    assert offset == 1


def test_a_compare_and_set_unanswered_past_one_timeout_succeeds_once(nats: PrismRuntime, calm: None) -> None:
    backend = nats.selected[0].name
    driver, control = driver_of(nats, backend)
    key = nats.namespaces.new().name("cas")
    kv = driver.keyvalue()
    stream = f"KV_{KV_BUCKET}"

    async def scenario() -> tuple[bool, bytes | None, int, str | None]:
        await kv.put(key, b"v1")
        before = await driver.jetstream.last_seq(stream)
        sent = stalled_on_publish(driver, control)
        try:
            cas = asyncio.ensure_future(kv.compare_and_set(key, b"v1", b"v2"))
            await stall(control, sent, cas, STALL)
            done = await cas
        finally:
            del driver.jetstream.publish
        stored = await driver.jetstream.last_msg(stream, f"$KV.{KV_BUCKET}.{key}")
        writes = await driver.jetstream.last_seq(stream) - before
        return done, await kv.get(key), writes, None if stored is None else stored.headers.get(NATS_MSG_ID)

    done, value, writes, msg_id = nats.run(scenario())
    assert value == b"v2"
    assert done, "the compare-and-set wrote its value and said it had not (its resend was refused)"
    assert writes == 1, f"the compare-and-set was stored {writes} times"
    assert msg_id is not None
    assert msg_id.startswith("prism-"), "the publish carried no message id of its own"


def test_a_publish_unanswered_past_its_bound_names_the_bound(
    nats: PrismRuntime, calm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the publish bound the outcome is unknown (maybe stored), and the error says which
    bound ran out; the resends it made are still stored once."""
    monkeypatch.setitem(patience.BOUNDS, "publish", API_TIMEOUT + 1.0)
    backend = nats.selected[0].name
    driver, control = driver_of(nats, backend)
    name = nats.namespaces.new().name("unanswered")
    log = driver.log()

    async def scenario() -> list[bytes]:
        await log.append(name, Message(b"before"))
        sent = stalled_on_publish(driver, control)
        try:
            append = asyncio.ensure_future(log.append(name, Message(b"maybe")))
            try:
                await asyncio.wait_for(sent.wait(), 30)
                with pytest.raises(
                    ConnectionLost, match=r"unanswered 2 time\(s\).*bound publish: 6\.0s = 6s x slowness"
                ):
                    await append
            finally:
                control.resume()
        finally:
            del driver.jetstream.publish
        assert await log.read(name, 1, wait=10.0), "the unanswered append was not stored once the server ran again"
        await asyncio.sleep(0.5)  # the resend behind it, if it were stored too
        return [r.message.payload for r in await log.read(name, 0, limit=10)]

    assert nats.run(scenario()) == [b"before", b"maybe"]
