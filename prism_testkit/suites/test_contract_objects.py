"""Contract of the ``objects`` interface (ADR-052): buckets, objects, streams, metadata and
TTL (``objects.ttl``, checked both ways)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Collection
from contextlib import AsyncExitStack
from typing import TypeVar

import pytest

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, ObjectStore, PrismEnv, Slot, findings, prism_suite
from prism_testkit.errors import BucketNotEmpty, BucketNotFound, NotSupported, ObjectNotFound
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
    replay_command,
)

pytestmark = prism_suite("objects", backend=Slot.needs("objects"))

T = TypeVar("T")


def store_of(prism_env: PrismEnv) -> ObjectStore:
    return prism_env.driver("backend").objects()


def has_ttl(prism_env: PrismEnv) -> bool:
    return prism_env.driver("backend").supports(Capability.OBJECTS_TTL)


async def new_bucket(prism_env: PrismEnv, base: str = "bucket") -> tuple[ObjectStore, str]:
    store, bucket = store_of(prism_env), prism_env.ns.name(base)
    await store.create_bucket(bucket)
    return store, bucket


_BLOCK = bytes((i * 7919 + i // 256) % 256 for i in range(65_537))


def pattern(size: int) -> bytes:
    """``size`` bytes that are not periodic in any small chunk size (misplaced chunks show)."""
    return (_BLOCK * (size // len(_BLOCK) + 1))[:size]


async def chunked(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """``data`` split into chunks of the given sizes (cycled), yielding to the loop between."""
    position, i = 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)]
        yield data[position : position + size]
        position += size
        i += 1
        await asyncio.sleep(0)


# --- buckets -------------------------------------------------------------------------------


async def test_bucket_lifecycle(prism_env: PrismEnv) -> None:
    store, bucket = store_of(prism_env), prism_env.ns.name("bucket")
    assert await store.bucket_exists(bucket) is False
    await store.create_bucket(bucket)
    assert await store.bucket_exists(bucket) is True
    await store.create_bucket(bucket)  # idempotent
    assert await store.bucket_exists(bucket) is True
    await store.delete_bucket(bucket)
    assert await store.bucket_exists(bucket) is False


async def test_create_bucket_again_keeps_its_objects(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "k", b"v")
    await store.create_bucket(bucket)
    assert await store.get(bucket, "k") == b"v"


async def test_delete_missing_bucket_raises_bucket_not_found(prism_env: PrismEnv) -> None:
    store, bucket = store_of(prism_env), prism_env.ns.name("nothing")
    with pytest.raises(BucketNotFound) as raised:
        await store.delete_bucket(bucket)
    assert raised.value.bucket == bucket


async def test_delete_non_empty_bucket_raises_bucket_not_empty(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "dir/k", b"v")
    with pytest.raises(BucketNotEmpty) as raised:
        await store.delete_bucket(bucket)
    assert raised.value.bucket == bucket
    assert await store.bucket_exists(bucket) is True
    assert await store.get(bucket, "dir/k") == b"v", "a refused delete_bucket lost an object"
    await store.delete(bucket, "dir/k")
    await store.delete_bucket(bucket)
    assert await store.bucket_exists(bucket) is False


async def test_buckets_are_isolated(prism_env: PrismEnv) -> None:
    store, first = await new_bucket(prism_env, "bucket")
    _, second = await new_bucket(prism_env, "bucket-2")
    await store.put(first, "k", b"first")
    assert await store.exists(second, "k") is False
    with pytest.raises(ObjectNotFound):
        await store.get(second, "k")
    await store.put(second, "k", b"second")
    await store.delete(first, "k")
    assert await store.get(second, "k") == b"second"
    assert await collect(store.list_keys(first)) == []


CLIENTS = 4  # the test's driver and three clients of its own, racing on one bucket
RACED_BUCKETS = 6
RACED_DELETES = "concurrent-bucket-deletes"  # the scenario a known finding names (prism_testkit.findings)


async def refused(operation: Awaitable[object]) -> BucketNotFound | BucketNotEmpty | None:
    """None when ``operation`` succeeded; the bucket error it raised otherwise (any other
    error fails the test)."""
    try:
        await operation
    except (BucketNotFound, BucketNotEmpty) as exc:
        return exc
    return None


async def stores(prism_env: PrismEnv, count: int) -> tuple[AsyncExitStack, list[ObjectStore]]:
    """The test's store and ``count - 1`` of its own clients' (closed with the stack)."""
    stack = AsyncExitStack()
    others = [await stack.enter_async_context(own_client(prism_env, "backend")) for _ in range(count - 1)]
    return stack, [store_of(prism_env), *(driver.objects() for driver in others)]


async def test_concurrent_deletes_of_one_bucket_succeed_exactly_once(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    # A delete that checks and then deletes lets two callers both delete "the" bucket: one of
    # them deleted a missing bucket without BucketNotFound.
    buckets = [prism_env.ns.name(f"raced-{i}") for i in range(RACED_BUCKETS)]
    stack, racers = await stores(prism_env, CLIENTS)
    async with stack:
        for bucket in buckets:
            await racers[0].create_bucket(bucket)
        outcomes = await gather_all(*(refused(each.delete_bucket(bucket)) for bucket in buckets for each in racers))
    successes = [
        sum(outcome is None for outcome in outcomes[i * CLIENTS : (i + 1) * CLIENTS]) for i in range(len(buckets))
    ]
    backend = prism_env.combination["backend"]
    if findings.finding_for(RACED_DELETES, backend) is not None:
        # A release with the known finding (docs/findings.md) leaves the racing deletes unanswered, and a
        # resent one reads as done: named there, while a fixed release is held to the contract below.
        findings.judge(
            request,
            scenario=RACED_DELETES,
            backend=backend,
            version=prism_env.driver("backend").server_version,
            lost=sum(max(0, count - 1) for count in successes),
            acknowledged=len(outcomes),
            detail=f"successes per bucket of {CLIENTS} racing clients: {', '.join(map(str, successes))}",
            replay=replay_command(__name__, backend, "concurrent_deletes_of_one_bucket"),
            counts="concurrent delete_bucket calls succeeded beyond one per bucket",
        )
    for i, bucket in enumerate(buckets):
        mine = outcomes[i * CLIENTS : (i + 1) * CLIENTS]
        succeeded = successes[i]
        assert succeeded == 1, f"{CLIENTS} concurrent delete_bucket calls of {bucket!r}: {succeeded} succeeded"
        wrong = [
            type(outcome).__name__
            for outcome in mine
            if outcome is not None and not isinstance(outcome, BucketNotFound)
        ]
        assert not wrong, f"the losers of a delete_bucket race must see BucketNotFound, not {wrong}"
        assert await racers[0].bucket_exists(bucket) is False


async def test_a_put_racing_delete_bucket_is_never_lost(prism_env: PrismEnv) -> None:
    # Either the put lands first (the delete is refused as BucketNotEmpty and the object kept)
    # or the delete does (the put raises BucketNotFound): both succeeding loses the object.
    buckets = [prism_env.ns.name(f"put-race-{i}") for i in range(RACED_BUCKETS)]
    stack, (store, other) = await stores(prism_env, 2)
    async with stack:
        for bucket in buckets:
            await store.create_bucket(bucket)
        outcomes = await gather_all(
            *(
                op
                for bucket in buckets
                for op in (refused(store.delete_bucket(bucket)), refused(other.put(bucket, "k", b"v")))
            )
        )
        for i, bucket in enumerate(buckets):
            deleted, put = outcomes[2 * i], outcomes[2 * i + 1]
            if put is None:
                assert isinstance(deleted, BucketNotEmpty), (
                    f"a put into {bucket!r} succeeded and so did delete_bucket ({deleted!r}): the object is lost"
                )
                assert await store.get(bucket, "k") == b"v"
            else:
                assert isinstance(put, BucketNotFound), f"a put racing delete_bucket raised {put!r}"
                assert deleted is None, f"the put was refused, so the delete must have succeeded: {deleted!r}"
                assert await store.bucket_exists(bucket) is False


# --- objects -------------------------------------------------------------------------------


async def test_put_get_info_exists(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    data = pattern(10_000)
    meta = {"content-type": "application/octet-stream", "owner": "suite"}
    put_info = await store.put(bucket, "obj", data, metadata=meta)
    assert (put_info.bucket, put_info.key, put_info.size) == (bucket, "obj", len(data))
    assert dict(put_info.metadata) == meta
    assert put_info.expires_at is None
    assert await store.exists(bucket, "obj") is True
    assert await store.get(bucket, "obj") == data
    info = await store.info(bucket, "obj")
    assert (info.bucket, info.key, info.size, dict(info.metadata)) == (bucket, "obj", len(data), meta)
    assert info.expires_at is None


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256))], ids=["empty", "nul", "all-bytes"])
async def test_binary_objects(prism_env: PrismEnv, data: bytes) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "bin", data)
    assert await store.get(bucket, "bin") == data
    assert (await store.info(bucket, "bin")).size == len(data)
    assert await store.exists(bucket, "bin") is True


async def test_overwrite_replaces_data_and_metadata(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "obj", b"first, longer", metadata={"v": "1", "old": "x"})
    info = await store.put(bucket, "obj", b"second", metadata={"v": "2"})
    assert info.size == 6
    assert await store.get(bucket, "obj") == b"second"
    assert dict((await store.info(bucket, "obj")).metadata) == {"v": "2"}
    await store.put(bucket, "obj", b"third")
    assert dict((await store.info(bucket, "obj")).metadata) == {}


async def test_delete_is_idempotent(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "obj", b"v")
    await store.put(bucket, "obj-2", b"w")
    await store.delete(bucket, "obj")
    assert await store.exists(bucket, "obj") is False
    await store.delete(bucket, "obj")  # missing: not an error
    await store.delete(bucket, "never-written")
    assert await store.get(bucket, "obj-2") == b"w"


async def test_missing_object_raises_object_not_found(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    assert await store.exists(bucket, "missing") is False
    with pytest.raises(ObjectNotFound) as raised:
        await store.get(bucket, "missing")
    assert (raised.value.bucket, raised.value.key) == (bucket, "missing")
    with pytest.raises(ObjectNotFound):
        await store.info(bucket, "missing")
    with pytest.raises(ObjectNotFound):
        await collect(store.get_stream(bucket, "missing"))


async def test_missing_bucket_raises_bucket_not_found(prism_env: PrismEnv) -> None:
    store, bucket = store_of(prism_env), prism_env.ns.name("nothing")
    with pytest.raises(BucketNotFound):
        await store.put(bucket, "k", b"v")
    with pytest.raises(BucketNotFound):
        await store.get(bucket, "k")
    with pytest.raises(BucketNotFound):
        await store.info(bucket, "k")
    with pytest.raises(BucketNotFound):
        await collect(store.get_stream(bucket, "k"))
    with pytest.raises(BucketNotFound):
        await store.put_stream(bucket, "k", chunked(b"abc", [1]))
    with pytest.raises(BucketNotFound):
        await collect(store.list_keys(bucket))
    assert await store.bucket_exists(bucket) is False, "a failed put created the bucket"


@pytest.mark.parametrize(
    "keys",
    [
        ["a/b/c.txt", "a/b", "a"],
        ["dir/", "dir/file", "dir//double"],
        ["with space", "ünïcødé/ключ", "semi;colon&amp=eq?q#hash%25"],
    ],
    ids=["nested-and-parents", "trailing-and-double-slash", "odd-characters"],
)
async def test_keys_are_opaque_strings(prism_env: PrismEnv, keys: list[str]) -> None:
    """Keys containing '/' (also one key a 'directory' of another) are independent objects."""
    store, bucket = await new_bucket(prism_env)
    for i, key in enumerate(keys):
        info = await store.put(bucket, key, f"value {i}".encode())
        assert info.key == key
    for i, key in enumerate(keys):
        assert await store.get(bucket, key) == f"value {i}".encode(), key
        assert (await store.info(bucket, key)).key == key
    assert sorted(await collect(store.list_keys(bucket))) == sorted(keys)
    await store.delete(bucket, keys[0])
    assert sorted(await collect(store.list_keys(bucket))) == sorted(keys[1:])
    for i, key in enumerate(keys[1:], start=1):
        assert await store.get(bucket, key) == f"value {i}".encode(), key


async def test_keys_cannot_escape_their_bucket(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    _, other = await new_bucket(prism_env, "other")
    sneaky = f"../{other}/stolen"
    await store.put(bucket, sneaky, b"v")
    assert await store.get(bucket, sneaky) == b"v"
    assert await collect(store.list_keys(other)) == []
    assert await store.exists(other, "stolen") is False
    assert await collect(store.list_keys(bucket)) == [sneaky]


async def test_list_keys_with_prefix(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    keys = ["a/1", "a/2", "a/x/3", "ab/1", "a", "b/1", "A/1", "a%/1", "a_/1"]
    for key in keys:
        await store.put(bucket, key, b"v")
    for prefix in ["a/", "a", "ab", "b/", "", "a%", "a_", "zzz"]:
        found = await collect(store.list_keys(bucket, prefix))
        assert len(found) == len(set(found)), f"duplicates for {prefix!r}: {found}"
        assert sorted(found) == sorted(k for k in keys if k.startswith(prefix)), prefix
    assert sorted(await collect(store.list_keys(bucket))) == sorted(keys)


# --- streams -------------------------------------------------------------------------------


async def test_put_stream_then_get_stream(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    data = pattern(3 * 1024 * 1024 + 12_345)
    info = await store.put_stream(bucket, "big", chunked(data, [1, 100_000, 65_536, 777_777]), metadata={"m": "1"})
    assert (info.key, info.size, dict(info.metadata)) == ("big", len(data), {"m": "1"})
    assert (await store.info(bucket, "big")).size == len(data)
    chunk_size = 256 * 1024
    chunks = await collect(store.get_stream(bucket, "big", chunk_size=chunk_size))
    assert all(len(chunk) <= chunk_size for chunk in chunks), [len(c) for c in chunks if len(c) > chunk_size]
    assert len(chunks) >= len(data) // chunk_size, "the stream was not split into chunks"
    assert b"".join(chunks) == data
    assert await store.get(bucket, "big") == data


async def test_get_stream_default_chunk_size(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    data = pattern(2 * (1 << 20) + 3)
    await store.put(bucket, "obj", data)
    chunks = await collect(store.get_stream(bucket, "obj"))
    assert all(len(chunk) <= 1 << 20 for chunk in chunks)
    assert b"".join(chunks) == data


async def test_small_chunks_and_empty_streams(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    data = pattern(1000)
    await store.put(bucket, "small", data)
    chunks = await collect(store.get_stream(bucket, "small", chunk_size=7))
    assert all(len(chunk) <= 7 for chunk in chunks)
    assert b"".join(chunks) == data
    info = await store.put_stream(bucket, "empty", chunked(b"", [1]))
    assert info.size == 0
    assert await store.get(bucket, "empty") == b""
    assert b"".join(await collect(store.get_stream(bucket, "empty"))) == b""


async def test_failed_put_stream_leaves_no_object(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "obj", b"old")

    class Broken(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial data"
        raise Broken

    with pytest.raises(Broken):
        await store.put_stream(bucket, "obj", broken())
    with pytest.raises(Broken):
        await store.put_stream(bucket, "new", broken())
    assert await store.get(bucket, "obj") == b"old", "a failed stream replaced the object"
    assert await store.exists(bucket, "new") is False, "a failed stream left a partial object"
    assert await collect(store.list_keys(bucket)) == ["obj"]


# --- ttl, both ways ------------------------------------------------------------------------


async def unless_expired(watch: Stopwatch, read: Awaitable[T]) -> T | None:
    """What ``read`` returned; None when it found the object gone once its SHORT_TTL, set
    after ``watch`` started, could have run out (a loaded machine read late: then only the
    expiry is asserted). Gone any sooner is a failure."""
    try:
        return await read
    except ObjectNotFound:
        assert not before_expiry(watch, SHORT_TTL), "the object vanished before its ttl ran out"
        return None


async def test_put_with_ttl_expires_or_is_not_supported(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "stays", b"w")
    if not has_ttl(prism_env):
        with pytest.raises(NotSupported):
            await store.put(bucket, "ttl", b"v", ttl=60)
        with pytest.raises(NotSupported):
            await store.put_stream(bucket, "ttl-stream", chunked(b"v", [1]), ttl=60)
        assert sorted(await collect(store.list_keys(bucket))) == ["stays"], "a refused put wrote"
        return
    before, watch = clocks.wall(), Stopwatch()
    info = await store.put(bucket, "ttl", b"v", ttl=SHORT_TTL)
    assert info.expires_at is not None
    assert before + SHORT_TTL - 1 <= info.expires_at <= clocks.wall() + SHORT_TTL + 1
    looked = await unless_expired(watch, store.info(bucket, "ttl"))
    value = await unless_expired(watch, store.get(bucket, "ttl"))
    if before_expiry(watch, SHORT_TTL):
        assert looked is not None
        assert looked.expires_at == pytest.approx(info.expires_at, abs=0.01)
        assert value == b"v", "the object vanished before its ttl ran out"
    await asyncio.sleep(SHORT_TTL)
    await assert_expired(store, bucket, "ttl")
    assert await store.get(bucket, "stays") == b"w", "an object without ttl expired"
    assert await collect(store.list_keys(bucket)) == ["stays"]


async def test_put_stream_with_ttl_expires_or_is_not_supported(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    if not has_ttl(prism_env):
        with pytest.raises(NotSupported):
            await store.put_stream(bucket, "ttl", chunked(b"abc", [1]), ttl=SHORT_TTL)
        assert await store.exists(bucket, "ttl") is False
        return
    watch = Stopwatch()
    info = await store.put_stream(bucket, "ttl", chunked(b"abc", [1]), ttl=SHORT_TTL)
    assert info.expires_at is not None
    value = await unless_expired(watch, store.get(bucket, "ttl"))
    if before_expiry(watch, SHORT_TTL):
        assert value == b"abc"
    await asyncio.sleep(SHORT_TTL)
    await assert_expired(store, bucket, "ttl")


async def test_set_ttl_expires_or_is_not_supported(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    await store.put(bucket, "obj", b"v", metadata={"m": "1"})
    if not has_ttl(prism_env):
        with pytest.raises(NotSupported):
            await store.set_ttl(bucket, "obj", SHORT_TTL)
        refused = await store.info(bucket, "obj")
        assert refused.expires_at is None
        await asyncio.sleep(SHORT_TTL + 0.1)
        assert await store.get(bucket, "obj") == b"v", "a refused set_ttl still expired the object"
        return
    watch = Stopwatch()
    await store.set_ttl(bucket, "obj", SHORT_TTL)
    info = await unless_expired(watch, store.info(bucket, "obj"))
    value = await unless_expired(watch, store.get(bucket, "obj"))
    if before_expiry(watch, SHORT_TTL):
        assert info is not None
        assert info.expires_at is not None
        assert info.expires_at <= clocks.wall() + SHORT_TTL + 1
        assert (info.size, dict(info.metadata)) == (1, {"m": "1"}), "set_ttl changed the object"
        assert value == b"v"
    await asyncio.sleep(SHORT_TTL)
    await assert_expired(store, bucket, "obj")


async def test_set_ttl_on_missing_object(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    expected: type[Exception] = ObjectNotFound if has_ttl(prism_env) else NotSupported
    with pytest.raises(expected):
        await store.set_ttl(bucket, "missing", 60)
    assert await store.exists(bucket, "missing") is False


async def test_overwrite_without_ttl_clears_expiry(prism_env: PrismEnv) -> None:
    store, bucket = await new_bucket(prism_env)
    if not has_ttl(prism_env):
        with pytest.raises(NotSupported):
            await store.put(bucket, "obj", b"v", ttl=SHORT_TTL)
        assert await store.exists(bucket, "obj") is False
        return
    await store.put(bucket, "obj", b"v", ttl=SHORT_TTL)
    info = await store.put(bucket, "obj", b"w")
    assert info.expires_at is None
    await asyncio.sleep(SHORT_TTL + 0.3)
    assert await store.get(bucket, "obj") == b"w"


async def assert_expired(store: ObjectStore, bucket: str, key: str) -> None:
    async def gone() -> bool:
        return not await store.exists(bucket, key)

    assert await eventually(gone), f"{key!r} still exists {expiry_deadline():.1f}s after its ttl"
    with pytest.raises(ObjectNotFound):
        await store.get(bucket, key)
    with pytest.raises(ObjectNotFound):
        await store.info(bucket, key)
    with pytest.raises(ObjectNotFound):
        await collect(store.get_stream(bucket, key))
    assert key not in await collect(store.list_keys(bucket)), "an expired object is still listed"


# --- cleanup -------------------------------------------------------------------------------


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    store = store_of(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        full, empty = ns.name("full"), ns.name("empty")
        for bucket in (full, empty):
            await store.create_bucket(bucket)
        await store.put(full, "nested/key", b"left behind", metadata={"m": "1"})
        await store.put(full, "top", b"left behind")
        return [full, empty]

    await check_purge(prism_env, "backend", create)
    assert await store.bucket_exists(prism_env.ns.name("full")) is False
    assert await store.bucket_exists(prism_env.ns.name("empty")) is False
