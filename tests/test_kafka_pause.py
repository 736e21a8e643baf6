"""The kafka driver keeps every acknowledged append across a broker pause.

The stateful log suite found a defect of the memory-only Tansu broker: produce requests that
reach it together after a stall (a pause, a partition that heals) are all acknowledged, at
offsets 1..5 here, yet the log then ends at offset 3, for every client. The driver therefore
keeps one produce request in flight at a time; this reproduces the stall and fails if a change
lets the requests pile up again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.interfaces import Message
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

IN_FLIGHT = 4  # appends sent while the broker is paused


@pytest.fixture
def kafka(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("kafka", "canary", prism_binaries)


def test_appends_in_flight_across_a_pause_are_all_kept(kafka: PrismRuntime) -> None:
    driver, control = started_by_harness(kafka, "kafka")
    name = kafka.namespaces.new().name("canary")

    async def scenario() -> tuple[list[int], int]:  # offsets acknowledged, end offset
        log = driver.log()
        acknowledged = [await log.append(name, Message(b"before"))]
        control.pause()
        in_flight = []
        for n in range(IN_FLIGHT):  # one at a time, as a client retrying its timed-out appends would
            in_flight.append(asyncio.ensure_future(log.append(name, Message(b"%d" % n))))
            await asyncio.sleep(0.5)
        control.resume()
        acknowledged.append(await log.append(name, Message(b"after")))  # while those are still in flight
        acknowledged += await asyncio.gather(*in_flight)
        return acknowledged, await log.end_offset(name)

    acknowledged, end = kafka.run(scenario())
    assert sorted(acknowledged) == list(range(IN_FLIGHT + 2)), f"acknowledged offsets {acknowledged}"
    assert end == IN_FLIGHT + 2, f"appends acknowledged at {acknowledged}, but the log ends at {end}"
