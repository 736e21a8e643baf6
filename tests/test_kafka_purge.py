"""A kafka purge leaves nothing behind, even when a late request brings a topic back.

Tansu creates a topic whenever a client asks metadata for a missing one. A client the purge
closed may have written such a request before it closed, and the broker can read it after the
deletion: the project's test run saw a purged topic listed gone, then listed again a moment
later (``test_purge_leaves_nothing_behind[backend=kafka]``). Here a second client asks for the
topic's metadata the moment the listing shows it gone, as that late request would; the purge
must delete it again before it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit import patience
from prism_testkit.interfaces import Message
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness


@pytest.fixture
def kafka(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("kafka", "purge", prism_binaries)


def test_a_topic_a_late_request_recreates_is_purged_again(kafka: PrismRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import AIOKafkaProducer

    from prism_testkit.backends.kafka import driver as kafka_driver

    # the window is what a late request must land in; long here, so the test proves the purge
    # deletes what comes back inside it, whatever the machine's speed (the window's own length
    # is a bet on how late a closed client's request reaches the broker)
    monkeypatch.setattr(kafka_driver, "_PURGE_QUIET", 2.0)
    driver, _ = started_by_harness(kafka, "kafka")
    assert isinstance(driver, kafka_driver.KafkaDriver)
    namespace = kafka.namespaces.new()

    async def scenario() -> list[str]:
        before = await driver._topics()
        pubsub = driver.pubsub()
        subscription = await pubsub.subscribe(namespace.name("topic"))  # the purge closes it
        await pubsub.publish(namespace.name("topic"), Message(b"before the purge"))
        created = sorted(await driver._topics() - before)
        assert created, "subscribing and publishing created no topic"

        def created_gone(listed: set[str]) -> bool:
            return not set(created) & listed

        late = AIOKafkaProducer(bootstrap_servers=driver._bootstrap)  # the late request's client
        await late.start()
        try:
            purge = asyncio.ensure_future(driver.purge(namespace.prefix))
            await patience.until(driver._topics, created_gone, what="the deletion", every=0.005)
            for topic in created:  # asks metadata of a missing topic: Tansu creates it
                await late.partitions_for(topic)
            await late.stop()
            assert not purge.done(), "the purge returned while a topic it deleted was back"
            await purge
        finally:
            await late.stop()
            await subscription.close()
        return await driver.leftovers(namespace.prefix)

    assert kafka.run(scenario()) == []
