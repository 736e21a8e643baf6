"""Contract of the ``queue`` interface: durable queue, competing consumers, ack / nack /
redelivery after the visibility timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Message, PrismEnv, Queue, Slot, patience, prism_suite
from prism_testkit.capabilities import Capability
from prism_testkit.errors import DeliveryNotFound, NotSupported, PayloadTooLarge
from prism_testkit.interfaces import MESSAGE_ID_HEADER, QueueDelivery
from prism_testkit.isolation import Namespace

from ._helpers import (
    SHORT_TTL,
    WAIT,
    Stopwatch,
    arrival_wait,
    assert_delivered,
    assert_waited_about,
    before_expiry,
    check_purge,
    drain_queue,
    expiry_deadline,
    gather_all,
    messages,
    norm,
    numbered,
    payload_limit_cases,
    payloads,
    prism_settings,
)

pytestmark = prism_suite("queue", backend=Slot.needs("queue"))

LATE_ANSWER = 1.5  # seconds each way a delayed receive's request and answer are held up
RETRY_AFTER = 1.0  # seconds: a producer's retry after a client timeout, well inside any dedup window


def queue_of(prism_env: PrismEnv) -> Queue:
    return prism_env.driver("backend").queue()


async def receive_one(queue: Queue, name: str, **kwargs: float) -> QueueDelivery:
    delivery = await queue.receive(name, wait=kwargs.pop("wait", arrival_wait()), **kwargs)
    assert delivery is not None, f"no message arrived on {name!r}"
    return delivery


async def test_send_then_receive_preserves_the_message(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    sent = Message(b"\x00payload\xff", {"content-type": "application/x", "trace": "abc"}, key="order-7")
    send_id = await queue.send(name, sent)
    assert isinstance(send_id, str)
    assert send_id
    delivery = await receive_one(queue, name)
    assert norm(delivery.message) == norm(sent)
    assert delivery.attempt == 1
    assert isinstance(delivery.delivery_id, str)
    assert delivery.delivery_id
    await queue.ack(name, delivery)


@pytest.mark.parametrize("payload", [b"", bytes(range(256))], ids=["empty", "all-bytes"])
async def test_binary_payloads(prism_env: PrismEnv, payload: bytes) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(payload))
    delivery = await receive_one(queue, name)
    assert bytes(delivery.message.payload) == payload
    assert dict(delivery.message.headers) == {}
    assert delivery.message.key is None


async def test_fifo_for_a_single_consumer(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    sent = numbered(20)
    for message in sent:
        await queue.send(name, message)
    received = await drain_queue(queue, name)
    assert_delivered(prism_env.spec("backend").properties.ordering, sent, [d.message for d in received])
    assert all(d.attempt == 1 for d in received)


async def test_queues_are_isolated(prism_env: PrismEnv) -> None:
    queue = queue_of(prism_env)
    first, second = prism_env.ns.name("q"), prism_env.ns.name("q-2")
    await queue.send(first, Message(b"for-first"))
    assert await queue.receive(second, wait=0.1) is None
    delivery = await receive_one(queue, first)
    assert delivery.message.payload == b"for-first"
    with pytest.raises(DeliveryNotFound):
        await queue.ack(second, delivery)  # a delivery belongs to its own queue
    await queue.ack(first, delivery)


async def test_ack_removes_the_message(prism_env: PrismEnv) -> None:
    """An ack within the visibility timeout removes the message: it is not handed out again once
    that timeout has run out. The short timeout is a bet on this machine's speed (the census saw
    a loaded one ack after it ran out): an ack that finds its delivery gone is judged only once
    the timeout has surely passed, and then the message is taken again with four times as long."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"once"))
    visibility, wait = SHORT_TTL, arrival_wait()
    while True:
        watch = Stopwatch()
        delivery = await receive_one(queue, name, visibility_timeout=visibility, wait=wait)
        try:
            await queue.ack(name, delivery)
            break
        except DeliveryNotFound:
            assert watch.elapsed >= visibility, f"an ack {watch.elapsed:.3f}s after the receive found no delivery"
            assert visibility < patience.handed("lease"), "every ack came after its visibility timeout"
            wait = visibility + expiry_deadline()  # until the message is visible again
            visibility *= 4
    assert await queue.receive(name, wait=visibility + expiry_deadline()) is None, "an acked message came back"


async def test_pending_message_is_invisible_to_others(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"one"))
    delivery = await receive_one(queue, name)
    assert await queue.receive(name, wait=0.1) is None, "a pending message was handed out twice"
    await queue.ack(name, delivery)


async def test_nack_redelivers_with_next_attempt(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    sent = Message(b"retry me", {"h": "1"}, key="k")
    await queue.send(name, sent)
    first = await receive_one(queue, name)
    await queue.nack(name, first)
    second = await receive_one(queue, name, wait=0.5)
    assert norm(second.message) == norm(sent)
    assert second.attempt == first.attempt + 1 == 2
    await queue.nack(name, second)
    third = await receive_one(queue, name, wait=0.5)
    assert third.attempt == 3
    await queue.ack(name, third)
    assert await queue.receive(name, wait=0.1) is None


async def test_a_long_redelivery_history_counts_every_attempt(prism_env: PrismEnv) -> None:
    """A message nacked or left to time out again and again is still delivered, intact, with
    an attempt count that went up by one each time, and never blocks the messages behind it."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    poison = Message(b"poison", {"h": "v"}, key="k")
    await queue.send(name, poison)
    await queue.send(name, Message(b"bystander"))
    attempts: list[int] = []
    bystanders = 0
    while len(attempts) < 7:
        timing_out = len(attempts) % 3 == 2  # every third attempt: the consumer stalls instead
        delivery = await receive_one(
            queue,
            name,
            wait=SHORT_TTL + expiry_deadline(),
            visibility_timeout=SHORT_TTL if timing_out else patience.handed("lease"),
        )
        if delivery.message.payload == b"bystander":
            bystanders += 1
            await queue.ack(name, delivery)
            continue
        assert norm(delivery.message) == norm(poison)
        attempts.append(delivery.attempt)
        if not timing_out:
            await queue.nack(name, delivery)
    assert attempts == list(range(1, 8)), f"attempt counts {attempts}"
    assert bystanders == 1, "the message behind the redelivered one was lost or duplicated"
    last = await receive_one(queue, name, wait=SHORT_TTL + expiry_deadline())
    assert last.attempt == 8
    await queue.ack(name, last)
    assert await queue.receive(name, wait=SHORT_TTL + 0.2) is None


async def test_visibility_timeout_expiry_redelivers(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"slow consumer"))
    watch = Stopwatch()
    first = await receive_one(queue, name, visibility_timeout=SHORT_TTL)
    early = await queue.receive(name, wait=0.0)
    # on a slow machine the timeout may have run out before this look: then it is the redelivery
    assert early is None or not before_expiry(watch, SHORT_TTL), "visible again before its visibility timeout"
    second = early or await receive_one(queue, name, wait=SHORT_TTL + expiry_deadline())
    assert watch.elapsed >= SHORT_TTL * 0.8, f"redelivered after {watch.elapsed:.3f}s"
    assert first.attempt == 1
    assert second.message.payload == b"slow consumer"
    assert second.attempt == 2
    await queue.ack(name, second)
    assert await queue.receive(name, wait=SHORT_TTL + 0.2) is None


async def test_stale_ack_after_redelivery_is_refused(prism_env: PrismEnv) -> None:
    """A consumer that overran its visibility timeout must not ack the redelivered copy."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"m"))
    first = await receive_one(queue, name, visibility_timeout=SHORT_TTL)
    second = await receive_one(queue, name, wait=SHORT_TTL + expiry_deadline())
    assert second.delivery_id != first.delivery_id
    with pytest.raises(DeliveryNotFound):
        await queue.ack(name, first)
    with pytest.raises(DeliveryNotFound):
        await queue.nack(name, first)
    await queue.ack(name, second)  # still pending: the stale ack did not remove it


async def test_double_ack_and_ack_after_nack_raise_delivery_not_found(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"a"))
    await queue.send(name, Message(b"b"))
    first = await receive_one(queue, name)
    await queue.ack(name, first)
    with pytest.raises(DeliveryNotFound):
        await queue.ack(name, first)
    with pytest.raises(DeliveryNotFound):
        await queue.nack(name, first)
    second = await receive_one(queue, name)
    await queue.nack(name, second)
    with pytest.raises(DeliveryNotFound):
        await queue.ack(name, second)
    forged = QueueDelivery("no-such-delivery", Message(b"x"), 1)
    with pytest.raises(DeliveryNotFound):
        await queue.ack(name, forged)
    remaining = await drain_queue(queue, name)
    assert [d.message.payload for d in remaining] == [second.message.payload]


SETTLERS = ("ack", "nack", "ack", "nack")  # four settlements of one delivery at once
SETTLED = 8  # deliveries settled that way in one test


async def test_concurrent_settlements_of_one_delivery_succeed_once(prism_env: PrismEnv) -> None:
    """Four acks and nacks of one delivery at once (through the driver that received it, as a
    delivery must be settled): exactly one succeeds and the others raise DeliveryNotFound, as
    they would one after another. The message is then gone if an ack won and back if a nack won:
    a driver that checks the delivery is pending, waits for the server, and then settles it
    lets several through."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    for n in range(SETTLED):
        await queue.send(name, Message(str(n).encode()))
    deliveries = [await receive_one(queue, name) for _ in range(SETTLED)]

    async def settle(kind: str, delivery: QueueDelivery) -> str | None:
        try:
            await (queue.ack if kind == "ack" else queue.nack)(name, delivery)
        except DeliveryNotFound:
            return None
        return kind

    answers = await gather_all(*(settle(kind, d) for d in deliveries for kind in SETTLERS))
    back: list[bytes] = []
    for i, delivery in enumerate(deliveries):
        won = [kind for kind in answers[i * len(SETTLERS) : (i + 1) * len(SETTLERS)] if kind is not None]
        assert len(won) == 1, (
            f"{len(SETTLERS)} concurrent settlements {SETTLERS} of one delivery must succeed exactly once; "
            f"of message {delivery.message.payload!r}, these did: {won}"
        )
        if won == ["nack"]:
            back.append(bytes(delivery.message.payload))
    remaining = await drain_queue(queue, name, expect=len(back))
    assert sorted(bytes(d.message.payload) for d in remaining) == sorted(back), "nacked ones back, acked ones gone"


async def test_receive_on_empty_waits_then_returns_none(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("empty")
    watch = Stopwatch()
    assert await queue.receive(name, wait=0.0) is None
    assert_waited_about(watch.elapsed, 0.0)  # at once, give or take the machine's slowness
    watch = Stopwatch()
    assert await queue.receive(name, wait=WAIT) is None
    assert_waited_about(watch.elapsed, WAIT)


async def test_receive_wait_returns_a_message_sent_meanwhile(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    watch = Stopwatch()
    waiting = asyncio.ensure_future(queue.receive(name, wait=arrival_wait()))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "receive returned before anything was sent"
    await queue.send(name, Message(b"late"))
    delivery = await waiting
    assert delivery is not None
    assert delivery.message.payload == b"late"
    assert watch.elapsed < arrival_wait() * 0.9, "the waiting receive did not wake up on send"
    await queue.ack(name, delivery)


async def test_a_waiting_receive_wakes_up_on_a_nack(prism_env: PrismEnv) -> None:
    """A consumer waiting on a queue whose only message another consumer holds gets it as soon
    as that one nacks, not when its own wait runs out."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    await queue.send(name, Message(b"handed back"))
    held = await receive_one(queue, name)
    watch = Stopwatch()
    waiting = asyncio.ensure_future(queue.receive(name, wait=arrival_wait()))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "a second consumer received a message that was held"
    await queue.nack(name, held)
    delivery = await waiting
    assert delivery is not None, "the nacked message never reached the waiting consumer"
    assert delivery.message.payload == b"handed back"
    assert watch.elapsed < arrival_wait() * 0.9, f"the waiting receive woke up only after {watch.elapsed:.2f}s"
    await queue.ack(name, delivery)


async def test_competing_consumers_each_message_exactly_once(prism_env: PrismEnv) -> None:
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    sent = numbered(40)
    for message in sent:
        await queue.send(name, message)

    async def consumer() -> list[QueueDelivery]:
        got: list[QueueDelivery] = []
        while (delivery := await queue.receive(name, wait=0.2)) is not None:
            got.append(delivery)
            await asyncio.sleep(0)  # let the others in while this one holds a message
            await queue.ack(name, delivery)
        return got

    per_consumer = await gather_all(*(consumer() for _ in range(5)))
    payloads_seen = [d.message.payload for got in per_consumer for d in got]
    assert sorted(payloads_seen) == sorted(m.payload for m in sent), "lost or duplicated messages"
    assert len({d.delivery_id for got in per_consumer for d in got}) == len(sent)


async def test_payload_limit(prism_env: PrismEnv) -> None:
    """A payload of the declared ``max_payload`` is carried; one byte more is refused with
    PayloadTooLarge and nothing is queued (no limit declared: 1 MiB is carried)."""
    queue, name = queue_of(prism_env), prism_env.ns.name("q")
    fits, too_large = payload_limit_cases(prism_env.spec("backend").properties)
    body = bytes(range(256)) * (fits // 256) + b"x" * (fits % 256)
    await queue.send(name, Message(body))
    delivery = await receive_one(queue, name)
    assert delivery.message.payload == body
    await queue.ack(name, delivery)
    if too_large is not None:
        with pytest.raises(PayloadTooLarge):
            await queue.send(name, Message(b"x" * too_large))
        assert await queue.receive(name, wait=0.1) is None


@prism_settings
@given(sent=st.lists(messages, max_size=12))
async def test_every_message_sent_is_received_once(prism_env: PrismEnv, sent: list[Message]) -> None:
    queue = queue_of(prism_env)
    async with prism_env.example() as ns:
        name = ns.name("q")
        for message in sent:
            await queue.send(name, message)
        received = await drain_queue(queue, name, wait=0.05, expect=len(sent))
        assert_delivered(prism_env.spec("backend").properties.ordering, sent, [d.message for d in received])
        assert await queue.receive(name, wait=0.0) is None


@prism_settings
@given(bodies=st.lists(payloads, min_size=1, max_size=8), nacks=st.lists(st.booleans(), max_size=8))
async def test_nacked_messages_come_back_until_acked(
    prism_env: PrismEnv, bodies: list[bytes], nacks: list[bool]
) -> None:
    queue = queue_of(prism_env)
    async with prism_env.example() as ns:
        name = ns.name("q")
        for body in bodies:
            await queue.send(name, Message(body))
        acked: list[bytes] = []
        decisions = iter(nacks)
        # Each receive waits for the next message (a nacked one comes back when the server gets
        # to it, later on a loaded machine); a receive returns as soon as one is there.
        while len(acked) < len(bodies):
            delivery = await queue.receive(name, wait=patience.bound("calm-op"))
            missing = len(bodies) - len(acked)
            assert delivery is not None, f"{missing} messages never came back ({patience.describe('calm-op')})"
            if next(decisions, False):
                await queue.nack(name, delivery)
            else:
                await queue.ack(name, delivery)
                acked.append(bytes(delivery.message.payload))
        assert sorted(acked) == sorted(bodies)
        assert await queue.receive(name, wait=0.1) is None, "a message came back after every one was acked"


async def test_a_resend_with_the_same_message_id_is_delivered_once_exactly_when_declared(prism_env: PrismEnv) -> None:
    """``queue.dedup`` both ways: declared, a producer's retry (same ``prism-message-id``) is
    delivered once and the original kept; undeclared, the header must not make the queue drop
    anything. Ids are per queue, and messages without one are never deduplicated."""
    queue, name, other = queue_of(prism_env), prism_env.ns.name("q"), prism_env.ns.name("q2")
    declared = prism_env.driver("backend").supports(Capability.QUEUE_DEDUP)
    first = await queue.send(name, Message(b"first", {MESSAGE_ID_HEADER: "id-1"}))
    again = await queue.send(name, Message(b"retry", {MESSAGE_ID_HEADER: "id-1"}))
    await queue.send(name, Message(b"second", {MESSAGE_ID_HEADER: "id-2"}))
    await queue.send(name, Message(b"plain"))
    await queue.send(name, Message(b"plain"))
    await queue.send(other, Message(b"elsewhere", {MESSAGE_ID_HEADER: "id-1"}))
    # A producer retries after its own timeout: the window must still cover the id by then.
    await asyncio.sleep(RETRY_AFTER)
    late = await queue.send(name, Message(b"late retry", {MESSAGE_ID_HEADER: "id-2"}))
    received = sorted(bytes(d.message.payload) for d in await drain_queue(queue, name))
    if declared:
        assert received == [b"first", b"plain", b"plain", b"second"], (
            f"a retry was not dropped (the second one came {RETRY_AFTER}s after the original), or more was"
        )
        assert again == first, "a deduplicated send must return the original's message id"
        assert late != first, "a deduplicated send returned another message's id"
    else:
        assert received == [b"first", b"late retry", b"plain", b"plain", b"retry", b"second"], (
            "an undeclared dedup dropped a send"
        )
    assert [bytes(d.message.payload) for d in await drain_queue(queue, other)] == [b"elsewhere"]


async def test_a_receive_whose_answer_is_late_hides_no_message_it_reports_empty(prism_env: PrismEnv) -> None:
    """A receive that answers "nothing" took nothing. Its request and the server's answer are
    held up longer than it waits: either it reports an unknown outcome (it raises), or it
    returns the message, or the message is there for others within the visibility timeout
    the receive asked for. (NATS once answered "nothing" on its own clock while the server
    handed the message to that abandoned pull, hiding it for the consumer's 30 s ack wait.)"""
    try:
        slow, proxy = await prism_env.proxied("backend")
    except NotSupported:
        pytest.skip("an embedded backend has no network to delay")
    queue, name = queue_of(prism_env), prism_env.ns.name("q-late")
    await slow.queue().send(name, Message(b"held?"))  # sent through it: it knows the queue now
    proxy.latency(LATE_ANSWER)
    try:
        answer = await asyncio.wait_for(
            slow.queue().receive(name, wait=WAIT, visibility_timeout=SHORT_TTL), LATE_ANSWER
        )
    except Exception:  # any error is an unknown outcome, and allowed
        return
    finally:
        proxy.heal()
    if answer is not None:
        return
    await asyncio.sleep(LATE_ANSWER)  # the delayed request has reached the server by now
    again = await queue.receive(name, wait=SHORT_TTL + expiry_deadline())
    assert again is not None, (
        "a receive answered 'no message' before the server could answer it, and the message stayed hidden past "
        f"the visibility timeout that receive asked for ({SHORT_TTL}s)"
    )


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    queue = queue_of(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        names = [ns.name("q-one"), ns.name("q-two")]
        for name in names:
            await queue.send(name, Message(b"left behind"))
        pending = await queue.receive(names[1], wait=0.5)
        assert pending is not None  # one queue holds only a pending (unacked) message
        return names

    await check_purge(prism_env, "backend", create)
    assert await queue.receive(prism_env.ns.name("q-one"), wait=0.0) is None
