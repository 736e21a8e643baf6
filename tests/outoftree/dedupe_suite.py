"""The out-of-tree pattern's own suite, written once against slots, as prism-testkit's are."""

from __future__ import annotations

import asyncio

from dedupe import DedupeConfig, DedupeQueue

from prism_testkit import Message, PrismEnv, Slot, prism_suite

pytestmark = prism_suite("dedupe", messaging=Slot.needs("queue"), seen=Slot.needs("keyvalue", "keyvalue.cas"))


async def test_a_key_is_sent_once_even_by_concurrent_producers(prism_env: PrismEnv) -> None:
    given = prism_env.pattern_config or DedupeConfig()
    assert isinstance(given, DedupeConfig)
    config = given.model_copy(update={"prefix": prism_env.ns.name(given.prefix)})  # isolated per test
    producer = DedupeQueue(prism_env["messaging"].queue(), prism_env["seen"].keyvalue(), config)
    queue = prism_env.ns.name("q")
    sent = await asyncio.gather(
        *(producer.send(queue, Message(b"x", {"idempotency-key": "k1"})) for _ in range(5)),
        producer.send(queue, Message(b"y", {"idempotency-key": "k2"})),
    )
    assert sum(1 for receipt in sent if receipt is not None) == 2
    consumer = prism_env["messaging"].queue()
    got = []
    while (delivery := await consumer.receive(queue, wait=0.5)) is not None:
        got.append(delivery.message.payload)
        await consumer.ack(queue, delivery)
    assert sorted(got) == [b"x", b"y"]
