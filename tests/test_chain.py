"""Pattern chains: order on publish and consume, claim check inside a chain, cleanup hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.errors import ConfigurationError, PayloadTooLarge, PrismError
from prism_testkit.interfaces import Message
from prism_testkit.pattern_sdk.chain import ChainedLog, ChainedPubSub, ChainedQueue, Pattern, PatternChain
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckStage

T = TypeVar("T")
FIELD = "video-ref"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Stamp:
    """Appends its name to a 'trail' header on publish and checks and pops it on consume, so
    a consume that does not run in exactly reverse order fails."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal

    async def outgoing(self, message: Message) -> Message:
        self.journal.append(f"out:{self.name}")
        trail = message.headers.get("trail", "")
        return message.with_headers(trail=f"{trail}/{self.name}" if trail else self.name)

    async def incoming(self, message: Message) -> Message:
        self.journal.append(f"in:{self.name}")
        *rest, last = message.headers["trail"].split("/")
        assert last == self.name, f"{self.name} consumed a message whose innermost stamp is {last}"
        return message.with_headers(trail="/".join(rest) or None)


class FailingSend(PrismError):
    pass


async def claim_check(driver: Any, **overrides: Any) -> ClaimCheck:
    cc = ClaimCheck(driver.objects(), ClaimCheckConfig(threshold=16, bucket="claims", field=FIELD, **overrides))
    await cc.ensure_bucket()
    return cc


async def objects_in(driver: Any) -> list[str]:
    return [k async for k in driver.objects().list_keys("claims")]


def test_publish_runs_in_order_and_consume_in_reverse() -> None:
    journal: list[str] = []
    chain = PatternChain([Stamp("a", journal), Stamp("b", journal), Stamp("c", journal)])

    sent = run(chain.outgoing(Message(b"x")))
    assert sent.headers["trail"] == "a/b/c"
    restored = run(chain.incoming(sent))

    assert restored == Message(b"x")
    assert journal == ["out:a", "out:b", "out:c", "in:c", "in:b", "in:a"]


def test_chains_nest_and_reject_non_patterns() -> None:
    journal: list[str] = []
    inner = PatternChain([Stamp("b", journal), Stamp("c", journal)])
    outer = PatternChain([Stamp("a", journal), inner])
    assert isinstance(inner, Pattern)
    assert run(outer.outgoing(Message(b""))).headers["trail"] == "a/b/c"
    with pytest.raises(ConfigurationError, match=r"pattern #1 \(object\) has no async outgoing/incoming"):
        PatternChain([Stamp("a", journal), object()])  # type: ignore[list-item]


def test_claim_check_fits_a_chain_as_it_is() -> None:
    async def scenario() -> None:
        driver = open_memstore()
        cc = await claim_check(driver)
        journal: list[str] = []
        chain = PatternChain([cc, Stamp("inner", journal)])
        sent = await chain.outgoing(Message(b"p" * 100, {"kind": "video"}))
        assert sent.payload == b""
        assert FIELD in sent.headers
        assert sent.headers["trail"] == "inner"
        assert await chain.incoming(sent) == Message(b"p" * 100, {"kind": "video"})

    run(scenario())


def test_claim_check_inside_a_chained_queue_releases_after_ack() -> None:
    async def scenario() -> None:
        driver = open_memstore()
        journal: list[str] = []
        chain = PatternChain(
            [Stamp("outer", journal), ClaimCheckStage(await claim_check(driver)), Stamp("inner", journal)]
        )
        queue = ChainedQueue(driver.queue(), chain)
        big = Message(b"v" * 1000, {"kind": "video"})

        await queue.send("videos", big)
        raw = await driver.queue().receive("videos")  # what the backend holds: a reference only
        assert raw is not None
        assert raw.message.payload == b""
        assert raw.message.headers["trail"] == "outer/inner"
        assert FIELD in raw.message.headers
        await driver.queue().nack("videos", raw)

        delivery = await queue.receive("videos", wait=1.0)
        assert delivery is not None
        assert delivery.message == big
        await queue.nack("videos", delivery)
        assert len(await objects_in(driver)) == 1  # a nacked message keeps its object

        delivery = await queue.receive("videos", wait=1.0)
        assert delivery is not None
        assert delivery.message == big
        await queue.ack("videos", delivery)
        assert await objects_in(driver) == []

    run(scenario())


def test_a_failed_send_abandons_the_claimed_object() -> None:
    async def scenario() -> None:
        driver = open_memstore()
        chain = PatternChain([ClaimCheckStage(await claim_check(driver))])

        async def send(message: Message) -> None:
            raise FailingSend("broker said no")

        with pytest.raises(FailingSend):
            await chain.publish(Message(b"z" * 100), send)
        assert await objects_in(driver) == []

    run(scenario())


def test_an_inner_stage_failure_abandons_what_outer_stages_stored() -> None:
    async def scenario() -> None:
        driver = open_memstore()
        outer = ClaimCheckStage(await claim_check(driver))
        strict = ClaimCheck(driver.objects(), ClaimCheckConfig(threshold=0, bucket="claims", max_payload=0))

        class Inner:
            async def outgoing(self, message: Message) -> Message:
                return await strict.outgoing(Message(b"too big", message.headers))

            async def incoming(self, message: Message) -> Message:
                return message

        async def send(message: Message) -> None:
            raise AssertionError("never reached")

        with pytest.raises(PayloadTooLarge):
            await PatternChain([outer, Inner()]).publish(Message(b"z" * 100), send)
        assert await objects_in(driver) == []

    run(scenario())


def test_chained_log_releases_on_commit_and_pubsub_restores() -> None:
    async def scenario() -> None:
        driver = open_memstore()
        chain = PatternChain([ClaimCheckStage(await claim_check(driver))])
        log = ChainedLog(driver.log(), chain)
        await log.append("events", Message(b"e" * 64))
        records = await log.read("events", 0)
        assert [r.message.payload for r in records] == [b"e" * 64]
        assert len(await objects_in(driver)) == 1
        await log.commit("events", "g", 1)
        assert await objects_in(driver) == []
        assert await log.committed("events", "g") == 1

        keep = PatternChain([ClaimCheckStage(await claim_check(driver, on_consume="keep", ttl=60))])
        pubsub = ChainedPubSub(driver.pubsub(), keep)
        sub = await pubsub.subscribe("news")
        await pubsub.publish("news", Message(b"n" * 64))
        assert await sub.receive(1.0) == Message(b"n" * 64)
        await sub.close()

    run(scenario())
