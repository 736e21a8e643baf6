"""A calm Redis command outlasts a stall the machine's slowness allows for.

redis-py gives every connection a fixed 5 s socket timeout: a loaded machine outran it on calm
operations, which then ended as ConnectionLost (an unknown outcome, a red in a contract test)
long before the harness's own ``calm-op`` bound. The driver's timeout is scaled like every bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

STALL = 5.5  # seconds the server is held: past redis-py's fixed 5 s, well inside 10 s x 3
SLOWNESS = "3"  # the machine's slowness the driver is created under (its timeout: 30 s)


@pytest.fixture
def redis(prism_binaries: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[PrismRuntime]:
    monkeypatch.setenv("PRISM_SLOWNESS", SLOWNESS)
    yield from runtime_of("redis", "pause", prism_binaries)


def test_a_read_held_past_five_seconds_is_answered_after_the_resume(redis: PrismRuntime) -> None:
    driver, control = started_by_harness(redis, "redis")
    key = redis.namespaces.new().name("held")

    async def scenario() -> tuple[bool, bytes | None]:
        kv = driver.keyvalue()
        await kv.put(key, b"before")  # the pool's connection is open now
        control.pause()
        try:
            read = asyncio.ensure_future(kv.get(key))
            done, _ = await asyncio.wait({read}, timeout=STALL)
            answered_while_paused = bool(done)
        finally:
            control.resume()
        return answered_while_paused, await read

    answered_while_paused, value = redis.run(scenario())
    assert not answered_while_paused, "the read ended while the server was paused"
    assert value == b"before"
