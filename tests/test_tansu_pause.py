"""A canary for a defect of the memory-only Tansu broker the ``kafka`` backend runs on.

The stateful log suite found it: appends sent while the broker is paused (SIGSTOP), and one
sent right after it resumes while those are still in flight, are all acknowledged, at offsets
1..5 here, yet the log then ends at offset 3 and reads return nothing past it. The ``kafka`` registration therefore
declares ``survives_pause=False`` and the fault suites do not pause it. This test reproduces
the defect; when it fails, Tansu has been fixed: set ``survives_pause`` back to True.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from backends.kafka import PROPERTIES
from prism_testkit.interfaces import Message
from prism_testkit.namespace import NamespaceFactory
from prism_testkit.registry import build_registry, make_plugin_manager
from prism_testkit.runtime import PrismRuntime

IN_FLIGHT = 4  # appends sent while the broker is paused


@pytest.fixture
def kafka() -> Iterator[PrismRuntime]:
    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry["kafka"]], {}, NamespaceFactory(worker="canary"))
    try:
        yield runtime
    finally:
        runtime.close()


def test_tansu_still_loses_acknowledged_appends_across_a_pause(kafka: PrismRuntime) -> None:
    if not kafka.availability["kafka"].available:
        pytest.fail(f"kafka cannot be provisioned here: {kafka.availability['kafka'].detail}")
    driver = kafka.driver("kafka")
    control = kafka.control("kafka")
    assert control is not None, "the canary needs a broker the harness started"
    name = kafka.namespaces.new().name("canary")

    async def scenario() -> tuple[list[int], int]:
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
    assert max(acknowledged) >= end, (
        f"Tansu kept every acknowledged append across the pause (offsets {acknowledged}, end {end}): "
        "the defect is gone, declare survives_pause=True for kafka"
    )
    assert not PROPERTIES.survives_pause
