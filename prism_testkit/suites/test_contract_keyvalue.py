"""Contract of the ``keyvalue`` interface and its sub-capabilities (ttl, scan, cas).

Sub-capabilities are checked both ways: a declared one must work, an undeclared one must
raise NotSupported and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Capability, KeyValue, NotSupported, PrismEnv, Slot, prism_suite
from prism_testkit.isolation import Namespace

from ._helpers import (
    SHORT_TTL,
    Stopwatch,
    before_expiry,
    check_purge,
    collect,
    eventually,
    expiry_deadline,
    gather_all,
    own_client,
    prism_settings,
)

pytestmark = prism_suite("keyvalue", backend=Slot.needs("keyvalue"))


def kv_of(prism_env: PrismEnv) -> KeyValue:
    return prism_env.driver("backend").keyvalue()


def supports(prism_env: PrismEnv, capability: Capability) -> bool:
    return prism_env.driver("backend").supports(capability)


# --- basic ---------------------------------------------------------------------------------


async def test_get_missing_key_is_none(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("missing")
    assert await kv.get(key) is None
    assert await kv.exists(key) is False


async def test_put_then_get(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("a")
    await kv.put(key, b"hello")
    assert await kv.get(key) == b"hello"
    assert await kv.exists(key) is True


async def test_overwrite_replaces_value(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("a")
    await kv.put(key, b"first value, longer")
    await kv.put(key, b"second")
    assert await kv.get(key) == b"second"


async def test_delete_reports_whether_key_existed(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("a")
    await kv.put(key, b"v")
    assert await kv.delete(key) is True
    assert await kv.get(key) is None
    assert await kv.exists(key) is False
    assert await kv.delete(key) is False
    assert await kv.delete(prism_env.ns.name("never-written")) is False


async def test_keys_are_independent(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    a, b, ab = prism_env.ns.name("a"), prism_env.ns.name("b"), prism_env.ns.name("a") + "b"
    await kv.put(a, b"1")
    await kv.put(b, b"2")
    await kv.put(ab, b"3")
    await kv.delete(b)
    assert (await kv.get(a), await kv.get(b), await kv.get(ab)) == (b"1", None, b"3")


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00", bytes(range(256)), b"\xff\xfe\x00\x01" * 1000, "ünïcødé".encode()],
    ids=["empty", "nul", "all-bytes", "binary-4k", "utf8"],
)
async def test_binary_values_round_trip(prism_env: PrismEnv, value: bytes) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("bin")
    await kv.put(key, value)
    got = await kv.get(key)
    assert got is not None, "a stored value (even empty bytes) must not read back as missing"
    assert bytes(got) == value
    assert await kv.exists(key) is True


async def test_large_value_round_trips(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("large")
    value = bytes(range(256)) * 4096  # 1 MiB
    await kv.put(key, value)
    assert await kv.get(key) == value


# --- model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Get:
    key: str


KEYS = st.sampled_from(["a", "b", "c", "a-b"])
OPS = st.lists(
    st.one_of(
        st.builds(Put, key=KEYS, value=st.binary(max_size=16)),
        st.builds(Delete, key=KEYS),
        st.builds(Get, key=KEYS),
    ),
    max_size=25,
)


@prism_settings
@given(ops=OPS)
async def test_model_put_delete(prism_env: PrismEnv, ops: list[Put | Delete | Get]) -> None:
    kv = kv_of(prism_env)
    async with prism_env.example() as ns:
        model: dict[str, bytes] = {}
        for op in ops:
            key = ns.name(op.key)
            if isinstance(op, Put):
                await kv.put(key, op.value)
                model[key] = op.value
            elif isinstance(op, Delete):
                assert await kv.delete(key) is (key in model), op
                model.pop(key, None)
            else:
                assert await kv.get(key) == model.get(key), op
        for base in ["a", "b", "c", "a-b"]:
            key = ns.name(base)
            assert await kv.get(key) == model.get(key)
            assert await kv.exists(key) is (key in model)
        if supports(prism_env, Capability.KEYVALUE_SCAN):
            assert sorted(await collect(kv.scan(ns.prefix))) == sorted(model)


# --- ttl, both ways ------------------------------------------------------------------------


async def test_ttl_expires_or_is_not_supported(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key, lasting = prism_env.ns.name("ttl"), prism_env.ns.name("lasting")
    if not supports(prism_env, Capability.KEYVALUE_TTL):
        with pytest.raises(NotSupported):
            await kv.put(key, b"v", ttl=1)
        assert await kv.get(key) is None, "a refused put(ttl=...) must not write"
        return
    # One expiring key per way of looking, each looked at first that way: a store that expires
    # lazily on get must not let exists or scan see an expired key that get never touched.
    by_exists, by_scan = prism_env.ns.name("ttl-exists"), prism_env.ns.name("ttl-scan")
    watch = Stopwatch()
    for expiring in (key, by_exists, by_scan):
        await kv.put(expiring, b"v", ttl=SHORT_TTL)
    await kv.put(lasting, b"w")
    value = await kv.get(key)
    if before_expiry(watch, SHORT_TTL):
        assert value == b"v", "the key vanished before its ttl ran out"
    await asyncio.sleep(SHORT_TTL)

    async def gone() -> bool:
        return await kv.get(key) is None

    async def not_existing() -> bool:
        return await kv.exists(by_exists) is False

    assert await eventually(gone), f"key still readable {expiry_deadline():.1f}s after its ttl"
    assert await eventually(not_existing), f"exists() true {expiry_deadline():.1f}s after the ttl"
    assert await kv.exists(key) is False
    if supports(prism_env, Capability.KEYVALUE_SCAN):
        assert await collect(kv.scan(prism_env.ns.prefix)) == [lasting], "scan lists a key whose ttl ran out"
    assert await kv.get(lasting) == b"w", "a key without ttl expired"
    assert await kv.delete(key) is False, "delete of an expired key reported it as existing"


async def test_put_without_ttl_clears_previous_ttl(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("ttl-reset")
    if not supports(prism_env, Capability.KEYVALUE_TTL):
        with pytest.raises(NotSupported):
            await kv.put(key, b"v", ttl=SHORT_TTL)
        assert await kv.exists(key) is False
        return
    await kv.put(key, b"v", ttl=SHORT_TTL)
    await kv.put(key, b"w")  # a plain put replaces the value and its expiry
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await kv.get(key) == b"w"


async def test_ttl_can_be_extended_by_rewriting(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("ttl-extend")
    if not supports(prism_env, Capability.KEYVALUE_TTL):
        with pytest.raises(NotSupported):
            await kv.put(key, b"v", ttl=60)
        assert await kv.get(key) is None
        return
    await kv.put(key, b"v", ttl=SHORT_TTL)
    await kv.put(key, b"v2", ttl=60)
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await kv.get(key) == b"v2"


# --- scan, both ways -----------------------------------------------------------------------


async def test_scan_returns_exactly_the_prefix_or_is_not_supported(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    ns = prism_env.ns
    inside = [ns.name("scan-a") + "/1", ns.name("scan-a") + "/2", ns.name("scan-a") + "/x/3"]
    decoys = [ns.name("scan-a"), ns.name("scan-ab") + "/1", ns.name("scan-b") + "/1", ns.prefix + "SCAN-A/1"]
    for key in inside + decoys:
        await kv.put(key, b"v")
    prefix = ns.name("scan-a") + "/"
    if not supports(prism_env, Capability.KEYVALUE_SCAN):
        with pytest.raises(NotSupported):
            await collect(kv.scan(prefix))
        return
    found = await collect(kv.scan(prefix))
    assert len(found) == len(set(found)), f"scan yielded duplicates: {found}"
    assert sorted(found) == sorted(inside)
    await kv.delete(inside[0])
    assert sorted(await collect(kv.scan(prefix))) == sorted(inside[1:])
    assert await collect(kv.scan(ns.name("scan-none"))) == []


async def test_scan_prefix_is_literal(prism_env: PrismEnv) -> None:
    """Characters that are wildcards in SQL LIKE or glob patterns match only themselves."""
    kv = kv_of(prism_env)
    base = prism_env.ns.name("lit")
    inside = [f"{base}_%*?[x]\\/1"]
    decoys = [f"{base}ab*?[x]\\/1", f"{base}_%*?x\\/1", f"{base}_%ab?[x]\\/1", f"{base}_%*?[x]\\x1"]
    for key in inside + decoys:
        await kv.put(key, b"v")
    prefix = f"{base}_%*?[x]\\/"
    if not supports(prism_env, Capability.KEYVALUE_SCAN):
        with pytest.raises(NotSupported):
            await collect(kv.scan(prefix))
        return
    assert await collect(kv.scan(prefix)) == inside
    for key in inside + decoys:
        assert await kv.get(key) == b"v", key


# --- compare-and-set, both ways ------------------------------------------------------------


async def test_cas_on_absent_key_or_is_not_supported(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("cas")
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(key, None, b"v")
        assert await kv.get(key) is None, "a refused compare_and_set must not write"
        return
    assert await kv.compare_and_set(key, None, b"v1") is True
    assert await kv.get(key) == b"v1"
    assert await kv.compare_and_set(key, None, b"v2") is False, "expected=None must fail on a present key"
    assert await kv.get(key) == b"v1"


async def test_cas_with_expected_value(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("cas")
    await kv.put(key, b"v1")
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(key, b"v1", b"v2")
        assert await kv.get(key) == b"v1"
        return
    assert await kv.compare_and_set(key, b"wrong", b"v2") is False
    assert await kv.get(key) == b"v1", "a failed compare_and_set changed the value"
    assert await kv.compare_and_set(key, b"", b"v2") is False, "empty bytes must not match a value"
    assert await kv.compare_and_set(key, b"v1", b"v2") is True
    assert await kv.get(key) == b"v2"
    assert await kv.compare_and_set(key, b"v1", b"v3") is False, "a stale expected value won"
    assert await kv.get(key) == b"v2"
    assert await kv.compare_and_set(prism_env.ns.name("cas-absent"), b"v1", b"x") is False
    assert await kv.exists(prism_env.ns.name("cas-absent")) is False


async def test_cas_empty_value_is_not_absent(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("cas-empty")
    await kv.put(key, b"")
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(key, b"", b"v")
        return
    assert await kv.compare_and_set(key, None, b"v") is False, "an empty value counts as present"
    assert await kv.compare_and_set(key, b"", b"v") is True
    assert await kv.get(key) == b"v"


async def test_cas_after_delete_expects_absent(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("cas-del")
    await kv.put(key, b"v")
    await kv.delete(key)
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(key, None, b"w")
        return
    assert await kv.compare_and_set(key, b"v", b"w") is False
    assert await kv.compare_and_set(key, None, b"w") is True
    assert await kv.get(key) == b"w"


@pytest.mark.parametrize("start", [None, b"0"], ids=["from-absent", "from-value"])
async def test_concurrent_cas_has_exactly_one_winner(prism_env: PrismEnv, start: bytes | None) -> None:
    kv = kv_of(prism_env)
    key = prism_env.ns.name("race")
    if start is not None:
        await kv.put(key, start)
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(key, start, b"w")
        return
    contenders = 12
    results = await gather_all(*(kv.compare_and_set(key, start, f"w{i}".encode()) for i in range(contenders)))
    winners = [i for i, won in enumerate(results) if won]
    assert len(winners) == 1, f"{len(winners)} of {contenders} concurrent compare_and_set calls won"
    assert await kv.get(key) == f"w{winners[0]}".encode()


# --- "did it exist" answers under concurrency ----------------------------------------------

# Four clients of their own (connections, pools, sessions), each asking about every key of
# a round at once: a driver that looks before it acts (GET then DEL, a read then a purge)
# answers "existed" to several of them.
CLIENTS = 4
RACED_KEYS = 8


@asynccontextmanager
async def clients(prism_env: PrismEnv) -> AsyncIterator[list[KeyValue]]:
    """The test's driver's key-value and those of ``CLIENTS - 1`` clients of the test's own."""
    async with AsyncExitStack() as stack:
        others = [await stack.enter_async_context(own_client(prism_env, "backend")) for _ in range(CLIENTS - 1)]
        yield [kv_of(prism_env), *(driver.keyvalue() for driver in others)]


def answered_true(answers: list[bool], keys: list[str]) -> dict[str, int]:
    """Per key, how many of its ``CLIENTS`` answers (laid out key by key) were True."""
    return {key: sum(answers[i * CLIENTS : (i + 1) * CLIENTS]) for i, key in enumerate(keys)}


async def test_concurrent_deletes_report_existed_exactly_once(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)
    keys = [prism_env.ns.name(f"del-race-{i}") for i in range(RACED_KEYS)]
    missing = prism_env.ns.name("del-race-missing")
    for key in keys:
        await kv.put(key, b"v")
    async with clients(prism_env) as kvs:
        answers = await gather_all(*(each.delete(key) for key in [*keys, missing] for each in kvs))
    counted = answered_true(answers, [*keys, missing])
    assert counted.pop(missing) == 0, "a delete of a key never written reported that it existed"
    wrong = {key: n for key, n in counted.items() if n != 1}
    assert not wrong, (
        f"{CLIENTS} concurrent deletes of one key must report 'existed' exactly once; "
        f"per key, how many did: {wrong} (of {RACED_KEYS} keys)"
    )
    for key in keys:
        assert await kv.exists(key) is False, f"{key!r} exists after {CLIENTS} deletes"


@pytest.mark.parametrize("start", [None, b"0"], ids=["put-if-absent", "from-value"])
async def test_concurrent_cas_from_several_clients_has_exactly_one_winner(
    prism_env: PrismEnv, start: bytes | None
) -> None:
    kv = kv_of(prism_env)
    keys = [prism_env.ns.name(f"cas-race-{i}") for i in range(RACED_KEYS)]
    if start is not None:
        for key in keys:
            await kv.put(key, start)
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(keys[0], start, b"w")
        return
    async with clients(prism_env) as kvs:
        answers = await gather_all(
            *(each.compare_and_set(key, start, f"w{n}".encode()) for key in keys for n, each in enumerate(kvs))
        )
    counted = answered_true(answers, keys)
    wrong = {key: n for key, n in counted.items() if n != 1}
    assert not wrong, f"{CLIENTS} concurrent compare_and_set calls must have exactly one winner; per key: {wrong}"
    for i, key in enumerate(keys):
        won = answers[i * CLIENTS : (i + 1) * CLIENTS].index(True)
        assert await kv.get(key) == f"w{won}".encode(), f"{key!r} does not hold the winner's value"


async def test_delete_racing_put_if_absent_answers_consistently(prism_env: PrismEnv) -> None:
    """A delete and a put-if-absent of one present key at once: whatever their order, the
    answers must fit it. Delete first: it existed, the put-if-absent then wins and its value
    stays. Put-if-absent first: it lost, and the delete removed the old value."""
    kv = kv_of(prism_env)
    keys = [prism_env.ns.name(f"del-cas-{i}") for i in range(RACED_KEYS)]
    for key in keys:
        await kv.put(key, b"old")
    if not supports(prism_env, Capability.KEYVALUE_CAS):
        with pytest.raises(NotSupported):
            await kv.compare_and_set(keys[0], None, b"new")
        assert await kv.get(keys[0]) == b"old", "a refused compare_and_set must not write"
        return
    async with clients(prism_env) as kvs:
        answers = await gather_all(
            *(call for key in keys for call in (kvs[0].delete(key), kvs[1].compare_and_set(key, None, b"new")))
        )
    for i, key in enumerate(keys):
        deleted, won = answers[2 * i], answers[2 * i + 1]
        value = await kv.get(key)
        assert deleted is True, f"{key!r} was present, yet its delete reported it missing"
        want = b"new" if won else None
        assert value == want, f"delete said existed, put-if-absent said {won}: {key!r} holds {value!r}"


# --- cleanup -------------------------------------------------------------------------------


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    kv = kv_of(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        keys = [ns.name("one"), ns.name("two") + "/nested", ns.name("three")]
        for key in keys:
            await kv.put(key, b"v")
        return keys

    await check_purge(prism_env, "backend", create)
    assert await kv.get(prism_env.ns.name("one")) is None
