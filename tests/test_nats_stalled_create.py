"""A stream created while the nats server stalls past one API timeout is still created.

The project's CI run failed once on a single server whose STREAM.CREATE went unanswered for
5 s on a loaded machine (a log suite's row, before it reached what it tested). A create of a
stream with a fixed config is answered alike when sent twice, so the driver sends it again
after each full timeout; this stalls the server past one timeout and fails without that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.nats.driver import NatsDriver
from prism_testkit.backends.nats.jetstream import API_TIMEOUT, CREATE_TIMEOUT
from prism_testkit.interfaces import Message
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

STALL = API_TIMEOUT + 1.5  # past one request's timeout, within the create's overall one


@pytest.fixture
def nats(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("nats", "stalled-create", prism_binaries)


def test_a_log_created_while_the_server_stalls_past_one_timeout_is_created(nats: PrismRuntime) -> None:
    assert STALL < CREATE_TIMEOUT
    driver, control = started_by_harness(nats, "nats")
    name = nats.namespaces.new().name("stalled")

    async def scenario() -> tuple[int, int]:  # the append's offset, the log's end
        log = driver.log()
        control.pause()
        try:
            append = asyncio.ensure_future(log.append(name, Message(b"first")))  # creates the log first
            await asyncio.sleep(STALL)
            assert not append.done(), "the append was answered while the server was stopped"
        finally:
            control.resume()
        return await append, await log.end_offset(name)

    offset, end = nats.run(scenario())
    assert (offset, end) == (0, 1)


def test_a_stream_deleted_while_the_server_stalls_past_one_timeout_is_deleted(
    nats: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded jetstream-r3-lazy-sync left a teardown's STREAM.DELETE unanswered (a load-mode
    run): a deletion sent again is answered "not found", which counts as done."""
    monkeypatch.setenv("PRISM_SLOWNESS", "1")  # one request's timeout as on a quiet machine: the stall outlasts it
    driver, control = started_by_harness(nats, "nats")
    assert isinstance(driver, NatsDriver)
    name = nats.namespaces.new().name("stalled-delete")

    async def scenario() -> list[str]:
        await driver.log().append(name, Message(b"first"))
        stream = next(s for s in await driver.jetstream.stream_names() if s.endswith(name))
        control.pause()
        try:
            deletion = asyncio.ensure_future(driver.jetstream.delete_stream(stream, until_unlisted=False))
            await asyncio.sleep(STALL)
            assert not deletion.done(), "the deletion was answered while the server was stopped"
        finally:
            control.resume()
        await deletion
        return [s for s in await driver.jetstream.stream_names() if s.endswith(name)]

    assert nats.run(scenario()) == []
