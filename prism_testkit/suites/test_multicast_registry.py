"""Acceptance suite of the multicast registry (MEMO-006's slot example, RFC-025's lifecycle example).

Runs once per (registry x messaging) combination: a key-value store with scan holds the
identities, a queue or pub/sub carries the copies. Written against the guarantees, each test
naming the bug it catches:

* register / update / deregister / enumerate agree with a reference model, for every filter
  operator and for values of every kind (numbers, strings, booleans, ``True`` is not ``1``);
* a multicast reaches exactly the identities the model says match, once each, with the
  caller's payload and headers, and reports one outcome per recipient;
* outcomes are exact when the messaging backend fails for some identities (failures
  injected in a wrapper of the real messaging interface, as the claim check suite does);
* membership is decided when the multicast begins: an identity registered before it gets the
  copy, one whose TTL ran out or that was deregistered before it does not, one whose TTL runs
  out while the multicast reads the registry still does; racing registrations land at most once;
* TTL edges on the registry's own (injected) clock: a record the backend still stores is
  invisible from the instant it expires; only register, refresh and an update given a TTL
  move an expiry (``default_ttl`` when none is given, never reads or deliveries), and a
  registry backend without ``keyvalue.ttl`` still stores every registration;
* registries around common scan page sizes; bad input gets typed errors and changes nothing;
* the lifecycle: nothing before start, stop drains in-flight multicasts within its bound or
  forces them and says what it left.

Time is injected (``ManualClock``) wherever a TTL is judged, so no test sleeps to let one run
out; waits are on the thing awaited (a fence message behind the copies, an event).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import ConnectionLost, NotSupported, PayloadTooLarge
from prism_testkit.faults.interpose import Call, Interposed
from prism_testkit.interfaces import KeyValue, PubSub, Queue, QueueDelivery, Subscription
from prism_testkit.isolation import Namespace
from prism_testkit.pattern_sdk.lifecycle import HealthStatus, LifecycleState, NotStarted, PatternStopped
from prism_testkit.patterns.multicast_registry import (
    IDENTITY_HEADER,
    MULTICAST_ID_HEADER,
    OPERATORS,
    IdentityNotFound,
    InvalidFilter,
    InvalidIdentity,
    InvalidMetadata,
    MulticastRegistry,
    MulticastRegistryConfig,
    MulticastRegistryError,
    MulticastResult,
)
from prism_testkit.simulation.clock import ManualClock

from ._helpers import drain_queue, drain_subscription, prism_settings

pytestmark = prism_suite(
    "multicast_registry",
    registry=Slot.needs("keyvalue", "keyvalue.scan"),
    messaging=Slot.one_of("queue", "pubsub"),
)

Kind = Literal["queue", "pubsub"]
KINDS: list[Kind] = ["queue", "pubsub"]
Scalar = str | int | float | bool
START = 1_800_000_000.0  # the fake clock's first reading (a wall-clock-like number)


# --- the reference model -------------------------------------------------------------------


def _kind(value: object) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "str"


def _same(a: object, b: object) -> bool:
    return _kind(a) == _kind(b) and a == b


def model_matches(metadata: Mapping[str, Scalar], where: Mapping[str, Any]) -> bool:
    """The documented filter semantics, written independently of the pattern's code."""
    for name, rule in where.items():
        rules = rule.items() if isinstance(rule, Mapping) else [("eq", rule)]
        for op, operand in rules:
            has = name in metadata
            value = metadata.get(name)
            if op == "exists":
                ok = has == operand
            elif op == "ne":
                ok = not has or not _same(value, operand)
            elif op == "nin":
                ok = not has or all(not _same(value, o) for o in operand)
            elif not has:
                ok = False
            elif op == "eq":
                ok = _same(value, operand)
            elif op == "in":
                ok = any(_same(value, o) for o in operand)
            elif op == "prefix":
                ok = isinstance(value, str) and value.startswith(operand)
            else:
                ok = (
                    _kind(value) == _kind(operand)
                    and {
                        "lt": value < operand,
                        "le": value <= operand,
                        "gt": value > operand,
                        "ge": value >= operand,
                    }[op]
                )
            if not ok:
                return False
    return True


@dataclass
class Model:
    """What the registry must hold: identity -> (metadata, expires_at)."""

    clock: ManualClock
    entries: dict[str, tuple[dict[str, Scalar], float | None]] = field(default_factory=dict)

    def live(self) -> dict[str, dict[str, Scalar]]:
        now = self.clock.now
        return {i: m for i, (m, exp) in self.entries.items() if exp is None or now < exp}

    def matching(self, where: Mapping[str, Any] | None) -> set[str]:
        return {i for i, m in self.live().items() if model_matches(m, where or {})}

    def register(self, identity: str, metadata: Mapping[str, Scalar], ttl: float | None) -> None:
        self.entries[identity] = (dict(metadata), None if ttl is None else self.clock.now + ttl)

    def update(self, identity: str, changes: Mapping[str, Scalar | None], replace: bool) -> bool:
        if identity not in self.live():
            return False
        metadata, expires = self.entries[identity]
        merged = {} if replace else dict(metadata)
        for name, value in changes.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        self.entries[identity] = (merged, expires)
        return True

    def deregister(self, identity: str) -> None:
        self.entries.pop(identity, None)


# --- strategies ----------------------------------------------------------------------------

POOL = [f"id-{i}" for i in range(8)] + ["a.b@c:d_e", "Z9"]
FIELDS = ["region", "load", "role", "beta"]
scalars: st.SearchStrategy[Scalar] = st.one_of(
    st.sampled_from(["eu", "eu-west", "us", "", "E"]),
    st.integers(-2, 2),
    st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.0]),
    st.booleans(),
)
metadata_maps = st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=4)
ttls = st.sampled_from([None, 5.0, 10.0])


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from(OPERATORS))
    if op == "exists":
        return {"exists": draw(st.booleans())}
    if op in ("in", "nin"):
        return {op: draw(st.lists(scalars, max_size=3))}
    if op == "prefix":
        return {"prefix": draw(st.sampled_from(["", "e", "eu", "u", "E"]))}
    if op in ("lt", "le", "gt", "ge"):
        return {op: draw(st.one_of(st.integers(-2, 2), st.sampled_from([0.5, 1.0]), st.sampled_from(["e", "eu", "z"])))}
    operand = draw(scalars)
    return operand if op == "eq" and draw(st.booleans()) else {op: operand}


filters = st.dictionaries(st.sampled_from(FIELDS), conditions(), max_size=2)


@dataclass(frozen=True)
class Register:
    identity: str
    metadata: dict[str, Scalar]
    ttl: float | None


@dataclass(frozen=True)
class Update:
    identity: str
    changes: dict[str, Scalar | None]
    replace: bool


@dataclass(frozen=True)
class Deregister:
    identity: str


@dataclass(frozen=True)
class Advance:
    seconds: float


identities = st.sampled_from(POOL)
operations = st.lists(
    st.one_of(
        st.builds(Register, identities, metadata_maps, ttls),
        st.builds(Register, identities, metadata_maps, ttls),
        st.builds(
            Update,
            identities,
            st.dictionaries(st.sampled_from(FIELDS), st.none() | scalars, max_size=2),
            st.booleans(),
        ),
        st.builds(Deregister, identities),
        # around the TTLs above: just before, at, and just after an expiry
        st.builds(Advance, st.sampled_from([1.0, 4.0, 4.999, 5.0, 0.001])),
    ),
    max_size=12,
)


# --- plumbing ------------------------------------------------------------------------------


def messaging_of(prism_env: PrismEnv, kind: Kind) -> Queue | PubSub:
    driver = prism_env.driver("messaging")
    if not driver.supports(Capability(kind)):
        pytest.skip(f"{driver.name} does not provide {kind}")
    return driver.queue() if kind == "queue" else driver.pubsub()


def some_kind(prism_env: PrismEnv) -> Kind:
    """The messaging interface a test that is not about the interface uses (queue first)."""
    return "queue" if prism_env.driver("messaging").supports(Capability.QUEUE) else "pubsub"


def config_for(ns: Namespace, **overrides: Any) -> MulticastRegistryConfig:
    settings: dict[str, Any] = {
        "key_prefix": ns.name("reg") + "/",
        "destination_prefix": ns.name("inbox") + "-",
        "graceful_timeout": patience.bound("calm-op"),
        # TTLs are judged on a fake clock: the backend must not evict on the real one meanwhile
        "eviction_grace": 3600.0,
    }
    settings.update(overrides)
    return MulticastRegistryConfig(**settings)


def registry_on(
    prism_env: PrismEnv,
    ns: Namespace,
    kind: Kind,
    *,
    clock: ManualClock | None = None,
    messaging: Queue | PubSub | None = None,
    kv: KeyValue | None = None,
    **overrides: Any,
) -> MulticastRegistry:
    return MulticastRegistry(
        kv if kv is not None else prism_env.driver("registry").keyvalue(),
        messaging if messaging is not None else messaging_of(prism_env, kind),
        config_for(ns, **overrides),
        clock=clock or ManualClock(START),
    )


@asynccontextmanager
async def running(registry: MulticastRegistry) -> AsyncIterator[MulticastRegistry]:
    await registry.start()
    try:
        yield registry
    finally:
        if registry.state is LifecycleState.RUNNING:
            await registry.stop()


class Inboxes:
    """Each identity's side of the messaging slot: its queue, or a subscription to its topic
    opened before the multicast (pub/sub keeps nothing for late subscribers).

    :meth:`take` sends a fence behind whatever the multicast sent and receives until the fence,
    then briefly for stragglers: what it returns is everything that arrived for the identity."""

    def __init__(self, prism_env: PrismEnv, kind: Kind, registry: MulticastRegistry) -> None:
        self.kind = kind
        self.registry = registry
        self.raw = messaging_of(prism_env, kind)
        self.subs: dict[str, Subscription] = {}

    async def listen(self, identities: list[str]) -> None:
        if self.kind == "pubsub":
            assert isinstance(self.raw, PubSub)
            for identity in identities:
                if identity not in self.subs:
                    self.subs[identity] = await self.raw.subscribe(self.registry.destination(identity))

    async def close(self) -> None:
        for sub in self.subs.values():
            await sub.close()
        self.subs.clear()

    async def take(self, identity: str) -> list[Message]:
        destination = self.registry.destination(identity)
        token = clocks.fresh_uuid().hex
        got: list[Message] = []
        fence = Message(b"fence", {"fence": token})
        if isinstance(self.raw, Queue) and self.kind == "queue":
            await self.raw.send(destination, fence)
            while True:
                delivery: QueueDelivery | None = await self.raw.receive(destination, wait=patience.bound("calm-op"))
                assert delivery is not None, f"{identity}: the fence sent behind the multicast never arrived"
                await self.raw.ack(destination, delivery)
                if delivery.message.headers.get("fence") == token:
                    break
                got.append(delivery.message)
            got.extend(d.message for d in await drain_queue(self.raw, destination, wait=0.05))
            return got
        assert isinstance(self.raw, PubSub)
        sub = self.subs[identity]
        await self.raw.publish(destination, fence)
        while True:
            message = await sub.receive(patience.bound("calm-op"))
            assert message is not None, f"{identity}: the fence published behind the multicast never arrived"
            if message.headers.get("fence") == token:
                break
            got.append(message)
        got.extend(await drain_subscription(sub, wait=0.05))
        return got


@asynccontextmanager
async def inboxes(prism_env: PrismEnv, kind: Kind, registry: MulticastRegistry) -> AsyncIterator[Inboxes]:
    boxes = Inboxes(prism_env, kind, registry)
    try:
        yield boxes
    finally:
        await boxes.close()


def copies_of(messages: list[Message], result: MulticastResult) -> list[Message]:
    return [m for m in messages if m.headers.get(MULTICAST_ID_HEADER) == result.multicast_id]


async def assert_reached_exactly(
    boxes: Inboxes, result: MulticastResult, expected: set[str], everyone: list[str], sent: Message
) -> None:
    """The result names exactly ``expected`` as delivered recipients, and each of them (and no
    one else of ``everyone``) received exactly one copy of ``sent`` from this multicast."""
    assert set(result.outcomes) == expected, (
        f"recipients {sorted(result.outcomes)} differ from the matching live identities {sorted(expected)}: "
        f"missing {sorted(expected - set(result.outcomes))}, extra {sorted(set(result.outcomes) - expected)}"
    )
    assert result.failed == {}, f"deliveries failed with nothing injected: {result.failed}"
    for identity in everyone:
        copies = copies_of(await boxes.take(identity), result)
        want = 1 if identity in expected else 0
        assert len(copies) == want, f"{identity} received {len(copies)} copies of the multicast, expected {want}"
        for copy in copies:
            assert bytes(copy.payload) == bytes(sent.payload), f"{identity} received another payload"
            assert copy.headers.get(IDENTITY_HEADER) == identity, f"{identity} received a copy addressed elsewhere"
            for name, value in sent.headers.items():
                assert copy.headers.get(name) == value, f"{identity}: header {name!r} of the message was not kept"


async def apply(registry: MulticastRegistry, model: Model, op: Register | Update | Deregister | Advance) -> None:
    if isinstance(op, Register):
        await registry.register(op.identity, op.metadata, ttl=op.ttl)
        model.register(op.identity, op.metadata, op.ttl)
    elif isinstance(op, Update):
        if op.replace and None in op.changes.values():  # None removes a field; it is no value to replace with
            with pytest.raises(InvalidMetadata):
                await registry.update(op.identity, op.changes, replace=True)
        elif model.update(op.identity, op.changes, op.replace):
            await registry.update(op.identity, op.changes, replace=op.replace)
        else:
            with pytest.raises(IdentityNotFound):
                await registry.update(op.identity, op.changes, replace=op.replace)
    elif isinstance(op, Deregister):
        was_live = op.identity in model.live()
        assert await registry.deregister(op.identity) is was_live, f"deregister({op.identity!r}) misreported"
        model.deregister(op.identity)
    else:
        model.clock.advance(op.seconds)


async def assert_agrees(registry: MulticastRegistry, model: Model, where: Mapping[str, Any] | None) -> None:
    found = await registry.enumerate(where)
    names = [r.identity for r in found]
    assert len(names) == len(set(names)), f"enumerate returned an identity twice: {names}"
    assert set(names) == model.matching(where), (
        f"enumerate({where!r}) gave {sorted(names)}, the model {sorted(model.matching(where))}"
    )
    live = model.live()
    for reg in found:
        assert dict(reg.metadata) == live[reg.identity], f"{reg.identity}: metadata {reg.metadata} != model"
        for name, value in reg.metadata.items():
            assert _kind(value) == _kind(live[reg.identity][name]), f"{reg.identity}.{name} changed kind"


# --- register / update / deregister / enumerate against the model --------------------------


@prism_settings
@given(ops=operations, wheres=st.lists(filters, min_size=1, max_size=3))
async def test_enumerate_agrees_with_the_model(prism_env: PrismEnv, ops: list[Any], wheres: list[Any]) -> None:
    """Bugs: a filter operator with the wrong semantics (``ne`` not matching an absent field,
    ``True`` equal to ``1``, ordering across kinds), an update that replaces instead of merging
    or ignores ``None`` removals, an expired identity listed, expiry off by one at the
    boundary (``<=`` instead of ``<``), a deregistered identity still listed."""
    kind = some_kind(prism_env)
    async with prism_env.example() as ns:
        clock = ManualClock(START)
        model = Model(clock)
        async with running(registry_on(prism_env, ns, kind, clock=clock)) as registry:
            for op in ops:
                await apply(registry, model, op)
            await assert_agrees(registry, model, None)
            for where in wheres:
                await assert_agrees(registry, model, where)
            for identity in POOL:
                reg = await registry.get(identity)
                assert (reg is not None) == (identity in model.live()), f"get({identity!r}) disagrees with the model"


@pytest.mark.parametrize("op", [op for op in OPERATORS if op != "eq"] + ["eq", "shorthand"])
async def test_every_operator_against_the_model(prism_env: PrismEnv, op: str) -> None:
    """Each operator on a fixed population that separates its edge cases: absent fields,
    ``True`` against ``1``, ``1`` against ``1.0``, strings against numbers, equal bounds.
    Bugs: any operator's semantics swapped or loosened (``le`` as ``lt``, ``prefix`` on
    numbers, ``in`` matching by string form)."""
    kind = some_kind(prism_env)
    population: dict[str, dict[str, Scalar]] = {
        "none": {},
        "one-int": {"v": 1},
        "one-float": {"v": 1.0},
        "true": {"v": True},
        "false": {"v": False},
        "zero": {"v": 0},
        "str-1": {"v": "1"},
        "str-eu": {"v": "eu-west"},
        "str-e": {"v": "e"},
        "two": {"v": 2.5},
    }
    operands: dict[str, list[Any]] = {
        "ne": [1, True, "e"],
        "lt": [1, 2.5, "eu"],
        "le": [1, 2.5, "e"],
        "gt": [1, 0, "e"],
        "ge": [1, 2.5, "eu-west"],
        "in": [[1], [True, "e"], [], ["1", 2.5]],
        "nin": [[1], [False, "eu-west"], []],
        "exists": [True, False],
        "prefix": ["e", "", "eu", "1"],
        "eq": [1, 1.0, True, False, 0, "1", "e"],
        "shorthand": [1, True, "eu-west", 0],
    }
    clock = ManualClock(START)
    model = Model(clock)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock)) as registry:
        for identity, metadata in population.items():
            await registry.register(identity, metadata)
            model.register(identity, metadata, None)
        for operand in operands[op]:
            where = {"v": operand} if op == "shorthand" else {"v": {op: operand}}
            found = {r.identity for r in await registry.enumerate(where)}
            assert found == model.matching(where), (
                f"{where}: registry {sorted(found)}, model {sorted(model.matching(where))}"
            )
            assert found or op in ("in", "nin"), f"{where} matched nothing: the population does not exercise it"


async def test_conditions_on_one_field_all_hold(prism_env: PrismEnv) -> None:
    """Bug: only the first (or last) operator of a field's mapping is applied."""
    async with running(registry_on(prism_env, prism_env.ns, some_kind(prism_env))) as registry:
        for level in range(6):
            await registry.register(f"n{level}", {"level": level, "zone": "a" if level % 2 else "b"})
        found = await registry.enumerate({"level": {"ge": 1, "lt": 4}, "zone": "a"})
        assert [r.identity for r in found] == ["n1", "n3"]


async def test_a_metadata_update_changes_membership(prism_env: PrismEnv) -> None:
    """Bugs: an update that is not written (the old metadata still decides membership), a merge
    that drops untouched fields, a removal (``None``) ignored, an update that resets the TTL
    (or restarts it from the update)."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock)) as registry:
        await registry.register("alice", {"room": "lobby", "level": 3}, ttl=100)
        await registry.register("bob", {"room": "lobby", "level": 1})
        in_lobby = {"room": "lobby"}
        assert [r.identity for r in await registry.enumerate(in_lobby)] == ["alice", "bob"]
        clock.advance(40)  # an update keeps the expiry: it does not start alice's TTL again
        await registry.update("alice", {"room": "kitchen"})
        assert [r.identity for r in await registry.enumerate(in_lobby)] == ["bob"]
        alice = await registry.get("alice")
        assert alice is not None
        assert dict(alice.metadata) == {"room": "kitchen", "level": 3}
        assert alice.expires_at == START + 100, "an update without ttl changed the expiry"
        await registry.update("bob", {"level": None})
        assert [r.identity for r in await registry.enumerate({"level": {"exists": True}})] == ["alice"]
        await registry.update("bob", {"room": "kitchen", "x": 1}, replace=True)
        bob = await registry.get("bob")
        assert bob is not None
        assert dict(bob.metadata) == {"room": "kitchen", "x": 1}
        assert [r.identity for r in await registry.enumerate({"room": "kitchen"})] == ["alice", "bob"]
        async with inboxes(prism_env, kind, registry) as boxes:
            await boxes.listen(["alice", "bob"])
            sent = Message(b"to the kitchen", {"app": "1"})
            result = await registry.multicast(sent, {"room": "kitchen", "level": {"ge": 3}})
            await assert_reached_exactly(boxes, result, {"alice"}, ["alice", "bob"], sent)


# --- multicast -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_multicast_reaches_exactly_the_matching_identities_once(prism_env: PrismEnv, kind: Kind) -> None:
    """Bugs: a matching identity skipped (a scan page lost), a non-matching or expired one
    sent to, an identity sent twice (a scan returning a key twice), the payload or the
    caller's headers not carried, a copy addressed to another identity's destination."""
    clock = ManualClock(START)
    registry = registry_on(prism_env, prism_env.ns, kind, clock=clock)
    everyone = ["a1", "a2", "b1", "gone", "late", "old"]
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(everyone)
        await registry.register("a1", {"team": "a", "n": 1})
        await registry.register("a2", {"team": "a", "n": 2}, ttl=10)
        await registry.register("b1", {"team": "b", "n": 1})
        await registry.register("gone", {"team": "a"})
        await registry.register("old", {"team": "a"}, ttl=5)
        await registry.deregister("gone")
        clock.advance(5)  # old expires now; a2 has 5 s left
        await registry.register("late", {"team": "a"})
        sent = Message(b"\x00payload\xff", {"trace": "t-1", "x": ""}, key="k")
        result = await registry.multicast(sent, {"team": "a"})
        await assert_reached_exactly(boxes, result, {"a1", "a2", "late"}, everyone, sent)
        assert result.started_at == clock.now
        everyone_result = await registry.multicast(Message(b"all"))
        await assert_reached_exactly(boxes, everyone_result, {"a1", "a2", "b1", "late"}, everyone, Message(b"all"))
        assert everyone_result.multicast_id != result.multicast_id
        nobody = await registry.multicast(Message(b"none"), {"team": "c"})
        assert nobody.outcomes == {}


@prism_settings
@given(ops=operations, where=filters)
async def test_multicast_agrees_with_the_model(prism_env: PrismEnv, ops: list[Any], where: Any) -> None:
    """Bug: membership of a multicast computed differently from enumerate (another clock
    reading, the filter not applied, expiry not checked on the send path)."""
    kind = some_kind(prism_env)
    async with prism_env.example() as ns:
        clock = ManualClock(START)
        model = Model(clock)
        registry = registry_on(prism_env, ns, kind, clock=clock)
        async with running(registry), inboxes(prism_env, kind, registry) as boxes:
            await boxes.listen(POOL)
            for op in ops:
                await apply(registry, model, op)
            sent = Message(b"m", {"h": "v"})
            result = await registry.multicast(sent, where)
            await assert_reached_exactly(boxes, result, model.matching(where), POOL, sent)


class FaultyMessaging(Interposed[Queue | PubSub]):
    """The real messaging interface, with failures injected per destination: ``fails[d]``
    sends to ``d`` raise (``error``) before reaching the backend; ``lost_acks`` reach the
    backend and then raise (an outcome the sender cannot know); ``script[d]`` decides each
    next send to ``d`` in turn (an exception: raised before it reaches the backend; ``None``:
    it goes through); ``hold`` makes sends (to ``held`` destinations only, when given) wait for
    an event (in flight until released)."""

    def __init__(self, inner: Queue | PubSub, surface: type, verb: str, to: str) -> None:
        super().__init__(inner, surface=surface, before={verb: self._before_send}, after={verb: self._after_send})
        self.to = to  # the send's parameter naming its destination
        self.fails: dict[str, int] = {}
        self.error: Exception = ConnectionLost("injected: the broker connection dropped")
        self.lost_acks: set[str] = set()
        self.script: dict[str, list[Exception | None]] = {}
        self.hold: asyncio.Event | None = None
        self.held: set[str] | None = None  # the destinations ``hold`` holds (None: every one)
        self.holding = 0
        self.started = asyncio.Event()
        self.calls: dict[str, int] = {}

    async def _before_send(self, call: Call) -> None:
        destination = str(call.arguments[self.to])
        self.calls[destination] = self.calls.get(destination, 0) + 1
        if self.hold is not None and (self.held is None or destination in self.held):
            self.holding += 1
            self.started.set()
            await self.hold.wait()
        if self.fails.get(destination, 0) > 0:
            self.fails[destination] -= 1
            raise self.error
        if self.script.get(destination):
            scripted = self.script[destination].pop(0)
            if scripted is not None:
                raise scripted

    def _after_send(self, call: Call, result: object) -> None:
        if str(call.arguments[self.to]) in self.lost_acks:
            raise ConnectionLost("injected: the connection dropped before the answer")


class FaultyQueue(FaultyMessaging):
    def __init__(self, inner: Queue) -> None:
        super().__init__(inner, Queue, "send", "queue")


class FaultyPubSub(FaultyMessaging):
    def __init__(self, inner: PubSub) -> None:
        super().__init__(inner, PubSub, "publish", "topic")


def faulty(prism_env: PrismEnv, kind: Kind) -> FaultyQueue | FaultyPubSub:
    raw = messaging_of(prism_env, kind)  # the driver's queue() for "queue", else its pubsub()
    return FaultyQueue(cast(Queue, raw)) if kind == "queue" else FaultyPubSub(cast(PubSub, raw))


@pytest.mark.parametrize("kind", KINDS)
async def test_outcomes_are_exact_when_sends_fail(prism_env: PrismEnv, kind: Kind) -> None:
    """Bugs: one failing send fails the whole multicast (or aborts the rest), a failure
    reported as delivered, a reason lost, a retry that delivers twice, a definite refusal
    (``PayloadTooLarge``) retried, a send of unknown outcome reported as a definite failure."""
    messaging = faulty(prism_env, kind)
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging, attempts=3, retry_backoff=0.0)
    dedup = kind == "queue" and Capability.QUEUE_DEDUP in prism_env.spec("messaging").capabilities
    everyone = [f"p{i}" for i in range(6)]
    dest = registry.destination
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(everyone)
        for identity in everyone:
            await registry.register(identity, {"on": True})
        messaging.fails = {dest("p1"): 99, dest("p2"): 2}  # p1 never gets through, p2 on the third try
        messaging.lost_acks = {dest("p3")}
        sent = Message(b"hello")
        result = await registry.multicast(sent, {"on": True})
        assert set(result.outcomes) == set(everyone)
        assert result.delivered == ["p0", "p2", "p4", "p5"], f"delivered: {result.delivered}, failed: {result.failed}"
        p1, p3 = result.outcomes["p1"], result.outcomes["p3"]
        assert p1.status == "failed"
        assert p1.attempts == 3
        assert "broker connection dropped" in (p1.reason or "")
        assert p1.definite is False, "a ConnectionLost says nothing about whether the broker took the message"
        assert (p3.status, p3.definite) == ("failed", False), "a send that reached the backend was called definite"
        assert result.outcomes["p2"].attempts == 3
        assert result.outcomes["p0"].attempts == 1
        for identity in everyone:
            copies = [
                m for m in await boxes.take(identity) if m.headers.get(MULTICAST_ID_HEADER) == result.multicast_id
            ]
            # p3's three attempts each reached the backend: one copy where the queue deduplicates
            # by prism-message-id (queue.dedup), else three
            want = {"p1": 0, "p3": 1 if dedup else 3}.get(identity, 1)
            assert len(copies) == want, f"{identity} received {len(copies)} copies, expected {want}"
        assert registry.metrics.deliveries == 4
        assert registry.metrics.delivery_failures == 2
        assert registry.metrics.delivery_retries == 2 + 2 + 2

        messaging.fails, messaging.lost_acks = {dest("p4"): 1}, set()
        messaging.error = PayloadTooLarge(10, 5)
        refused = await registry.multicast(sent, {"on": True})
        p4 = refused.outcomes["p4"]
        assert (p4.status, p4.attempts, p4.definite) == ("failed", 1, True), f"a refusal was retried: {p4}"
        assert "PayloadTooLarge" in (p4.reason or "")
        assert refused.delivered == ["p0", "p1", "p2", "p3", "p5"]


async def test_every_send_failing_still_reports_each_identity(prism_env: PrismEnv) -> None:
    """Bug: the first failure propagates out of multicast() and the outcomes are lost."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging)
    async with running(registry):
        for identity in ("x", "y", "z"):
            await registry.register(identity)
            messaging.fails[registry.destination(identity)] = 1
        result = await registry.multicast(Message(b"m"))
        assert result.delivered == []
        assert sorted(result.failed) == ["x", "y", "z"]
        assert all(o.reason and "injected" in o.reason for o in result.outcomes.values())


async def test_a_refusal_after_a_send_of_unknown_outcome_is_not_definite(prism_env: PrismEnv) -> None:
    """A first attempt that reached the backend but lost its answer, then a retry refused
    outright (``PayloadTooLarge``): the copy of the first attempt may be there, so the failure
    is not definite. Bug: ``definite`` judged from the last error alone, so a failure called
    definite (nothing sent) has in fact delivered a copy."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging, attempts=3, retry_backoff=0.0)
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(["u", "v"])
        await registry.register("u")
        await registry.register("v")
        messaging.lost_acks = {registry.destination("u")}
        messaging.script = {registry.destination("u"): [None, PayloadTooLarge(10, 5)]}
        result = await registry.multicast(Message(b"m"))
        u = result.outcomes["u"]
        assert (u.status, u.attempts) == ("failed", 2), f"u: {u}"
        assert "PayloadTooLarge" in (u.reason or "")
        arrived = copies_of(await boxes.take("u"), result)
        assert len(arrived) == 1, f"the first attempt's copy should be in u's inbox: {len(arrived)}"
        assert u.definite is False, "a failure reported definite (nothing sent) though a copy arrived"
        assert result.delivered == ["v"]


# --- races and TTL edges -------------------------------------------------------------------


class GatedKeyValue(Interposed[KeyValue]):
    """The registry's key-value store, whose scan stops at a gate once it has listed its keys
    (the multicast has begun and read the membership keys; the test then races it)."""

    def __init__(self, inner: KeyValue) -> None:
        super().__init__(inner, surface=KeyValue)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.gated = False

    # Not a hook: the gate sits inside the iteration, between listing the keys and handing
    # them out, so the scan hands out an iterator of its own.
    def scan(self, prefix: str) -> AsyncIterator[str]:
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        keys = [key async for key in self.inner.scan(prefix)]
        if self.gated:
            self.gated = False
            self.reached.set()
            await self.release.wait()
        for key in keys:
            yield key


async def test_membership_is_decided_when_the_multicast_begins(prism_env: PrismEnv) -> None:
    """Registrations racing a multicast. Bugs: an identity registered before the multicast
    began is missed; one whose TTL ran out before it began (still stored: the backend has not
    evicted it) or that was deregistered before it is sent to; one live when it began is
    dropped because time passed while the registry was read (expiry judged per read instead
    of at the start); an identity changed during the multicast is sent to twice."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    kv = GatedKeyValue(prism_env.driver("registry").keyvalue())
    registry = registry_on(prism_env, prism_env.ns, kind, clock=clock, kv=kv)
    everyone = ["before", "expired", "deregistered", "expiring", "raced-in", "raced-out", "moved"]
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(everyone)
        await registry.register("before", {"g": 1})
        await registry.register("expired", {"g": 1}, ttl=10)
        await registry.register("deregistered", {"g": 1})
        await registry.register("expiring", {"g": 1}, ttl=20)
        await registry.register("raced-out", {"g": 1})
        await registry.register("moved", {"g": 1})
        await registry.deregister("deregistered")
        clock.advance(10)  # "expired" ran out at this instant; "expiring" has 10 s left
        assert await kv.inner.get(registry.key("expired")) is not None, "the test needs the expired record stored"
        kv.gated = True
        sent = Message(b"race")
        multicast = asyncio.create_task(registry.multicast(sent, {"g": 1}))
        try:
            async with asyncio.timeout(patience.bound("calm-op")):
                await kv.reached.wait()
            # the multicast has begun and listed the keys; now time passes and others act
            clock.advance(15)  # "expiring" runs out while the multicast is under way
            await registry.register("raced-in", {"g": 1})
            await registry.deregister("raced-out")
            await registry.update("moved", {"g": 2})
        finally:
            kv.release.set()
        result = await multicast
        outcomes = set(result.outcomes)
        assert {"before", "expiring"} <= outcomes, f"missed a member of the start: {sorted(outcomes)}"
        assert not {"expired", "deregistered"} & outcomes, f"sent to a non-member of the start: {sorted(outcomes)}"
        assert result.started_at == START + 10
        assert result.failed == {}
        for identity in everyone:
            copies = [
                m for m in await boxes.take(identity) if m.headers.get(MULTICAST_ID_HEADER) == result.multicast_id
            ]
            assert len(copies) == (1 if identity in outcomes else 0), f"{identity}: {len(copies)} copies"


async def test_registrations_racing_a_multicast_land_at_most_once(prism_env: PrismEnv) -> None:
    """Concurrent registrations and a multicast, no gate: each registration that completed
    before the multicast was called is a recipient, the racing ones are or are not, none is
    sent to twice. Bug: a scan that repeats or loses keys while they are being added."""
    kind = some_kind(prism_env)
    registry = registry_on(prism_env, prism_env.ns, kind)
    settled = [f"s{i}" for i in range(10)]
    racing = [f"r{i}" for i in range(10)]
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(settled + racing)
        for identity in settled:
            await registry.register(identity, {"k": 1})

        async def register_racing() -> None:
            for identity in racing:
                await registry.register(identity, {"k": 1})

        racer = asyncio.create_task(register_racing())
        result = await registry.multicast(Message(b"r"), {"k": 1})
        await racer
        assert set(settled) <= set(result.outcomes), f"missed {sorted(set(settled) - set(result.outcomes))}"
        assert set(result.outcomes) <= set(settled + racing)
        for identity in settled + racing:
            copies = [
                m for m in await boxes.take(identity) if m.headers.get(MULTICAST_ID_HEADER) == result.multicast_id
            ]
            assert len(copies) == (1 if identity in result.outcomes else 0), f"{identity}: {len(copies)} copies"


@pytest.mark.parametrize("backend_ttl", [True, False])
async def test_ttl_edges_on_the_registry_clock(prism_env: PrismEnv, backend_ttl: bool) -> None:
    """Bugs: expiry judged with ``<=`` against now (an identity visible at its expiry instant,
    or hidden just before it), TTL taken as milliseconds or ignored, a refresh that does not
    extend the TTL, an update of an expired identity that resurrects it, a re-registration
    that keeps the old expiry."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock, backend_ttl=backend_ttl)) as registry:
        reg = await registry.register("t", {"a": 1}, ttl=30)
        assert reg.expires_at == START + 30
        await registry.register("forever", {"a": 1})
        clock.advance(30 - 1e-6)
        assert await registry.get("t") is not None, "visible until its expiry instant"
        assert [r.identity for r in await registry.enumerate({"a": 1})] == ["forever", "t"]
        clock.advance(1e-6)
        assert clock.now == START + 30
        assert await registry.get("t") is None, "still visible at its expiry instant"
        assert [r.identity for r in await registry.enumerate({"a": 1})] == ["forever"]
        with pytest.raises(IdentityNotFound):
            await registry.update("t", {"a": 2})
        with pytest.raises(IdentityNotFound):
            await registry.refresh("t", 30)
        assert await registry.get("t") is None, "a refused update resurrected the identity"
        assert await registry.deregister("t") is False, "deregistering an expired identity removed a live one"
        # re-registration starts a new TTL; refresh extends it from now
        await registry.register("t", {"a": 1}, ttl=5)
        clock.advance(4)
        refreshed = await registry.refresh("t", 5)
        assert refreshed.expires_at == clock.now + 5
        clock.advance(4)
        assert await registry.get("t") is not None, "a refresh did not extend the TTL"
        clock.advance(1)
        assert await registry.get("t") is None
        multicast = await registry.multicast(Message(b"m"), {"a": 1})
        assert set(multicast.outcomes) == {"forever"}


async def test_reads_and_multicasts_do_not_extend_a_ttl(prism_env: PrismEnv) -> None:
    """Only register, update with ``ttl`` and refresh move an expiry. Bugs: a read (``get``,
    ``enumerate``) or a delivered copy treated as a heartbeat (a sliding expiry), so an
    identity that stopped refreshing keeps receiving multicasts."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    registry = registry_on(prism_env, prism_env.ns, kind, clock=clock)
    async with running(registry), inboxes(prism_env, kind, registry) as boxes:
        await boxes.listen(["lease", "forever"])
        await registry.register("lease", {"a": 1}, ttl=10)
        await registry.register("forever", {"a": 1})
        clock.advance(6)
        reg = await registry.get("lease")
        assert reg is not None
        assert reg.expires_at == START + 10
        assert [r.identity for r in await registry.enumerate({"a": 1})] == ["forever", "lease"]
        reached = await registry.multicast(Message(b"while live"), {"a": 1})
        assert reached.delivered == ["forever", "lease"]
        clock.advance(4)  # START + 10: lease's TTL, as registered, has run out
        assert await registry.get("lease") is None, "a read or a multicast extended the TTL of 'lease'"
        assert [r.identity for r in await registry.enumerate()] == ["forever"], (
            "a read or a multicast extended the TTL of 'lease'"
        )
        after = await registry.multicast(Message(b"after"), {"a": 1})
        assert after.recipients == ["forever"], f"sent to 'lease' after its TTL ran out: {after.recipients}"
        assert len(copies_of(await boxes.take("lease"), after)) == 0


async def test_default_ttl_applies_when_none_is_given(prism_env: PrismEnv) -> None:
    """``default_ttl`` is the TTL of a registration that gives none, and what ``refresh``
    extends by. Bugs: ``default_ttl`` ignored (such identities never expire), a refresh without
    a TTL that does not extend, or makes the identity immortal."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock, default_ttl=10.0)) as registry:
        reg = await registry.register("d", {"a": 1})
        assert reg.expires_at == START + 10, f"default_ttl 10 s not applied: expires_at {reg.expires_at}"
        clock.advance(6)
        refreshed = await registry.refresh("d")
        assert refreshed.expires_at == clock.now + 10, "a refresh without a TTL did not extend by default_ttl"
        clock.advance(9)  # START + 15: past the first expiry, before the refreshed one
        assert [r.identity for r in await registry.enumerate()] == ["d"], "a refresh did not extend by default_ttl"
        clock.advance(1)  # START + 16: the refreshed expiry
        assert await registry.get("d") is None, "an identity registered without a TTL outlived default_ttl"
        result = await registry.multicast(Message(b"m"), {"a": 1})
        assert result.recipients == [], f"sent to an identity past its default_ttl: {result.recipients}"


async def test_an_update_with_ttl_none_never_expires(prism_env: PrismEnv) -> None:
    """``update(..., ttl=None)`` makes the identity permanent; leaving ``ttl`` out keeps the
    expiry. Bug: ``None`` confused with "not given", so the old expiry stays and the identity
    drops out of multicasts it was promised."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock)) as registry:
        await registry.register("p", {"a": 1}, ttl=10)
        await registry.register("k", {"a": 1}, ttl=10)
        permanent = await registry.update("p", {"b": 2}, ttl=None)
        assert permanent.expires_at is None, f"update(ttl=None) kept an expiry: {permanent.expires_at}"
        kept = await registry.update("k", {"b": 2})
        assert kept.expires_at == START + 10
        clock.advance(1000)
        reg = await registry.get("p")
        assert reg is not None, "an identity updated with ttl=None expired"
        assert dict(reg.metadata) == {"a": 1, "b": 2}
        assert await registry.get("k") is None
        result = await registry.multicast(Message(b"m"), {"b": 2})
        assert result.recipients == ["p"]


class TtlRefusingKeyValue(Interposed[KeyValue]):
    """The registry's key-value store as a backend without ``keyvalue.ttl`` answers: a put
    with a TTL is refused with ``NotSupported`` (nothing written), every other call passes."""

    def __init__(self, inner: KeyValue) -> None:
        super().__init__(inner, surface=KeyValue, before={"put": self._before_put})
        self.refused = 0

    def _before_put(self, call: Call) -> None:
        if call.arguments.get("ttl") is not None:
            self.refused += 1
            raise NotSupported("ttl-refusing", "keyvalue.ttl", "injected: put with a ttl")


async def test_a_registry_backend_without_ttl_stores_and_expires(prism_env: PrismEnv) -> None:
    """On a registry backend without ``keyvalue.ttl`` (any backend, seen through a wrapper that
    refuses TTL puts as such a backend does): every registration is still stored, the registry
    stops asking for a backend TTL and counts that once, and expiry is its own. Bug: the write
    that discovered the missing TTL lost (reported registered, never stored)."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    kv = TtlRefusingKeyValue(prism_env.driver("registry").keyvalue())
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock, kv=kv)) as registry:
        await registry.register("first", {"a": 1}, ttl=10)
        assert await registry.get("first") is not None, "the registration that met the missing TTL was not stored"
        await registry.register("second", {"a": 1}, ttl=10)
        await registry.register("forever", {"a": 1})
        assert [r.identity for r in await registry.enumerate()] == ["first", "forever", "second"]
        assert registry.metrics.backend_ttl_unsupported == 1
        assert kv.refused == 1, "the registry kept asking for a TTL the backend refused"
        clock.advance(10)
        result = await registry.multicast(Message(b"m"), {"a": 1})
        assert result.recipients == ["forever"]


async def test_expiry_with_the_backend_evicting_on_the_real_clock(prism_env: PrismEnv) -> None:
    """On the wall clock with no grace: whatever the backend does (evicts, or cannot: no
    ``keyvalue.ttl``), an identity is gone from every read once its TTL ran out, and the
    fallback to no backend TTL is counted. Bug: the registry trusts the backend to evict."""
    kind = some_kind(prism_env)
    ttl = 0.3
    config = config_for(prism_env.ns, eviction_grace=0.0)
    registry = MulticastRegistry(prism_env.driver("registry").keyvalue(), messaging_of(prism_env, kind), config)
    async with running(registry):
        reg = await registry.register("brief", {"a": 1}, ttl=ttl)
        await registry.register("stays", {"a": 1})
        supports_ttl = prism_env.driver("registry").supports(Capability.KEYVALUE_TTL)
        assert registry.metrics.backend_ttl_unsupported == (0 if supports_ttl else 1)
        assert reg.expires_at is not None

        async def expired() -> bool:
            return clocks.wall() >= reg.expires_at  # type: ignore[operator]

        await patience.until(expired, bool, what="the wall clock to pass the registration's expiry")
        assert await registry.get("brief") is None
        assert [r.identity for r in await registry.enumerate()] == ["stays"]
        result = await registry.multicast(Message(b"m"))
        assert set(result.outcomes) == {"stays"}


# --- large registries ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [255, 256, 257, 501])
async def test_large_registries_across_scan_pages(prism_env: PrismEnv, size: int) -> None:
    """Registries around common scan page sizes (SQL keyset pages of 256, Redis SCAN counts of
    500), with expired records interleaved so a page may end on one. Bugs: the last or first
    key of a page lost or repeated, a scan that stops after one page."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    registry = registry_on(prism_env, prism_env.ns, kind, clock=clock, max_concurrency=32)
    names = [f"n{i:04d}" for i in range(size)]
    gate = asyncio.Semaphore(16)

    async def add(i: int, name: str) -> None:
        async with gate:
            await registry.register(name, {"even": i % 2 == 0, "i": i}, ttl=10 if i % 7 == 3 else None)

    async with running(registry):
        await asyncio.gather(*(add(i, name) for i, name in enumerate(names)))
        clock.advance(10)
        live = {name for i, name in enumerate(names) if i % 7 != 3}
        listed = [r.identity for r in await registry.enumerate()]
        assert len(listed) == len(set(listed)), "an identity was listed twice"
        assert set(listed) == live, f"lost {sorted(live - set(listed))[:5]}, extra {sorted(set(listed) - live)[:5]}"
        assert registry.metrics.live_identities == len(live)
        even = {name for i, name in enumerate(names) if i % 2 == 0 and name in live}
        result = await registry.multicast(Message(b"big"), {"even": True})
        assert set(result.outcomes) == even
        assert result.failed == {}
        assert registry.metrics.deliveries == len(even)
        if kind == "queue":  # a few inboxes, first and last of the order, hold their one copy
            async with inboxes(prism_env, kind, registry) as boxes:
                for name in sorted(even)[:2] + sorted(even)[-2:]:
                    copies = await boxes.take(name)
                    assert [m.headers.get(MULTICAST_ID_HEADER) for m in copies] == [result.multicast_id]


# --- bad input -----------------------------------------------------------------------------

BAD_IDENTITIES: list[Any] = ["", " x", "a/b", "a b", "x" * 129, "é", "-lead", 7, None, b"bytes", "a\x00"]
BAD_METADATA: list[Any] = [
    {"x": [1]},
    {"x": {"y": 1}},
    {"x": None},
    {"x": float("nan")},
    {"x": math.inf},
    {"x": 2**60},
    {"": 1},
    {"1x": 1},
    {"x": "\ud800"},
    {"x": "y" * 2000},
    {f"f{i}": i for i in range(65)},
    ["x"],
    "x=1",
]
BAD_FILTERS: list[Any] = [
    {"x": {"like": "a"}},
    {"x": {"lt": True}},
    {"x": {"lt": None}},
    {"x": {"in": "abc"}},
    {"x": {"in": 5}},
    {"x": {"exists": 1}},
    {"x": {"prefix": 1}},
    {"x": {}},
    {"x": [1, 2]},
    {"x": {"eq": float("nan")}},
    {"": 1},
    [("x", 1)],
    "x == 1",
]


async def assert_unchanged(prism_env: PrismEnv, registry: MulticastRegistry, before: list[Any]) -> None:
    after = [(r.identity, dict(r.metadata), r.expires_at) for r in await registry.enumerate()]
    assert after == before, f"a refused call changed the registry: {before} -> {after}"
    keys = [k async for k in prism_env.driver("registry").keyvalue().scan(registry.config.key_prefix)]
    assert sorted(keys) == sorted(registry.key(i) for i, _, _ in before), f"stray keys after refused input: {keys}"


async def test_bad_input_gets_typed_errors_and_changes_nothing(prism_env: PrismEnv) -> None:
    """Bugs: an invalid identity, metadata value, TTL or filter written (or half written)
    before it is refused, refused with a bare exception instead of the typed error, an update
    of an unknown identity creating it, a bad filter treated as "match everything" (a
    multicast to everyone)."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging, max_ttl=100)
    async with running(registry):
        await registry.register("keep", {"x": 1}, ttl=50)
        before = [(r.identity, dict(r.metadata), r.expires_at) for r in await registry.enumerate()]
        for identity in BAD_IDENTITIES:
            with pytest.raises(InvalidIdentity):
                await registry.register(identity, {"x": 1})
            with pytest.raises(InvalidIdentity):
                await registry.deregister(identity)
            with pytest.raises(InvalidIdentity):
                await registry.update(identity, {"x": 2})
        for metadata in BAD_METADATA:
            with pytest.raises(InvalidMetadata):
                await registry.register("new", metadata)
            if isinstance(metadata, dict) and list(metadata.values()) != [None]:
                with pytest.raises(InvalidMetadata):
                    await registry.update("keep", metadata)
        for ttl in (0, -1, math.nan, math.inf, 101, "10", True):
            with pytest.raises(InvalidMetadata):
                await registry.register("new", {"x": 1}, ttl=ttl)  # type: ignore[arg-type]
            with pytest.raises(InvalidMetadata):
                await registry.update("keep", {"x": 2}, ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(InvalidMetadata):
            await registry.update("keep", {"x": None, "y": [1]})  # type: ignore[dict-item]  # a valid removal beside a bad value
        with pytest.raises(InvalidMetadata):
            await registry.update("keep", {"x": None}, replace=True)  # None is no value to replace with
        with pytest.raises(IdentityNotFound):
            await registry.update("nobody", {"x": 1})
        for where in BAD_FILTERS:
            with pytest.raises(InvalidFilter):
                await registry.enumerate(where)
            with pytest.raises(InvalidFilter):
                await registry.multicast(Message(b"m"), where)
        with pytest.raises(MulticastRegistryError):
            await registry.multicast(b"not a message")  # type: ignore[arg-type]
        assert messaging.calls == {}, f"refused multicasts sent: {messaging.calls}"
        await assert_unchanged(prism_env, registry, before)
        assert registry.metrics.rejected_inputs >= len(BAD_IDENTITIES) * 3 + len(BAD_FILTERS) * 2
        assert registry.metrics.registrations == 1
        assert registry.metrics.updates == 0


async def test_metadata_over_max_metadata_bytes_is_refused(prism_env: PrismEnv) -> None:
    """``max_metadata_bytes`` bounds an identity's metadata as JSON, on register and on the
    result of an update. Bugs: the limit ignored (any size written), or checked on an update's
    changes but not on the merged metadata."""
    kind = some_kind(prism_env)
    async with running(registry_on(prism_env, prism_env.ns, kind, max_metadata_bytes=64)) as registry:
        await registry.register("small", {"a": "x" * 20})
        before = [(r.identity, dict(r.metadata), r.expires_at) for r in await registry.enumerate()]

        async def refused(call: Any) -> bool:
            try:
                await call
            except InvalidMetadata:
                return True
            return False

        over = "metadata over max_metadata_bytes (64) was accepted"
        assert await refused(registry.register("big", {"a": "x" * 100})), over
        assert await refused(registry.register("small", {"a": "x" * 100})), over
        # each part fits, the merged metadata does not
        assert await refused(registry.update("small", {"b": "y" * 40})), f"{over} (an update's merge)"
        await assert_unchanged(prism_env, registry, before)
        assert registry.metrics.rejected_inputs == 3


async def test_foreign_and_corrupt_records_are_skipped_and_counted(prism_env: PrismEnv) -> None:
    """A key under the prefix that is not a registration (another writer, a torn value) must
    neither break a multicast to the others nor be sent to. Bug: one bad record aborts the
    enumeration, or a record naming another identity is trusted."""
    kind = some_kind(prism_env)
    kv = prism_env.driver("registry").keyvalue()
    async with running(registry_on(prism_env, prism_env.ns, kind)) as registry:
        await registry.register("good", {"a": 1})
        await registry.register("other", {"a": 1})
        copied = await kv.get(registry.key("other"))
        assert copied is not None
        await kv.put(registry.key("torn"), b'{"v":1,"identity":"torn","meta')
        await kv.put(registry.key("imposter"), copied)  # other's record under another key
        await kv.put(registry.key("bad name"), b"{}")
        result = await registry.multicast(Message(b"m"), {"a": 1})
        assert set(result.outcomes) == {"good", "other"}
        assert registry.metrics.corrupt_records == 3
        assert await registry.get("imposter") is None


# --- metrics and health --------------------------------------------------------------------


async def test_metrics_count_what_happened(prism_env: PrismEnv) -> None:
    """Bug: a counter not incremented, or incremented on a refused call; the in-flight gauge
    left up after a multicast."""
    kind = some_kind(prism_env)
    clock = ManualClock(START)
    async with running(registry_on(prism_env, prism_env.ns, kind, clock=clock)) as registry:
        await registry.register("a", {"x": 1})
        await registry.register("b", {"x": 1}, ttl=1)
        await registry.register("a", {"x": 2})
        await registry.update("a", {"y": 1})
        assert await registry.deregister("nobody") is False
        clock.advance(1)
        await registry.multicast(Message(b"m"))
        m = registry.metrics
        assert (m.registrations, m.updates, m.deregistrations) == (3, 1, 1)
        assert (m.multicasts, m.deliveries, m.delivery_failures, m.multicasts_in_flight) == (1, 1, 0, 0)
        assert m.expired_skipped == 1
        assert m.live_identities == 1
        from prism_testkit.pattern_sdk.metrics import exposition

        text = exposition("multicast_registry", "ns", m)
        assert 'prism_multicast_registry_deliveries_total{namespace="ns"} 1' in text
        assert 'prism_multicast_registry_multicasts_in_flight{namespace="ns"} 0' in text


async def test_health_follows_the_lifecycle_and_the_registry(prism_env: PrismEnv) -> None:
    """Bugs: healthy before start or after stop, healthy while the registry cannot be read."""
    kind = some_kind(prism_env)
    kv = GatedKeyValue(prism_env.driver("registry").keyvalue())
    registry = registry_on(prism_env, prism_env.ns, kind, kv=kv)
    assert (await registry.health()).status is HealthStatus.UNHEALTHY
    await registry.start()
    assert (await registry.health()).healthy

    async def broken(key: str) -> bytes | None:
        raise ConnectionLost("injected: registry down")

    kv.get = broken  # type: ignore[attr-defined]  # a stand-in get, deleted again below
    health = await registry.health()
    assert health.status is HealthStatus.UNHEALTHY
    assert "registry down" in health.detail
    del kv.get
    assert (await registry.health()).healthy
    await registry.stop()
    assert (await registry.health()).status is HealthStatus.UNHEALTHY


# --- lifecycle -----------------------------------------------------------------------------


async def test_nothing_runs_before_start_or_after_stop(prism_env: PrismEnv) -> None:
    """Bug: a registry that accepts work before start (slots never validated) or after stop."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging)
    with pytest.raises(NotStarted):
        await registry.register("a")
    with pytest.raises(NotStarted):
        await registry.multicast(Message(b"m"))
    await registry.start()
    await registry.register("a")
    report = await registry.stop()
    assert report.clean
    assert not report.forced
    with pytest.raises(PatternStopped):
        await registry.multicast(Message(b"m"))
    with pytest.raises(PatternStopped):
        await registry.register("b")
    assert messaging.calls == {}


async def bounded(awaitable: Any, what: str) -> Any:
    """``awaitable``'s result, or a failure naming ``what`` after the calm-op bound (a bug that
    leaves a multicast hanging must fail the test, not hang the run)."""
    try:
        return await asyncio.wait_for(awaitable, patience.bound("calm-op"))
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {patience.describe('calm-op')}") from None


async def test_stop_drains_in_flight_multicasts(prism_env: PrismEnv) -> None:
    """A stop while a multicast is in flight waits for it: every copy is sent and reported.
    Bugs: the stop returns at once and the multicast's sends are cut off, a multicast begun
    after the stop started is accepted."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    hold = messaging.hold = asyncio.Event()
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging, max_concurrency=2)
    everyone = [f"d{i}" for i in range(5)]
    async with inboxes(prism_env, kind, registry) as boxes:
        await registry.start()
        await boxes.listen(everyone)
        for identity in everyone:
            await registry.register(identity)
        multicast = asyncio.create_task(registry.multicast(Message(b"drain")))
        try:
            await bounded(messaging.started.wait(), "the first send")
            stopping = asyncio.create_task(registry.stop(within=patience.bound("calm-op")))
            await patience.until(
                lambda: asyncio.sleep(0, registry.state),
                lambda s: s is not LifecycleState.RUNNING,
                what="the stop to begin",
            )
            with pytest.raises(PatternStopped):
                await registry.multicast(Message(b"late"))
            assert not stopping.done(), "the stop returned while a multicast was in flight"
        finally:
            hold.set()
        report = await bounded(stopping, "the stop")
        result = await bounded(multicast, "the multicast")
        assert report.drained
        assert not report.forced
        assert report.left == ()
        assert result.delivered == everyone
        for identity in everyone:
            assert len(await boxes.take(identity)) == 1


async def test_a_stop_waits_for_every_multicast_in_flight_not_the_first_to_finish(prism_env: PrismEnv) -> None:
    """Two multicasts in flight: one held in its sends, the other delivered in full meanwhile. A
    stop begun after that still has the held one to drain: when its bound runs out it forces it
    and names it. Bugs caught: the registry called idle when any multicast finishes (the stop
    returns at once, drained, with a multicast still sending), a report naming the wrong one."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    hold = messaging.hold = asyncio.Event()  # set once the stop returned: the held sends hang until then
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging)
    lanes = {"slow": ["s0", "s1"], "quick": ["q0", "q1"]}
    messaging.held = {registry.destination(identity) for identity in lanes["slow"]}
    within = 0.2  # runs out: the held multicast never finishes before the stop forces it
    async with inboxes(prism_env, kind, registry) as boxes:
        await registry.start()
        await boxes.listen(lanes["quick"])
        for lane, identities in lanes.items():
            for identity in identities:
                await registry.register(identity, {"lane": lane})
        held = asyncio.create_task(registry.multicast(Message(b"held"), {"lane": "slow"}))
        try:
            await bounded(messaging.started.wait(), "the held multicast's first send")
            quick = await bounded(registry.multicast(Message(b"quick"), {"lane": "quick"}), "the quick multicast")
            assert quick.delivered == lanes["quick"]
            report = await bounded(registry.stop(within=within), "the stop")
            hold.set()  # a stop that returned without forcing it left the held multicast sending
            result = await bounded(held, "the held multicast")
        finally:
            hold.set()
            held.cancel()
        for identity in lanes["quick"]:
            assert len(copies_of(await boxes.take(identity), quick)) == 1
    assert not report.drained, (
        f"the stop reported drained while multicast {result.multicast_id} was still sending: "
        f"the first multicast to finish called the registry idle"
    )
    assert report.forced
    assert len(report.left) == 1, f"one multicast was in flight: {report.left}"
    assert result.multicast_id in report.left[0], f"the report names another multicast: {report.left}"
    assert "2 of 2 deliveries" in report.left[0]
    assert result.delivered == [], "a cut send was reported delivered"
    assert sorted(result.outcomes) == lanes["slow"]


async def test_a_stop_past_its_bound_forces_and_reports_what_it_left(prism_env: PrismEnv) -> None:
    """Sends that never finish: the stop returns within its bound (plus the force bound), the
    multicast reports each unfinished identity as failed (not definite when its send had
    begun, definite when it had not), and the report names the multicast. Bugs: a stop that
    waits forever, or returns without forcing and leaves the multicast hanging, a forced
    multicast that raises instead of reporting, cut sends called delivered, nothing said
    about what was left."""
    kind = some_kind(prism_env)
    messaging = faulty(prism_env, kind)
    hold = messaging.hold = asyncio.Event()  # not set until the end: the sends hang
    registry = registry_on(prism_env, prism_env.ns, kind, messaging=messaging, max_concurrency=2)
    within = 0.2
    await registry.start()
    for identity in ("f0", "f1", "f2", "f3"):
        await registry.register(identity)
    multicast = asyncio.create_task(registry.multicast(Message(b"forced")))
    try:
        await bounded(messaging.started.wait(), "the first send")
        began = clocks.monotonic()
        report = await bounded(registry.stop(within=within), "the stop")
        took = clocks.monotonic() - began
        result = await bounded(multicast, "the forced multicast")
    finally:
        hold.set()
        multicast.cancel()
    assert report.forced
    assert not report.drained
    assert took < within + registry.force_timeout + patience.bound("faulted-op"), f"the stop took {took:.2f}s"
    assert len(report.left) == 1
    assert result.multicast_id in report.left[0]
    assert "4 of 4 deliveries" in report.left[0]
    assert result.delivered == [], "a cut send was reported delivered"
    assert sorted(result.outcomes) == ["f0", "f1", "f2", "f3"]
    begun = [o for o in result.outcomes.values() if o.attempts > 0]
    waiting = [o for o in result.outcomes.values() if o.attempts == 0]
    assert (len(begun), len(waiting)) == (2, 2), f"max_concurrency 2: {result.outcomes}"
    assert all(not o.definite and "stopped" in (o.reason or "") for o in begun)
    assert all(o.definite and "stopped" in (o.reason or "") for o in waiting)
    assert messaging.holding == 2
