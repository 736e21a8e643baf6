"""The suites' sink reader: what ``until_now`` returns is exactly what was delivered before
the call (the outbox and CDC suites' check for strays rests on it), without a tail wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from prism_testkit import Capability, Message, Ordering
from prism_testkit.backends.memstore import MemstoreDriver
from prism_testkit.patience import bound
from prism_testkit.provision.base import Endpoint, Via
from prism_testkit.suites._sink_reader import Kind, SinkReader

DESTINATION = "reader-test"


def run_reader(
    kind: Kind, ordering: Ordering, *, quiet: float = 0.1, within: float = 5.0
) -> tuple[list[bytes], list[bytes], float]:
    """Three messages, read until now; then two more, one of them published while reading."""

    async def scenario() -> tuple[list[bytes], list[bytes], float]:
        endpoint = Endpoint(f"mem://reader-{kind}-{ordering}", Via.EMBEDDED)
        driver = await MemstoreDriver.connect(f"reader-{kind}", frozenset(Capability), endpoint)
        reader = SinkReader(lambda: driver, kind, DESTINATION, ordering, quiet=quiet)
        await reader.open()

        async def send(payload: bytes) -> None:
            message = Message(payload)
            if kind == "queue":
                await driver.queue().send(DESTINATION, message)
            elif kind == "log":
                await driver.log().append(DESTINATION, message)
            else:
                await driver.pubsub().publish(DESTINATION, message)

        for payload in (b"a", b"b", b"c"):
            await send(payload)
        started = time.monotonic()
        first = [m.payload for m in await reader.until_now(time.monotonic() + within)]
        took = time.monotonic() - started
        await send(b"d")
        second = [m.payload for m in await reader.until_now(time.monotonic() + within)]
        await reader.close()
        await driver.close()
        return first, second, took

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["queue", "log", "pubsub"])
def test_until_now_returns_exactly_what_came_before_without_waiting(kind: Kind) -> None:
    # A quiet wait of an hour: a read that waited for quiet would run to its deadline, so one
    # that returns before it waited for none, on any machine (a fixed "under 1 s" was a bet).
    within = bound("calm-op")
    first, second, took = run_reader(kind, Ordering.TOTAL, quiet=3600.0, within=within)
    assert first == [b"a", b"b", b"c"]
    assert second == [b"d"], "a second read returns only what came since (the fence is never returned)"
    assert took < within, f"a total order needs no quiet wait, yet the read ran to its {within:.0f}s deadline"


@pytest.mark.parametrize("kind", ["queue", "pubsub"])
def test_without_a_total_order_it_listens_until_quiet(kind: Kind) -> None:
    first, second, took = run_reader(kind, Ordering.PER_KEY, quiet=0.3)
    assert sorted(first) == [b"a", b"b", b"c"]
    assert second == [b"d"]
    assert took >= 0.3, "no fence may end a read where order is not total"
