"""Contract of the ``pubsub`` interface: ephemeral fan-out. Every current subscriber gets each
message published after it subscribed; nothing is kept for subscribers that come later."""

from __future__ import annotations

import asyncio

from prism_testkit import Message, PrismEnv, PubSub, Slot, prism_suite

from ._helpers import (
    WAIT,
    Stopwatch,
    arrival_wait,
    assert_delivered,
    assert_waited_about,
    drain_subscription,
    norm,
    numbered,
    subscribed,
)

pytestmark = prism_suite("pubsub", backend=Slot.needs("pubsub"))


def pubsub_of(prism_env: PrismEnv) -> PubSub:
    return prism_env.driver("backend").pubsub()


async def test_subscriber_receives_published_message(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    sent = Message(b"\x00hello\xff", {"content-type": "x/y"}, key="k")
    async with subscribed(pubsub, topic) as sub:
        await pubsub.publish(topic, sent)
        got = await sub.receive(arrival_wait())
        assert got is not None, "a subscriber missed a message published after it subscribed"
        assert norm(got) == norm(sent)
        assert await sub.receive(0.1) is None, "delivered twice"


async def test_every_subscriber_gets_every_message_in_order(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    sent = numbered(15)
    ordering = prism_env.spec("backend").properties.ordering
    async with subscribed(pubsub, topic) as a, subscribed(pubsub, topic) as b, subscribed(pubsub, topic) as c:
        for message in sent:
            await pubsub.publish(topic, message)
        for sub in (a, b, c):
            assert_delivered(ordering, sent, await drain_subscription(sub))


async def test_subscriber_after_publish_gets_nothing(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    await pubsub.publish(topic, Message(b"before anyone listened"))
    async with subscribed(pubsub, topic) as early:
        await pubsub.publish(topic, Message(b"before late"))
        async with subscribed(pubsub, topic) as late:
            watch = Stopwatch()
            assert await late.receive(WAIT) is None, "a late subscriber got an earlier message"
            assert_waited_about(watch.elapsed, WAIT)
            await pubsub.publish(topic, Message(b"after late"))
            got = await late.receive(arrival_wait())
            assert got is not None
            assert got.payload == b"after late"
        assert [m.payload for m in await drain_subscription(early)] == [b"before late", b"after late"]


async def test_receive_wait_returns_a_message_published_meanwhile(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    async with subscribed(pubsub, topic) as sub:
        watch = Stopwatch()
        waiting = asyncio.ensure_future(sub.receive(arrival_wait()))
        await asyncio.sleep(0.1)
        assert not waiting.done(), "receive returned before anything was published"
        await pubsub.publish(topic, Message(b"now"))
        got = await waiting
        assert got is not None
        assert got.payload == b"now"
        assert watch.elapsed < arrival_wait() * 0.9, "the waiting receive did not wake up on publish"


async def test_close_stops_delivery(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    async with subscribed(pubsub, topic) as stays:
        leaving = await pubsub.subscribe(topic)
        await leaving.close()
        await pubsub.publish(topic, Message(b"after close"))
        got = await stays.receive(arrival_wait())
        assert got is not None, "closing one subscription hurt another"
        assert got.payload == b"after close"
        try:
            late = await leaving.receive(0.1)
        except Exception:  # a closed subscription may refuse to receive; it must not deliver
            late = None
        assert late is None, "a closed subscription still received"


async def test_topics_are_isolated(prism_env: PrismEnv) -> None:
    pubsub = pubsub_of(prism_env)
    orders, orders_eu, other = (prism_env.ns.name(n) for n in ("orders", "orders-eu", "other"))
    async with subscribed(pubsub, orders) as sub, subscribed(pubsub, orders_eu) as sub_eu:
        await pubsub.publish(other, Message(b"other"))
        await pubsub.publish(orders_eu, Message(b"eu"))
        await pubsub.publish(orders, Message(b"orders"))
        assert [m.payload for m in await drain_subscription(sub)] == [b"orders"]
        assert [m.payload for m in await drain_subscription(sub_eu)] == [b"eu"]


async def test_publish_without_subscribers_keeps_nothing(prism_env: PrismEnv) -> None:
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    for message in numbered(3):
        await pubsub.publish(topic, message)
    assert await prism_env.leftovers() == {}, "an ephemeral topic stored messages"
    async with subscribed(pubsub, topic) as sub:
        assert await sub.receive(0.1) is None


async def test_purge_leaves_nothing_behind(prism_env: PrismEnv) -> None:
    """Pub/sub keeps no messages, so leftovers may list open topics of this namespace or
    nothing; after a purge, even with a subscription still open, they list nothing."""
    pubsub, topic = pubsub_of(prism_env), prism_env.ns.name("topic")
    async with subscribed(pubsub, topic) as sub:
        await pubsub.publish(topic, Message(b"left behind"))
        listed = (await prism_env.leftovers()).get(prism_env.driver("backend").name, [])
        assert all(prism_env.ns.prefix in item for item in listed), f"leftovers outside the namespace: {listed}"
        await prism_env.purge()
        assert await prism_env.leftovers() == {}
        await sub.receive(0.0)  # an open subscription survives a purge without crashing
    assert await prism_env.leftovers() == {}
