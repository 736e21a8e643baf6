"""A paused PostgreSQL answers nobody, open connections included.

PostgreSQL's backends call setsid(), so a SIGSTOP of the postmaster's process group stopped the
postmaster alone: every connection opened before the pause went on reading and writing through
a server the nemesis recorded as paused, and a suite's pause rule proved nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

UNANSWERED = 1.0  # seconds a read through a paused server must stay unanswered


@pytest.fixture
def postgres(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("postgres", "pause", prism_binaries)


def test_a_pause_holds_the_reads_of_a_connection_opened_before_it(postgres: PrismRuntime) -> None:
    driver, control = started_by_harness(postgres, "postgres")
    key = postgres.namespaces.new().name("paused")

    async def scenario() -> tuple[bool, bytes | None]:
        kv = driver.keyvalue()
        await kv.put(key, b"before")
        assert await kv.get(key) == b"before"  # the pool's connection is open now
        control.pause()
        try:
            read = asyncio.ensure_future(kv.get(key))
            done, _ = await asyncio.wait({read}, timeout=UNANSWERED)
            answered = bool(done)
        finally:
            control.resume()
        return answered, await read

    answered, value = postgres.run(scenario())
    assert not answered, "a connection opened before the pause was answered while the server was paused"
    assert value == b"before", "the held read did not complete after the resume"
