"""The inbox's suite: an adversary of "each message id's side effect is applied exactly once".

It redelivers and duplicates messages, crashes consumers between the commit and the ack and
inside the transaction, runs consumers of one id concurrently, and reuses an id for another
message. Every side effect is a log record written in the inbox's transaction, so counting
the records per id is counting the effects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Message, PrismEnv, Slot, Transaction, prism_suite
from prism_testkit.stateful.checkers import Anomaly, Verdict, suite_verdict
from prism_testkit.stateful.history import History, Pair

from ..inbox import Inbox, InboxConfig, InboxConsumer, MessageIdReused, Outcome

if TYPE_CHECKING:
    from prism_testkit.isolation import Namespace  # the type of prism_env.ns

pytestmark = prism_suite(
    "inbox",
    store=Slot.needs("transactions", "keyvalue", "log"),
    messaging=Slot.needs("queue"),
)

# The header carrying the message id. Not the default ``prism-message-id``: a queue with
# ``queue.dedup`` (memstore) drops resends carrying that header before the inbox sees them, and
# this suite is the inbox's adversary, not the queue's.
ID = "inbox-test-id"
SHORT_VISIBILITY = 0.5  # seconds: a crashed consumer's message comes back after this
DRAIN_WAIT = 0.2


class Crash(Exception):
    """Raised where a consumer process would die."""


def make_inbox(
    prism_env: PrismEnv, ns: Namespace, *, fail_after_effect: set[str] | None = None, pause: float = 0.0
) -> Inbox:
    """An inbox whose side effect appends to the log ``effects`` of the namespace. With
    ``fail_after_effect``, the handler raises after writing the effect of those ids (once each);
    ``pause`` holds every transaction open between its read of the record and its writes, so
    concurrent consumers all read before any commits (an in-process store would otherwise run
    each transaction to its end without yielding)."""
    effects = ns.name("effects")
    doomed = fail_after_effect if fail_after_effect is not None else set()

    async def handler(t: Transaction, message: Message) -> None:
        message_id = message.headers[ID]
        if pause:
            await asyncio.sleep(pause)
        await t.append(effects, Message(message.payload, {ID: message_id}))
        if message_id in doomed:
            doomed.discard(message_id)
            raise Crash(f"consumer died inside the transaction of {message_id}")

    base = prism_env.pattern_config if isinstance(prism_env.pattern_config, InboxConfig) else InboxConfig()
    config = base.model_copy(update={"processed_prefix": ns.name("processed") + "/", "message_id_header": ID})
    return Inbox(prism_env.driver("store").transactions(), handler, config)


async def effects_per_id(prism_env: PrismEnv, ns: Namespace) -> dict[str, int]:
    log, name = prism_env.driver("store").log(), ns.name("effects")
    counts: dict[str, int] = {}
    offset = 0
    while records := await log.read(name, offset, limit=100):
        for record in records:
            counts[record.message.headers[ID]] = counts.get(record.message.headers[ID], 0) + 1
        offset = records[-1].offset + 1
    return counts


async def send_copies(prism_env: PrismEnv, queue_name: str, message_id: str, copies: int) -> None:
    queue = prism_env.driver("messaging").queue()
    for _ in range(copies):
        await queue.send(queue_name, Message(message_id.encode(), {ID: message_id}))


async def drain(consumer: InboxConsumer) -> list[Outcome]:
    outcomes = []
    while (outcome := await consumer.poll(wait=DRAIN_WAIT)) is not None:
        outcomes.append(outcome)
    return outcomes


def consumer_of(prism_env: PrismEnv, inbox: Inbox, queue_name: str) -> InboxConsumer:
    return InboxConsumer(prism_env.driver("messaging").queue(), queue_name, inbox)


# --- duplicates and redelivery ---------------------------------------------------------------


@given(copies=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5))
async def test_duplicate_sends_apply_once(prism_env: PrismEnv, copies: list[int]) -> None:
    """A producer that resends (at-least-once publishing) gives the consumer copies of one id."""
    async with prism_env.example() as ns:
        inbox, queue_name = make_inbox(prism_env, ns), ns.name("in")
        ids = [f"m{i}" for i in range(len(copies))]
        for message_id, n in zip(ids, copies, strict=True):
            await send_copies(prism_env, queue_name, message_id, n)
        outcomes = await drain(consumer_of(prism_env, inbox, queue_name))
        assert outcomes.count(Outcome.APPLIED) == len(ids)
        assert outcomes.count(Outcome.DUPLICATE) == sum(copies) - len(ids)
        assert await effects_per_id(prism_env, ns) == dict.fromkeys(ids, 1)


async def test_crash_between_commit_and_ack(prism_env: PrismEnv) -> None:
    """The consumer commits, then dies before acking: the queue hands the message out again,
    and the second consumer must find the record and apply nothing."""
    ns = prism_env.ns
    inbox = make_inbox(prism_env, ns)
    queue, queue_name = prism_env.driver("messaging").queue(), ns.name("in")
    await send_copies(prism_env, queue_name, "m1", 1)
    delivery = await queue.receive(queue_name, wait=1.0, visibility_timeout=SHORT_VISIBILITY)
    assert delivery is not None
    assert await inbox.process("m1", delivery.message) is Outcome.APPLIED
    prism_env.faults["crash-before-ack"] += 1  # no ack: this consumer is gone
    assert await inbox.processed("m1")

    survivor = consumer_of(prism_env, inbox, queue_name)
    again = await survivor.poll(wait=SHORT_VISIBILITY + 5.0)
    assert again is Outcome.DUPLICATE, "the redelivered copy was not recognised"
    assert await drain(survivor) == []
    assert await effects_per_id(prism_env, ns) == {"m1": 1}


@prism_suite(
    "inbox",
    store=Slot.needs("transactions", "keyvalue", "log", durable=True),
    messaging=Slot.needs("queue"),
)
async def test_store_killed_between_commit_and_ack(prism_env: PrismEnv) -> None:
    """The store's server is SIGKILLed and restarted after the commit, before the ack: the
    record must survive, so the redelivered copy is a duplicate. Only durable stores are asked
    (this test's own slots); one without process control (embedded) is reconnected instead."""
    ns = prism_env.ns
    queue_name = ns.name("in")
    await send_copies(prism_env, queue_name, "m1", 1)
    delivery = (
        await prism_env.driver("messaging").queue().receive(queue_name, wait=1.0, visibility_timeout=SHORT_VISIBILITY)
    )
    assert delivery is not None
    assert await make_inbox(prism_env, ns).process("m1", delivery.message) is Outcome.APPLIED
    killed = prism_env.control("store") is not None
    await prism_env.restart("store")  # the queue's server too, when one backend fills both slots
    if killed:
        prism_env.faults["kill"] += 1
    survivor = consumer_of(prism_env, make_inbox(prism_env, ns), queue_name)  # the new drivers
    assert await survivor.poll(wait=SHORT_VISIBILITY + 10.0) is Outcome.DUPLICATE
    assert await effects_per_id(prism_env, ns) == {"m1": 1}


async def test_crash_inside_the_transaction_applies_nothing(prism_env: PrismEnv) -> None:
    """The handler wrote the effect, then the consumer died before the commit: nothing of it
    may remain, and the redelivery applies it once."""
    ns = prism_env.ns
    inbox = make_inbox(prism_env, ns, fail_after_effect={"m1"})
    queue_name = ns.name("in")
    await send_copies(prism_env, queue_name, "m1", 1)
    quick = inbox.config.model_copy(update={"visibility_timeout": SHORT_VISIBILITY})
    consumer = InboxConsumer(
        prism_env.driver("messaging").queue(), queue_name, Inbox(inbox.transactions, inbox.handler, quick)
    )
    with pytest.raises(Crash):
        await consumer.poll(wait=1.0)
    prism_env.faults["crash-in-transaction"] += 1
    assert await effects_per_id(prism_env, ns) == {}, "a rolled-back transaction left its side effect"
    assert not await inbox.processed("m1"), "a rolled-back transaction left its processed-id record"
    assert await consumer.poll(wait=SHORT_VISIBILITY + 5.0) is Outcome.APPLIED
    assert await effects_per_id(prism_env, ns) == {"m1": 1}


# --- concurrent consumers of one id ----------------------------------------------------------


@given(consumers=st.integers(min_value=2, max_value=6))
async def test_concurrent_consumers_of_one_id(prism_env: PrismEnv, consumers: int) -> None:
    """Copies of one id processed at the same moment: each reads "not processed", each writes
    the record; the transactions contract must let exactly one of them commit its effect."""
    async with prism_env.example() as ns:
        inbox = make_inbox(prism_env, ns, pause=0.02)
        message = Message(b"m1", {ID: "m1"})
        outcomes = await asyncio.gather(*(inbox.process("m1", message) for _ in range(consumers)))
        assert sorted(outcomes) == sorted([Outcome.APPLIED] + [Outcome.DUPLICATE] * (consumers - 1))
        assert await effects_per_id(prism_env, ns) == {"m1": 1}


async def test_competing_consumers_through_the_queue(prism_env: PrismEnv) -> None:
    """Several consumers polling one queue that holds duplicates of a few ids."""
    ns = prism_env.ns
    inbox, queue_name = make_inbox(prism_env, ns, pause=0.02), ns.name("in")
    ids = [f"m{i}" for i in range(5)]
    for message_id in ids:
        await send_copies(prism_env, queue_name, message_id, 3)
    results = await asyncio.gather(*(drain(consumer_of(prism_env, inbox, queue_name)) for _ in range(4)))
    outcomes = [outcome for result in results for outcome in result]
    assert outcomes.count(Outcome.APPLIED) == len(ids)
    assert len(outcomes) == 3 * len(ids)
    assert await effects_per_id(prism_env, ns) == dict.fromkeys(ids, 1)


# --- a reused id -----------------------------------------------------------------------------


async def test_reused_id_for_another_message_is_refused(prism_env: PrismEnv) -> None:
    ns = prism_env.ns
    inbox = make_inbox(prism_env, ns)
    assert await inbox.process("m1", Message(b"first", {ID: "m1"})) is Outcome.APPLIED
    with pytest.raises(MessageIdReused):
        await inbox.process("m1", Message(b"second", {ID: "m1"}))
    assert await inbox.process("m1", Message(b"first", {ID: "m1"})) is Outcome.DUPLICATE
    assert await effects_per_id(prism_env, ns) == {"m1": 1}


# --- a recorded history, judged by the suite's own checker -------------------------------------


def exactly_once(history: History, effects: dict[str, int]) -> Verdict:
    """Every id whose processing was acknowledged (an ``ok`` op) has exactly one effect; an id
    never acknowledged has at most one. Witness: the id's operations."""
    by_id: dict[str, list[Pair]] = {}
    for pair in history.pairs():
        if pair.f == "process" and pair.key is not None:
            by_id.setdefault(pair.key, []).append(pair)
    found: dict[str, list[Anomaly]] = {"lost-effect": [], "duplicate-effect": []}
    for message_id, pairs in by_id.items():
        applied = effects.get(message_id, 0)
        witness = history.subhistory(pairs)
        if applied > 1:
            found["duplicate-effect"].append(Anomaly("duplicate-effect", f"{message_id}: {applied} effects", witness))
        elif applied == 0 and any(p.ok for p in pairs):
            found["lost-effect"].append(Anomaly("lost-effect", f"{message_id}: acknowledged, no effect", witness))
    return suite_verdict("exactly-once-effects", found, {"ids": len(by_id), "effects": sum(effects.values())})


@given(
    schedule=st.lists(
        st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.sampled_from(["ack", "crash-before-ack", "crash-in-tx"])),
        min_size=1,
        max_size=12,
    )
)
async def test_recorded_schedule_is_exactly_once(prism_env: PrismEnv, schedule: list[tuple[str, str]]) -> None:
    """Deliveries of a few ids, each ending in an ack or a crash, recorded as a history; then
    every id is delivered once more (the queue's redelivery) and the history is judged."""
    async with prism_env.example() as ns:
        doomed: set[str] = set()
        inbox = make_inbox(prism_env, ns, fail_after_effect=doomed)
        history = History()
        for i, (message_id, ending) in enumerate([*schedule, *((m, "ack") for m in ("m1", "m2", "m3"))]):
            if ending == "crash-in-tx":
                doomed.add(message_id)
            try:
                async with history.record(f"consumer-{i}", "process", key=message_id, value=ending):
                    await inbox.process(message_id, Message(message_id.encode(), {ID: message_id}))
            except Crash:
                prism_env.faults["crash-in-transaction"] += 1
            else:
                if ending == "crash-before-ack":
                    prism_env.faults["crash-before-ack"] += 1
        verdict = prism_env.record_verdict(exactly_once(history, await effects_per_id(prism_env, ns)))
        verdict.assert_valid()
        assert verdict.counts["effects"] == 3


def test_the_checker_can_fail() -> None:
    """The checker itself, on effects that break the guarantee (no backend involved)."""
    history = History()
    history.invoke("c1", "process", key="m1").ok()
    history.invoke("c2", "process", key="m2").ok()
    verdict = exactly_once(history, {"m1": 2})
    assert set(verdict.anomalies) == {"lost-effect", "duplicate-effect"}
    assert not verdict.valid


# --- the registration names this suite ---------------------------------------------------------


def test_registration_names_this_suite() -> None:
    """Nothing else checks it: a registration whose ``suites`` misses this suite's name would
    list no proof in ``prism-testkit patterns``, and namespace files would not run the suite."""
    from prism_testkit.registry.patterns import load_patterns

    from .. import SPEC, SUITE

    assert load_patterns()["inbox"] == SPEC
    assert SUITE in SPEC.suites
    assert set(pytestmark.args[0].slots) <= set(SPEC.slots)
