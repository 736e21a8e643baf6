"""Acceptance suite of the claim check pattern (RFC-009 §3, RFC-033, ADR-052, ADR-053).

Runs once per (messaging x objects) combination, and every test once per messaging interface
the messaging backend provides (queue, log, pub/sub). What it guarantees: payloads come back
byte for byte; only payloads strictly above the threshold are claimed; a claimed object lives
until the message is acknowledged / committed and is gone after (delete-after-read) or stays
for replay (keep); corrupt and missing objects are reported as typed errors; over-limit payloads
are refused with nothing written; compression and TTL really reach the store.

Pub/sub is at-most-once fan-out: every test subscribes before it publishes, and pub/sub runs
with ``on_consume="keep"`` (the adapter refuses "delete", see ``test_pubsub_refuses_delete``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, Message, ObjectStore, PrismEnv, Slot, prism_suite
from prism_testkit.errors import ConfigurationError, ConnectionLost, PayloadTooLarge, PrismError
from prism_testkit.hunting.strategies import compressible_bytes, payloads
from prism_testkit.interfaces import Queue, QueueDelivery, Record, Subscription
from prism_testkit.isolation import Namespace
from prism_testkit.pattern_sdk.chain import ChainedLog, ChainedPubSub, ChainedQueue, PatternChain
from prism_testkit.patterns.claim_check import (
    ChecksumMismatch,
    ClaimCheck,
    ClaimCheckConfig,
    ClaimCheckError,
    ClaimCheckLog,
    ClaimCheckPubSub,
    ClaimCheckQueue,
    ClaimCheckStage,
    ClaimNotFound,
    ClaimReference,
    InvalidClaimReference,
)

from ._helpers import WAIT, arrival_wait, collect, norm

pytestmark = prism_suite(
    "claim_check",
    messaging=Slot.one_of("queue", "log", "pubsub"),
    objects=Slot.needs("objects"),
)

Kind = Literal["queue", "log", "pubsub"]
Via = Literal["adapter", "chain"]
VIAS: list[Via] = ["adapter", "chain"]
KINDS: list[Kind] = ["queue", "log", "pubsub"]
THRESHOLD = 1024  # small, so that both sides of it are cheap to hit
STREAMING_THRESHOLD = 64 << 10  # small, so that the chunked paths run on modest payloads
CHUNK = 16 << 10
MAX_GENERATED = 3 << 20
FIELD = "prism-claim-check"


def sample(size: int, seed: int = 1) -> bytes:
    """``size`` incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


claim_settings = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# --- plumbing ------------------------------------------------------------------------------


class Envelope:
    """An outer chain stage (closest to the application): wraps the payload on publish and
    unwraps it on consume, so the claim check inside the chain handles a payload that is not
    the caller's, and a consume in the wrong order fails."""

    async def outgoing(self, message: Message) -> Message:
        return Message(b"<" + bytes(message.payload) + b">", {**message.headers, "enveloped": "1"}, message.key)

    async def incoming(self, message: Message) -> Message:
        payload = bytes(message.payload)
        assert message.headers.get("enveloped") == "1", "the envelope stage got a message it did not wrap"
        assert payload[:1] + payload[-1:] == b"<>", "the claim check did not restore the envelope's bytes"
        return Message(payload[1:-1], {k: v for k, v in message.headers.items() if k != "enveloped"}, message.key)


class Channel:
    """One messaging interface behind its claim check adapter, plus the consume step it needs
    (ack for a queue, a group commit for a log, nothing for pub/sub)."""

    # set by open(): the one of its kind, an adapter or (via "chain") a chain
    queue: ClaimCheckQueue | ChainedQueue
    log: ClaimCheckLog | ChainedLog
    pubsub: ClaimCheckPubSub | ChainedPubSub

    def __init__(self, prism_env: PrismEnv, kind: Kind, cc: ClaimCheck, ns: Namespace, via: Via = "adapter") -> None:
        driver = prism_env.driver("messaging")
        self.via = via
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind, self.cc, self.driver = kind, cc, driver
        self.name, self.group = ns.name(kind), ns.name("group")
        self.offset = 0
        self.subscription: Subscription | None = None
        self._delivery: QueueDelivery | None = None
        self._records: list[Record] = []

    async def open(self) -> Channel:
        if self.via == "chain":  # RFC-014's composition: an outer stage, then the claim check
            chain = PatternChain([Envelope(), ClaimCheckStage(self.cc)])
            if self.kind == "queue":
                self.queue = ChainedQueue(self.driver.queue(), chain)
            elif self.kind == "log":
                self.log = ChainedLog(self.driver.log(), chain)
            else:
                self.pubsub = ChainedPubSub(self.driver.pubsub(), chain)
                self.subscription = await self.pubsub.subscribe(self.name)
            return self
        if self.kind == "queue":
            self.queue = ClaimCheckQueue(self.driver.queue(), self.cc)
        elif self.kind == "log":
            self.log = ClaimCheckLog(self.driver.log(), self.cc)
        else:
            self.pubsub = ClaimCheckPubSub(self.driver.pubsub(), self.cc)
            # At-most-once fan-out: only subscribers present at publish time get the message.
            self.subscription = await self.pubsub.subscribe(self.name)
        return self

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.close()

    async def send(self, message: Message) -> None:
        if self.kind == "queue":
            await self.queue.send(self.name, message)
        elif self.kind == "log":
            await self.log.append(self.name, message)
        else:
            await self.pubsub.publish(self.name, message)

    async def receive(self) -> Message:
        """The next message, restored; it stays unconsumed until :meth:`consume`."""
        if self.kind == "queue":
            delivery = await self.queue.receive(self.name, wait=arrival_wait())
            assert delivery is not None, "the message never arrived"
            self._delivery = delivery
            return delivery.message
        if self.kind == "log":
            records = await self.log.read(self.name, self.offset, limit=1, wait=arrival_wait())
            assert records, "the record never arrived"
            self._records = records
            self.offset = records[-1].offset + 1
            return records[0].message
        assert self.subscription is not None
        message = await self.subscription.receive(arrival_wait())
        assert message is not None, "the message never arrived"
        return message

    async def consume(self) -> None:
        """Acknowledge what :meth:`receive` returned (which releases its claim)."""
        if self.kind == "queue":
            assert self._delivery is not None
            await self.queue.ack(self.name, self._delivery)
        elif self.kind == "log" and self.via == "chain":
            await self.log.commit(self.name, self.group, self.offset)
        elif self.kind == "log":
            assert isinstance(self.log, ClaimCheckLog)  # not via the chain
            await self.log.commit(self.name, self.group, self.offset, self._records)

    async def assert_nothing_sent(self) -> None:
        if self.kind == "queue":
            assert await self.driver.queue().receive(self.name, wait=WAIT) is None
        elif self.kind == "log":
            assert await self.driver.log().end_offset(self.name) == 0
        else:
            assert self.subscription is not None
            assert await self.subscription.receive(WAIT) is None


async def claim_check(prism_env: PrismEnv, ns: Namespace, kind: Kind | None, **config: Any) -> ClaimCheck:
    """A claim check on the combination's object store, in a fresh bucket of ``ns``."""
    settings_: dict[str, Any] = {
        "threshold": THRESHOLD,
        "bucket": ns.name("claims"),
        "streaming_threshold": STREAMING_THRESHOLD,
        "chunk_size": CHUNK,
        "on_consume": "keep" if kind == "pubsub" else "delete",
    }
    settings_.update(config)
    cc = ClaimCheck(prism_env.driver("objects").objects(), ClaimCheckConfig(**settings_))
    await cc.ensure_bucket()
    return cc


async def stored_keys(cc: ClaimCheck) -> list[str]:
    return await collect(cc.objects.list_keys(cc.config.bucket))


def objects_of(prism_env: PrismEnv) -> ObjectStore:
    return prism_env.driver("objects").objects()


# --- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@claim_settings
@given(payload=payloads(THRESHOLD, MAX_GENERATED), compression=st.sampled_from(["none", "gzip"]))
# Every run covers the edges, whatever the profile draws.
@example(payload=b"", compression="gzip")
@example(payload=sample(THRESHOLD), compression="none")
@example(payload=sample(THRESHOLD + 1), compression="gzip")
@example(payload=sample(MAX_GENERATED), compression="gzip")
async def test_round_trip(prism_env: PrismEnv, kind: Kind, payload: bytes, compression: str) -> None:
    async with prism_env.example() as ns:
        cc = await claim_check(prism_env, ns, kind, compression=compression)
        channel = await Channel(prism_env, kind, cc, ns).open()
        try:
            sent = Message(payload, {"trace": "t-1"}, key="k")
            await channel.send(sent)
            claimed = len(payload) > THRESHOLD
            assert len(await stored_keys(cc)) == (1 if claimed else 0)
            received = await channel.receive()
            assert norm(received) == norm(sent)
            await channel.consume()
            # delete-after-read leaves nothing; keep (pub/sub) leaves exactly the one object
            kept = claimed and cc.config.on_consume == "keep"
            assert len(await stored_keys(cc)) == (1 if kept else 0)
        finally:
            await channel.close()
    assert await prism_env.leftovers(ns) == {}


@pytest.mark.parametrize("kind", KINDS)
async def test_threshold_boundary(prism_env: PrismEnv, kind: Kind) -> None:
    cc = await claim_check(prism_env, prism_env.ns, kind)
    channel = await Channel(prism_env, kind, cc, prism_env.ns).open()
    try:
        at = sample(THRESHOLD)
        await channel.send(Message(at))
        assert await stored_keys(cc) == [], "a payload of exactly the threshold must stay inline"
        assert (await channel.receive()).payload == at
        await channel.consume()

        above = sample(THRESHOLD + 1)
        await channel.send(Message(above))
        keys = await stored_keys(cc)
        assert len(keys) == 1, f"threshold + 1 bytes must be claimed into one object, found {keys}"
        assert (await objects_of(prism_env).info(cc.config.bucket, keys[0])).size == THRESHOLD + 1
        assert (await channel.receive()).payload == above
        await channel.consume()
        assert cc.metrics.claims_created == 1
    finally:
        await channel.close()


# --- lifecycle -----------------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("kind", ["queue", "log"])
async def test_object_lives_until_consumed_then_is_deleted(prism_env: PrismEnv, kind: Kind, via: Via) -> None:
    cc = await claim_check(prism_env, prism_env.ns, kind, on_consume="delete")
    channel = await Channel(prism_env, kind, cc, prism_env.ns, via).open()
    payloads_ = [sample(5000, seed) for seed in range(3)] + [b"inline"]
    for payload in payloads_:
        await channel.send(Message(payload))
    keys = await stored_keys(cc)
    assert len(keys) == 3
    for payload in payloads_:
        assert (await channel.receive()).payload == payload
        # Received but not yet acknowledged: the object must still be there.
        assert len(await stored_keys(cc)) == len(keys)
        await channel.consume()
        keys = await stored_keys(cc)
    assert keys == [], f"objects left after every message was consumed: {keys}"
    for key in await stored_keys(cc):
        assert not await objects_of(prism_env).exists(cc.config.bucket, key)
    assert cc.metrics.claims_deleted == 3


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("kind", KINDS)
async def test_keep_leaves_every_object_after_consumption(prism_env: PrismEnv, kind: Kind, via: Via) -> None:
    """``on_consume: keep`` over every adapter and through the chain: consuming never deletes
    (the TTL does)."""
    cc = await claim_check(prism_env, prism_env.ns, kind, on_consume="keep")
    channel = await Channel(prism_env, kind, cc, prism_env.ns, via).open()
    try:
        payloads_ = [sample(5000, seed) for seed in range(3)]
        for payload in payloads_:
            await channel.send(Message(payload))
        for payload in payloads_:
            assert (await channel.receive()).payload == payload
            await channel.consume()
    finally:
        await channel.close()
    assert len(await stored_keys(cc)) == 3, "keep deleted an object on consumption"
    assert cc.metrics.claims_deleted == 0


async def test_keep_for_replay(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "log", on_consume="keep")
    channel = await Channel(prism_env, "log", cc, prism_env.ns).open()
    payload = sample(4000)
    await channel.send(Message(payload))
    assert (await channel.receive()).payload == payload
    await channel.consume()
    assert len(await stored_keys(cc)) == 1, "keep-for-replay must keep the object after the commit"
    replay = await channel.log.read(channel.name, 0)
    assert [r.message.payload for r in replay] == [payload]
    assert await channel.driver.log().committed(channel.name, channel.group) == 1


async def test_nack_then_redelivery_finds_the_object(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "queue")
    channel = await Channel(prism_env, "queue", cc, prism_env.ns).open()
    queue = channel.queue
    payload = sample(6000)
    await queue.send(channel.name, Message(payload))
    first = await queue.receive(channel.name, wait=arrival_wait())
    assert first is not None
    assert first.message.payload == payload
    await queue.nack(channel.name, first)
    assert len(await stored_keys(cc)) == 1, "a nack must not delete the object"
    again = await queue.receive(channel.name, wait=arrival_wait())
    assert again is not None, "the nacked message was not redelivered"
    assert again.message.payload == payload
    await queue.ack(channel.name, again)
    assert await stored_keys(cc) == []


async def test_a_log_commit_releases_only_the_records_below_the_committed_offset(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "log", on_consume="delete")
    channel = await Channel(prism_env, "log", cc, prism_env.ns).open()
    assert isinstance(channel.log, ClaimCheckLog)  # the adapter, whose commit takes the records
    first, second = sample(5000, 1), sample(5000, 2)
    await channel.log.append(channel.name, Message(first))
    await channel.log.append(channel.name, Message(second))
    records = await channel.log.read(channel.name, 0, limit=2, wait=arrival_wait())
    assert [r.message.payload for r in records] == [first, second]
    await channel.log.commit(channel.name, channel.group, 1, records)  # only the first is consumed
    assert len(await stored_keys(cc)) == 1, (
        "committing offset 1 released the claim of the record at offset 1, which the group has not consumed"
    )
    again = await channel.log.read(channel.name, 1, limit=1, wait=arrival_wait())
    assert [r.message.payload for r in again] == [second], "the uncommitted record lost its payload"
    await channel.log.commit(channel.name, channel.group, 2, again)
    assert await stored_keys(cc) == []


class _IdsPerQueue:
    """A queue whose delivery ids are unique within a queue only, as Redis numbers them (each
    stream's entries on their own): the first delivery of every queue has the same id."""

    def __init__(self, inner: Queue) -> None:
        self.inner = inner
        self.handed: dict[str, int] = {}
        self.real: dict[tuple[str, str], QueueDelivery] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        raw = await self.inner.receive(queue, wait=wait, visibility_timeout=visibility_timeout)
        if raw is None:
            return None
        self.handed[queue] = self.handed.get(queue, 0) + 1
        delivery = QueueDelivery(f"{self.handed[queue]}:{raw.attempt}", raw.message, raw.attempt)
        self.real[(queue, delivery.delivery_id)] = raw
        return delivery

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.inner.ack(queue, self.real.pop((queue, delivery.delivery_id)))

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.inner.nack(queue, self.real.pop((queue, delivery.delivery_id)))


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("kind", ["queue", "log"])
async def test_one_adapter_over_two_streams_releases_only_the_consumed_streams_object(
    prism_env: PrismEnv, kind: Kind, via: Via
) -> None:
    """One adapter (or chain) over two queues or two logs, each holding a claimed message at the
    same place: the first delivery of each queue (with delivery ids unique within a queue only,
    as Redis numbers them) or offset 0 of each log. Consuming the first stream's message
    deletes its own object, never the other stream's, still unconsumed. Bug caught: pending
    claims kept by delivery id or offset alone (the second stream's claim replaces the first's)."""
    driver = prism_env.driver("messaging")
    if not driver.supports(Capability(kind)):
        pytest.skip(f"{driver.name} does not provide {kind}")
    cc = await claim_check(prism_env, prism_env.ns, kind, on_consume="delete")
    group = prism_env.ns.name("group")
    first, second = prism_env.ns.name(f"{kind}-a"), prism_env.ns.name(f"{kind}-b")
    sent = {first: sample(5000, 1), second: sample(5000, 2)}
    chain = PatternChain([ClaimCheckStage(cc)])
    queue: ClaimCheckQueue | ChainedQueue | None = None
    log: ClaimCheckLog | ChainedLog | None = None
    if kind == "queue":
        ids_per_queue = _IdsPerQueue(driver.queue())
        queue = ClaimCheckQueue(ids_per_queue, cc) if via == "adapter" else ChainedQueue(ids_per_queue, chain)
    else:
        log = ClaimCheckLog(driver.log(), cc) if via == "adapter" else ChainedLog(driver.log(), chain)
    deliveries: dict[str, QueueDelivery] = {}
    records: dict[str, list[Record]] = {}

    async def receive(name: str) -> bytes:
        if queue is not None:
            delivery = await queue.receive(name, wait=arrival_wait())
            assert delivery is not None, f"the message of {name} never arrived"
            deliveries[name] = delivery
            return bytes(delivery.message.payload)
        assert log is not None
        records[name] = await log.read(name, 0, limit=1, wait=arrival_wait())
        assert records[name], f"the record of {name} never arrived"
        return bytes(records[name][0].message.payload)

    async def consume(name: str) -> None:
        if queue is not None:
            await queue.ack(name, deliveries[name])
        elif isinstance(log, ClaimCheckLog):
            await log.commit(name, group, 1, records[name])
        else:
            assert log is not None
            await log.commit(name, group, 1)

    objects: dict[str, str] = {}  # stream -> the key of its message's object
    for name, payload in sent.items():
        before = set(await stored_keys(cc))
        if queue is not None:
            await queue.send(name, Message(payload))
        else:
            assert log is not None
            await log.append(name, Message(payload))
        (objects[name],) = set(await stored_keys(cc)) - before
    for name, payload in sent.items():  # both received before either is consumed
        assert await receive(name) == payload
    if queue is not None:
        assert deliveries[first].delivery_id == deliveries[second].delivery_id  # the point: one id, two queues
    await consume(first)
    left = set(await stored_keys(cc))
    assert left == {objects[second]}, (
        f"consuming the message of {first} deleted the object of {second}'s message, still unconsumed, "
        f"or kept its own: objects left {sorted(left)}, of {objects}"
    )
    await consume(second)
    assert await stored_keys(cc) == [], "an object was left after both messages were consumed"


async def test_a_reference_outside_the_bucket_and_prefix_is_neither_read_nor_deleted(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, None, key_prefix="claims/")
    victim = sample(2000)
    await cc.objects.put(cc.config.bucket, "private/victim", victim)  # same bucket, outside the prefix
    forged = ClaimReference(
        bucket=cc.config.bucket,
        key="private/victim",
        size=len(victim),
        checksum="sha256:" + hashlib.sha256(victim).hexdigest(),
        compression="none",
        stored_size=len(victim),
    )
    message = Message(b"", {FIELD: forged.to_header()})
    with pytest.raises(InvalidClaimReference, match="outside the configured bucket"):
        await cc.incoming(message)  # read: the consumer was made to fetch another object
    with pytest.raises(InvalidClaimReference):
        await cc.release(message)
    assert await cc.objects.exists(cc.config.bucket, "private/victim"), "a forged reference deleted another object"
    await cc.objects.delete(cc.config.bucket, "private/victim")


class _SendFails:
    """A queue whose send fails: before the message is enqueued (a definite failure) or after it
    (the acknowledgement was lost: the outcome looks unknown to the sender)."""

    def __init__(self, inner: Any, *, delivered: bool) -> None:
        self.inner, self.delivered = inner, delivered

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, queue: str, message: Message) -> str:
        if not self.delivered:
            raise PrismError("the broker refused the message")
        await self.inner.send(queue, message)
        raise ConnectionLost("the connection broke before the broker's acknowledgement arrived")


async def test_a_send_that_certainly_failed_leaves_no_orphan_object(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "queue")
    channel = await Channel(prism_env, "queue", cc, prism_env.ns).open()
    queue = ClaimCheckQueue(_SendFails(channel.driver.queue(), delivered=False), cc)
    with pytest.raises(PrismError, match="refused"):
        await queue.send(channel.name, Message(sample(5000)))
    assert await stored_keys(cc) == [], "a claim whose message was never sent was left behind (an orphan)"


async def test_a_send_of_unknown_outcome_keeps_the_object_the_message_may_reference(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "queue")
    channel = await Channel(prism_env, "queue", cc, prism_env.ns).open()
    queue = ClaimCheckQueue(_SendFails(channel.driver.queue(), delivered=True), cc)
    payload = sample(5000)
    with pytest.raises(ConnectionLost):
        await queue.send(channel.name, Message(payload))
    try:
        received = await channel.receive()  # delivered after all
    except ClaimNotFound as exc:
        raise AssertionError("a send of unknown outcome deleted the object of a message that was delivered") from exc
    assert received.payload == payload
    await channel.consume()
    assert await stored_keys(cc) == []


class _DeletesFail:
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def delete(self, bucket: str, key: str) -> None:
        raise OSError("the object store is unreachable")


async def test_an_ack_whose_delete_fails_still_succeeds_and_counts_the_failure(prism_env: PrismEnv) -> None:
    cc = await claim_check(prism_env, prism_env.ns, "queue")
    channel = await Channel(prism_env, "queue", cc, prism_env.ns).open()
    await channel.send(Message(sample(5000)))
    await channel.receive()
    cc.objects = _DeletesFail(cc.objects)
    try:
        await channel.consume()
    except Exception as exc:
        raise AssertionError(f"the ack happened but raised because the object's delete failed: {exc!r}") from exc
    finally:
        cc.objects = cc.objects.inner
    assert cc.metrics.claim_delete_failures == 1, "a failed delete after the ack was not counted"
    assert await channel.driver.queue().receive(channel.name, wait=WAIT) is None, "the acked message came back"
    for key in await stored_keys(cc):  # the TTL's job in production
        await cc.objects.delete(cc.config.bucket, key)


async def test_pubsub_refuses_delete(prism_env: PrismEnv) -> None:
    driver = prism_env.driver("messaging")
    if not driver.supports(Capability.PUBSUB):
        pytest.skip(f"{driver.name} does not provide pubsub")
    cc = await claim_check(prism_env, prism_env.ns, None, on_consume="delete")
    with pytest.raises(ConfigurationError, match="keep"):
        ClaimCheckPubSub(driver.pubsub(), cc)


async def test_ttl_is_set_on_stored_objects(prism_env: PrismEnv) -> None:
    objects_driver = prism_env.driver("objects")
    if not objects_driver.supports(Capability.OBJECTS_TTL):
        pytest.skip(f"{objects_driver.name} does not provide objects.ttl")
    ttl = 3600.0
    cc = await claim_check(prism_env, prism_env.ns, None, ttl=ttl)
    for size in (THRESHOLD + 1, STREAMING_THRESHOLD + 1):  # buffered and chunked upload
        before = clocks.wall()
        claimed = await cc.outgoing(Message(sample(size)))
        after = clocks.wall()
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        info = await objects_of(prism_env).info(cc.config.bucket, ref.key)
        assert info.expires_at is not None, "the claimed object has no expiry"
        assert before + ttl - 2 <= info.expires_at <= after + ttl + 2
        assert ref.expires_at is not None
        assert abs(ref.expires_at - info.expires_at) < 2


# --- failures ------------------------------------------------------------------------------


async def _corrupt_or_delete(prism_env: PrismEnv, cc: ClaimCheck, corrupt: bool) -> None:
    (key,) = await stored_keys(cc)
    objects = objects_of(prism_env)
    if corrupt:
        original = await objects.get(cc.config.bucket, key)
        await objects.put(cc.config.bucket, key, bytes(b ^ 0x5A for b in original))
    else:
        await objects.delete(cc.config.bucket, key)


async def _expect_claim_error(channel: Channel, error: type[ClaimCheckError]) -> None:
    with pytest.raises(error) as info:
        await channel.receive()
    assert info.value.raw is not None, "the adapter must hand back the undecoded message"
    if channel.kind == "queue":
        # The broken delivery can still be dropped, so it is not redelivered forever.
        await channel.queue.ack(channel.name, info.value.raw)  # type: ignore[arg-type]
        assert await channel.driver.queue().receive(channel.name, wait=WAIT) is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("size", [THRESHOLD + 1, STREAMING_THRESHOLD * 2])
async def test_corrupt_object_raises_checksum_mismatch(
    prism_env: PrismEnv, kind: Kind, compression: str, size: int
) -> None:
    cc = await claim_check(prism_env, prism_env.ns, kind, compression=compression)
    channel = await Channel(prism_env, kind, cc, prism_env.ns).open()
    try:
        await channel.send(Message(sample(size)))
        await _corrupt_or_delete(prism_env, cc, corrupt=True)
        await _expect_claim_error(channel, ChecksumMismatch)
        assert cc.metrics.checksum_mismatches == 1
    finally:
        await channel.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [THRESHOLD + 1, STREAMING_THRESHOLD * 2])
async def test_missing_object_raises_claim_not_found(prism_env: PrismEnv, kind: Kind, size: int) -> None:
    cc = await claim_check(prism_env, prism_env.ns, kind)
    channel = await Channel(prism_env, kind, cc, prism_env.ns).open()
    try:
        await channel.send(Message(sample(size)))
        await _corrupt_or_delete(prism_env, cc, corrupt=False)
        await _expect_claim_error(channel, ClaimNotFound)
        assert cc.metrics.claim_not_found_errors == 1
    finally:
        await channel.close()


def compressible(size: int) -> bytes:
    return (b"claim check " * (size // 12 + 1))[:size]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("limit", [THRESHOLD // 2, 4 * THRESHOLD], ids=["inline-limit", "claimed-limit"])
async def test_payload_over_max_payload_writes_nothing(
    prism_env: PrismEnv, kind: Kind, compression: str, limit: int
) -> None:
    """The limit is on the payload the caller sent, whether it would be sent inline or
    claimed, and however well it compresses."""
    cc = await claim_check(prism_env, prism_env.ns, kind, max_payload=limit, compression=compression)
    channel = await Channel(prism_env, kind, cc, prism_env.ns).open()
    try:
        for payload in (sample(limit + 1), compressible(limit + 1)):
            with pytest.raises(PayloadTooLarge) as info:
                await channel.send(Message(payload))
            assert (info.value.size, info.value.limit) == (limit + 1, limit)

        async def too_much() -> AsyncIterator[bytes]:
            for seed in range(8):
                yield sample(THRESHOLD, seed)

        with pytest.raises(PayloadTooLarge):
            await cc.outgoing_stream(too_much())
        assert await stored_keys(cc) == [], "a refused payload left an object behind"
        await channel.assert_nothing_sent()
        # The limit itself is accepted, compressible or not.
        for payload in (sample(limit), compressible(limit)):
            await channel.send(Message(payload))
            assert (await channel.receive()).payload == payload
            await channel.consume()
    finally:
        await channel.close()


# --- compression and streaming -------------------------------------------------------------


@claim_settings
@given(payload=compressible_bytes(64 << 10, 512 << 10))
async def test_compression_shrinks_the_stored_object(prism_env: PrismEnv, payload: bytes) -> None:
    async with prism_env.example() as ns:
        cc = await claim_check(prism_env, ns, None, compression="gzip")
        claimed = await cc.outgoing(Message(payload))
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        info = await objects_of(prism_env).info(cc.config.bucket, ref.key)
        assert ref.size == len(payload)
        assert info.size == ref.stored_size
        assert info.size < len(payload) / 4, f"{len(payload)} repetitive bytes stored as {info.size}"
        assert (await cc.incoming(claimed)).payload == payload


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_streaming_round_trip(prism_env: PrismEnv, kind: Kind, compression: str) -> None:
    driver = prism_env.driver("messaging")
    if not driver.supports(Capability(kind)):
        pytest.skip(f"{driver.name} does not provide {kind}")
    cc = await claim_check(prism_env, prism_env.ns, kind, compression=compression)
    name = prism_env.ns.name(kind)
    size = 5 * STREAMING_THRESHOLD + 123
    source = sample(size)

    async def read_file() -> AsyncIterator[bytes]:
        for start in range(0, size, 10_000):  # chunks unrelated to the configured chunk size
            yield source[start : start + 10_000]

    subscription = await driver.pubsub().subscribe(name) if kind == "pubsub" else None
    try:
        claimed = await cc.outgoing_stream(read_file(), headers={"name": "video.bin"})
        assert claimed.payload == b""
        assert ClaimReference.from_header(claimed.headers[FIELD]).size == size
        # The claimed message travels through the messaging backend as an ordinary message.
        wire: Message | None
        if kind == "queue":
            await driver.queue().send(name, claimed)
            delivery = await driver.queue().receive(name, wait=arrival_wait())
            assert delivery is not None
            wire = delivery.message
        elif kind == "log":
            await driver.log().append(name, claimed)
            records = await driver.log().read(name, 0, wait=arrival_wait())
            assert records
            wire = records[0].message
        else:
            assert subscription is not None
            await driver.pubsub().publish(name, claimed)
            wire = await subscription.receive(arrival_wait())
        assert wire is not None, "the claimed message never arrived"
        assert wire.headers["name"] == "video.bin"
        chunks = await collect(cc.incoming_stream(wire))
        assert max(len(c) for c in chunks) <= CHUNK
        assert b"".join(chunks) == source
        if kind == "queue":
            assert delivery is not None
            await driver.queue().ack(name, delivery)
        await cc.release(wire)
        kept = cc.config.on_consume == "keep"
        assert len(await stored_keys(cc)) == (1 if kept else 0)
    finally:
        if subscription is not None:
            await subscription.close()
