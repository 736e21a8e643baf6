"""Unit tests of patterns.claim_check on the in-process memstore (and localfs for the memory bound)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.errors import ConfigurationError, PayloadTooLarge, PrismError
from prism_testkit.interfaces import Message, ObjectStore
from prism_testkit.patterns.claim_check import (
    ChecksumMismatch,
    ClaimCheck,
    ClaimCheckConfig,
    ClaimCheckLog,
    ClaimCheckPubSub,
    ClaimCheckQueue,
    ClaimNotFound,
    ClaimReference,
    InvalidClaimReference,
    parse_size,
)

T = TypeVar("T")
BUCKET = "claims"
FIELD = "prism-claim-check"


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


async def make(**overrides: Any) -> tuple[Any, ClaimCheck]:
    driver = open_memstore()
    settings: dict[str, Any] = {"threshold": 1024, "bucket": BUCKET}
    settings.update(overrides)
    cc = ClaimCheck(driver.objects(), ClaimCheckConfig(**settings))
    await cc.ensure_bucket()
    return driver, cc


async def keys(objects: ObjectStore, bucket: str = BUCKET) -> list[str]:
    return [k async for k in objects.list_keys(bucket)]


def sample(size: int, seed: int = 7) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"threshold": -1},
        {"bucket": ""},
        {"compression": "zstd"},
        {"ttl": 0},
        {"ttl": -5.0},
        {"on_consume": "archive"},
        {"max_payload": -1},
        {"chunk_size": 0},
        {"field": "bad header"},
        {"threshold": "one megabyte"},
        {"threshold": True},
        {"unknown_option": 1},
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"threshold": 10, "bucket": BUCKET, **overrides}
    with pytest.raises(ValidationError):
        ClaimCheckConfig(**settings)


def test_config_defaults_and_sizes() -> None:
    cfg = ClaimCheckConfig(threshold="1MB", bucket=BUCKET, streaming_threshold="64KiB")  # type: ignore[arg-type]  # text, parsed by the validator
    assert cfg.threshold == 1_000_000
    assert cfg.streaming_threshold == 65_536
    assert (cfg.compression, cfg.on_consume, cfg.field, cfg.chunk_size) == ("none", "delete", FIELD, 1 << 20)
    assert parse_size("2GiB") == 2 << 30
    assert parse_size("512 kb") == 512_000
    with pytest.raises(ValidationError):
        cfg.threshold = 5  # frozen


def test_claim_check_needs_a_config_model() -> None:
    with pytest.raises(ConfigurationError):
        ClaimCheck(open_memstore().objects(), {"threshold": 1, "bucket": "b"})  # type: ignore[arg-type]


# --- references --------------------------------------------------------------------------


def _ref(**changes: Any) -> ClaimReference:
    fields: dict[str, Any] = {
        "bucket": BUCKET,
        "key": "abc",
        "size": 10,
        "checksum": "sha256:" + "ab" * 32,
        "compression": "gzip",
        "stored_size": 8,
        "expires_at": 1234.5,
    }
    fields.update(changes)
    return ClaimReference(**fields)


def test_reference_header_round_trip_is_compact_json() -> None:
    ref = _ref()
    header = ref.to_header()
    assert " " not in header
    assert json.loads(header)["key"] == "abc"
    assert ClaimReference.from_header(header) == ref
    assert ClaimReference.from_header(_ref(expires_at=None).to_header()).expires_at is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not json",
        "[1, 2]",
        '{"bucket": "claims"}',
        json.dumps({**json.loads(_ref().to_header()), "v": 2}),
        json.dumps({**json.loads(_ref().to_header()), "size": "10"}),
        json.dumps({**json.loads(_ref().to_header()), "size": -1}),
        json.dumps({**json.loads(_ref().to_header()), "checksum": "md5:00"}),
        json.dumps({**json.loads(_ref().to_header()), "compression": "lz4"}),
        json.dumps({**json.loads(_ref().to_header()), "extra": 1}),
    ],
)
def test_malformed_header_raises_invalid_claim_reference(header: str) -> None:
    with pytest.raises(InvalidClaimReference) as info:
        ClaimReference.from_header(header)
    assert isinstance(info.value, PrismError)
    assert info.value.header == header


def test_reference_outside_the_configured_bucket_is_rejected() -> None:
    async def go() -> None:
        _, cc = await make(key_prefix="p/")
        for ref in (_ref(bucket="other", key="p/x"), _ref(key="elsewhere")):
            message = Message(b"", {FIELD: ref.to_header()})
            with pytest.raises(InvalidClaimReference):
                await cc.incoming(message)
            with pytest.raises(InvalidClaimReference):
                await cc.release(message)
            with pytest.raises(InvalidClaimReference):
                await cc.release(ref)

    run(go)


# --- threshold, round trip, compression, checksum ---------------------------------------


def test_threshold_is_strictly_greater() -> None:
    async def go() -> None:
        driver, cc = await make(threshold=1024)
        objects = driver.objects()
        at = Message(sample(1024), {"a": "1"}, key="k")
        assert await cc.outgoing(at) is at
        assert await keys(objects) == []
        above = await cc.outgoing(Message(sample(1025), {"a": "1"}, key="k"))
        assert above.payload == b""
        assert above.key == "k"
        assert above.headers["a"] == "1"
        ref = ClaimReference.from_header(above.headers[FIELD])
        assert await keys(objects) == [ref.key]
        assert ref.size == 1025
        assert ref.checksum == "sha256:" + hashlib.sha256(sample(1025)).hexdigest()
        restored = await cc.incoming(above)
        assert restored == Message(sample(1025), {"a": "1"}, "k")
        assert cc.metrics.claims_created == 1

    run(go)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("size", [0, 1, 1025, 70_000, 300_000])
def test_round_trip_buffered_and_chunked(compression: str, size: int) -> None:
    async def go() -> None:
        # streaming_threshold 64 KiB and small chunks: the larger sizes take the chunked paths.
        _, cc = await make(threshold=0, compression=compression, streaming_threshold=65_536, chunk_size=4096)
        payload = sample(size)[: size // 2] + b"z" * (size - size // 2)
        claimed = await cc.outgoing(Message(payload))
        assert (FIELD in claimed.headers) == (size > 0)
        assert (await cc.incoming(claimed)).payload == payload

    run(go)


def test_gzip_really_shrinks_the_stored_object() -> None:
    async def go() -> None:
        driver, cc = await make(compression="gzip")
        payload = b"prism claim check " * 10_000
        claimed = await cc.outgoing(Message(payload))
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        info = await driver.objects().info(BUCKET, ref.key)
        assert ref.stored_size == info.size < len(payload) / 20
        assert gzip.decompress(await driver.objects().get(BUCKET, ref.key)) == payload
        assert (await cc.incoming(claimed)).payload == payload

    run(go)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("streaming", [False, True])
def test_corrupt_object_raises_checksum_mismatch(compression: str, streaming: bool) -> None:
    async def go() -> None:
        driver, cc = await make(compression=compression, streaming_threshold=4096 if streaming else 1 << 20)
        payload = b"0123456789" * 1000
        claimed = await cc.outgoing(Message(payload))
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        objects = driver.objects()
        stored = await objects.get(BUCKET, ref.key)
        # A valid encoding of a different payload of the same size: only the checksum can tell.
        other = payload[:-1] + b"X"
        forged = gzip.compress(other) if compression == "gzip" else other
        for bad in (forged, stored[:-3], stored + b"junk", b"\x00" * len(stored)):
            await objects.put(BUCKET, ref.key, bad)
            with pytest.raises(ChecksumMismatch) as info:
                await cc.incoming(claimed)
            assert info.value.reference == ref
        assert cc.metrics.checksum_mismatches == 4

    run(go)


def test_gzip_bomb_is_stopped_at_the_claimed_size() -> None:
    async def go() -> None:
        driver, cc = await make(compression="gzip")
        claimed = await cc.outgoing(Message(b"a" * 2000))
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        await driver.objects().put(BUCKET, ref.key, gzip.compress(b"\x00" * (50 << 20)))
        with pytest.raises(ChecksumMismatch, match="more than 2000 bytes"):
            await cc.incoming(claimed)

    run(go)


def test_missing_object_raises_claim_not_found() -> None:
    async def go() -> None:
        driver, cc = await make(streaming_threshold=2000)
        for size in (1500, 5000):  # buffered and chunked path
            claimed = await cc.outgoing(Message(sample(size)))
            ref = ClaimReference.from_header(claimed.headers[FIELD])
            await driver.objects().delete(BUCKET, ref.key)
            with pytest.raises(ClaimNotFound) as info:
                await cc.incoming(claimed)
            assert info.value.reference == ref
        assert cc.metrics.claim_not_found_errors == 2

    run(go)


def test_max_payload_rejects_and_writes_nothing() -> None:
    async def go() -> None:
        driver, cc = await make(max_payload=4096)
        with pytest.raises(PayloadTooLarge):
            await cc.outgoing(Message(sample(4097)))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield sample(1000)

        with pytest.raises(PayloadTooLarge):
            await cc.outgoing_stream(chunks())
        assert await keys(driver.objects()) == []
        assert cc.metrics.claims_created == 0
        assert FIELD in (await cc.outgoing(Message(sample(4096)))).headers

    run(go)


def test_ttl_is_set_on_the_stored_object() -> None:
    async def go() -> None:
        import time

        driver, cc = await make(ttl=600)
        before = time.time()
        claimed = await cc.outgoing(Message(sample(2000)))
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        info = await driver.objects().info(BUCKET, ref.key)
        assert info.expires_at is not None
        assert before + 600 - 1 <= info.expires_at <= time.time() + 600 + 1
        assert ref.expires_at == info.expires_at

    run(go)


def test_release_deletes_or_keeps_and_counts() -> None:
    async def go() -> None:
        driver, cc = await make()
        claimed = await cc.outgoing(Message(sample(2000)))
        await cc.release(claimed)
        await cc.release(ClaimReference.from_header(claimed.headers[FIELD]))  # idempotent
        assert await keys(driver.objects()) == []
        assert cc.metrics.claims_deleted == 2
        await cc.release(Message(b"inline"))  # nothing to release

        driver, keep = await make(on_consume="keep")
        claimed = await keep.outgoing(Message(sample(2000)))
        await keep.release(claimed)
        assert len(await keys(driver.objects())) == 1
        assert (await keep.incoming(claimed)).payload == sample(2000)

    run(go)


def test_already_claimed_message_is_not_claimed_twice() -> None:
    async def go() -> None:
        driver, cc = await make()
        claimed = await cc.outgoing(Message(sample(2000)))
        assert await cc.outgoing(claimed) is claimed
        assert len(await keys(driver.objects())) == 1

    run(go)


# --- streaming -----------------------------------------------------------------------------


def test_stream_round_trip_with_gzip_and_verification_at_the_end() -> None:
    async def go() -> None:
        driver, cc = await make(compression="gzip", chunk_size=1000)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(50):
                yield bytes([i]) * 997

        claimed = await cc.outgoing_stream(chunks(), headers={"h": "v"}, key="k")
        assert claimed.key == "k"
        assert claimed.headers["h"] == "v"
        ref = ClaimReference.from_header(claimed.headers[FIELD])
        assert ref.size == 50 * 997
        assert ref.stored_size < ref.size / 10
        out = [c async for c in cc.incoming_stream(claimed)]
        assert max(len(c) for c in out) <= 1000
        assert b"".join(out) == b"".join(bytes([i]) * 997 for i in range(50))
        # Corrupting the last byte is only noticed when the stream ends.
        await driver.objects().put(BUCKET, ref.key, gzip.compress(b"".join(out)[:-1] + b"?"))
        seen: list[bytes] = []

        async def consume() -> None:
            async for chunk in cc.incoming_stream(claimed):
                seen.append(chunk)

        with pytest.raises(ChecksumMismatch):
            await consume()
        assert sum(map(len, seen)) == ref.size
        inline = [c async for c in cc.incoming_stream(Message(b"small"))]
        assert inline == [b"small"]

    run(go)


def test_stream_of_one_hundred_megabytes_stays_in_bounded_memory(tmp_path: Path) -> None:
    localfs = pytest.importorskip("prism_testkit.backends.localfs")
    size, chunk = 100 << 20, 1 << 20
    block = sample(chunk, seed=1)

    async def go() -> None:
        driver = localfs.open_localfs(tmp_path)
        cc = ClaimCheck(driver.objects(), ClaimCheckConfig(threshold=1024, bucket=BUCKET, compression="gzip"))
        await cc.ensure_bucket()

        async def produce() -> AsyncIterator[bytes]:
            for i in range(size // chunk):
                yield block[i:] + block[:i]  # differs per chunk, still incompressible

        tracemalloc.start()
        try:
            claimed = await cc.outgoing_stream(produce())
            digest = hashlib.sha256()
            total = 0
            async for part in cc.incoming_stream(claimed):
                digest.update(part)
                total += len(part)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        expected = hashlib.sha256()
        for i in range(size // chunk):
            expected.update(block[i:] + block[:i])
        assert total == size
        assert digest.digest() == expected.digest()
        assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"
        await cc.release(claimed)
        assert await keys(driver.objects()) == []

    run(go)


# --- adapters ------------------------------------------------------------------------------


def test_queue_acks_before_releasing_and_redelivery_finds_the_object() -> None:
    async def go() -> None:
        driver, cc = await make()
        queue = ClaimCheckQueue(driver.queue(), cc)
        payload = sample(5000)
        await queue.send("q", Message(payload, {"h": "1"}))
        first = await queue.receive("q")
        assert first is not None
        assert first.message == Message(payload, {"h": "1"})
        await queue.nack("q", first)
        assert len(await keys(driver.objects())) == 1
        again = await queue.receive("q")
        assert again is not None
        assert again.attempt == 2
        assert again.message.payload == payload
        await queue.ack("q", again)
        assert await keys(driver.objects()) == []
        assert await driver.queue().receive("q") is None
        assert cc.metrics.claims_deleted == 1

    run(go)


def test_queue_broken_claim_carries_the_raw_delivery() -> None:
    async def go() -> None:
        driver, cc = await make()
        queue = ClaimCheckQueue(driver.queue(), cc)
        await queue.send("q", Message(sample(5000)))
        [key] = await keys(driver.objects())
        await driver.objects().delete(BUCKET, key)
        with pytest.raises(ClaimNotFound) as info:
            await queue.receive("q")
        raw = info.value.raw
        assert raw is not None
        await queue.ack("q", raw)  # type: ignore[arg-type]  # drop the poison message
        assert await driver.queue().receive("q") is None

    run(go)


def test_log_commit_releases_and_keep_allows_replay() -> None:
    async def go() -> None:
        driver, cc = await make()
        log = ClaimCheckLog(driver.log(), cc)
        await log.append("l", Message(sample(3000)))
        await log.append("l", Message(b"inline"))
        records = await log.read("l", 0)
        assert [r.message.payload for r in records] == [sample(3000), b"inline"]
        await log.commit("l", "g", 2, records)
        assert await log.committed("l", "g") == 2
        assert await keys(driver.objects()) == []
        with pytest.raises(ClaimNotFound):
            await log.read("l", 0)

        driver, keep = await make(on_consume="keep")
        log = ClaimCheckLog(driver.log(), keep)
        await log.append("l", Message(sample(3000)))
        records = await log.read("l", 0)
        await log.commit("l", "g", 1, records)
        assert [r.message.payload for r in await log.read("l", 0)] == [sample(3000)]

    run(go)


def test_pubsub_requires_keep_and_fans_out() -> None:
    async def go() -> None:
        driver, cc = await make()
        with pytest.raises(ConfigurationError):
            ClaimCheckPubSub(driver.pubsub(), cc)
        driver, keep = await make(on_consume="keep", ttl=60)
        pubsub = ClaimCheckPubSub(driver.pubsub(), keep)
        subs = [await pubsub.subscribe("t"), await pubsub.subscribe("t")]
        await pubsub.publish("t", Message(sample(4000)))
        for sub in subs:
            message = await sub.receive(1.0)
            assert message is not None
            assert message.payload == sample(4000)
            await sub.close()

    run(go)


def test_send_failure_deletes_the_orphaned_object() -> None:
    async def go() -> None:
        driver, cc = await make()

        class Refusing:
            async def send(self, queue: str, message: Message) -> str:
                raise PayloadTooLarge(len(message.headers[FIELD]), 10, "message")

        queue = ClaimCheckQueue(Refusing(), cc)  # type: ignore[arg-type]
        with pytest.raises(PayloadTooLarge):
            await queue.send("q", Message(sample(5000)))
        assert await keys(driver.objects()) == []

    run(go)
