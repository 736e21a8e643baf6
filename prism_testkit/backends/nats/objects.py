"""The object store: buckets of keyed, chunked objects in the layout of the NATS object store
clients (stream ``OBJ_<bucket>``, chunks on ``$O.<bucket>.C.<nuid>``, metadata on
``$O.<bucket>.M.<base64url(key)>``), so another NATS client reads what the harness wrote. Its
own module because it is the one interface with a multi-step write (chunks, then metadata, then
the old chunks purged) and a bucket lifecycle of its own, both written over the JetStream client.

A put writes chunks under a fresh nuid and then the metadata, replacing the old metadata only if
it is still the one read before (expected last subject sequence), then purges the old chunks: a
failed stream leaves the old object untouched. No TTL: a NATS object store has only a
bucket-wide ``max_age``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.nuid import NUID

from prism_testkit import patience
from prism_testkit.capabilities import Capability
from prism_testkit.errors import BucketNotEmpty, BucketNotFound, ConnectionLost, ObjectNotFound
from prism_testkit.interfaces import ObjectInfo

from .._common import as_bytes, check_count, check_metadata, check_name
from .codec import named, token
from .jetstream import (
    DUPLICATE_WINDOW,
    ERR_STREAM_NOT_FOUND,
    ERR_WRONG_LAST_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ,
    ApiError,
    JetStream,
)

OBJ_STREAM = "OBJ_"
CHUNK_SIZE = 128 << 10  # object chunks, as the NATS object store clients write them


@dataclass(frozen=True)
class _ObjectMeta:
    seq: int
    nuid: str
    size: int
    metadata: dict[str, str]


class NatsObjects:
    """The object store of one backend instance; ``require`` raises for an undeclared capability."""

    def __init__(self, js: JetStream, require: Callable[[Capability, str], None]) -> None:
        self._js = js
        self._require = require

    @staticmethod
    def _stream(bucket: str) -> str:
        return OBJ_STREAM + named(bucket, "bucket")

    @staticmethod
    def _meta_subject(bucket: str, key: str) -> str:
        return f"$O.{token(bucket)}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"

    def _config(self, bucket: str, *, closed: bool = False) -> dict[str, Any]:
        """The bucket's stream config; ``closed``: its subjects swapped for one no put uses."""
        name = named(bucket, "bucket")
        subjects = [f"$O.{name}.closing"] if closed else [f"$O.{name}.C.>", f"$O.{name}.M.>"]
        return {
            "name": OBJ_STREAM + name,
            "subjects": subjects,
            "retention": "limits",
            "storage": "file",
            "discard": "new",
            "allow_rollup_hdrs": True,
            "allow_direct": True,
            "num_replicas": self._js.replicas,
            "duplicate_window": int(DUPLICATE_WINDOW * 1e9),
        }

    async def create_bucket(self, bucket: str) -> None:
        await self._js.create_stream(self._config(bucket))

    async def delete_bucket(self, bucket: str) -> None:
        """JetStream has no "delete if empty": the bucket is closed to puts first (its subjects
        swapped, so a put sent meanwhile finds no stream and waits), then checked, then deleted
        or reopened. Checked and deleted while open, a put landing in between was lost with it;
        and a delete that found the stream gone is BucketNotFound, so concurrent deletes of one
        bucket succeed once."""
        stream = self._stream(bucket)
        try:
            await self._update(bucket, closed=True)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket) from None
            raise
        if await self._js.subjects(stream, f"$O.{token(bucket)}.M.>"):
            await self._update(bucket, closed=False)
            raise BucketNotEmpty(bucket)
        try:
            await self._js.delete_stream(stream, missing_ok=False)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket) from None
            raise

    async def _update(self, bucket: str, *, closed: bool) -> None:
        stream = self._stream(bucket)
        await self._js.api(f"$JS.API.STREAM.UPDATE.{stream}", self._config(bucket, closed=closed), repeatable=True)

    async def _publish(self, bucket: str, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> int:
        """Publish into ``bucket``'s stream. Nobody answering means the bucket is gone
        (BucketNotFound) or a delete_bucket has it closed while it checks: then the put waits
        for the bucket to reopen or vanish, within the ``calm-op`` bound."""
        deadline = time.monotonic() + patience.bound("calm-op")
        while True:
            try:
                return await self._js.publish(subject, payload, headers)
            except ConnectionLost as exc:
                if not isinstance(exc.__cause__, nats.errors.NoRespondersError):
                    raise
                if not await self._js.stream_exists(self._stream(bucket)):
                    raise BucketNotFound(bucket) from None
                if time.monotonic() > deadline:
                    raise ConnectionLost(
                        f"backend {self._js.name!r}: bucket {bucket!r} stayed closed by a delete_bucket "
                        f"for {patience.describe('calm-op')}"
                    ) from exc
                await asyncio.sleep(patience.handed("poll"))

    async def bucket_exists(self, bucket: str) -> bool:
        return await self._js.stream_exists(self._stream(bucket))

    async def _require_bucket(self, bucket: str) -> str:
        stream = self._stream(bucket)
        if not await self._js.stream_exists(stream):
            raise BucketNotFound(bucket)
        return stream

    async def _meta(self, bucket: str, key: str) -> _ObjectMeta | None:
        check_name(key, "key")
        stream = self._stream(bucket)
        try:
            stored = await self._js.last_msg(stream, self._meta_subject(bucket, key), missing_stream_ok=False)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket) from None
            raise
        if stored is None:
            return None
        info = json.loads(stored.data)
        if info.get("deleted"):
            return None
        return _ObjectMeta(stored.seq, info["nuid"], int(info.get("size") or 0), dict(info.get("metadata") or {}))

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        body = as_bytes(data, "data")

        async def one() -> AsyncIterator[bytes]:
            yield body

        return await self.put_stream(bucket, key, one(), metadata=metadata, ttl=ttl)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        check_name(key, "key")
        meta = check_metadata(metadata)
        if ttl is not None:
            self._require(Capability.OBJECTS_TTL, "put with a ttl")
        await self._require_bucket(bucket)
        nuid = NUID().next().decode()
        chunk_subject = f"$O.{token(bucket)}.C.{nuid}"
        digest, size, count = hashlib.sha256(), 0, 0
        stream = self._stream(bucket)
        try:
            buffer = bytearray()
            async for piece in chunks:
                buffer += as_bytes(piece, "chunk")
                while len(buffer) >= CHUNK_SIZE:
                    chunk = bytes(buffer[:CHUNK_SIZE])
                    del buffer[:CHUNK_SIZE]
                    await self._publish(bucket, chunk_subject, chunk)
                    digest.update(chunk)
                    size, count = size + len(chunk), count + 1
            if buffer:
                await self._publish(bucket, chunk_subject, bytes(buffer))
                digest.update(buffer)
                size, count = size + len(buffer), count + 1
            replaced = await self._write_meta(bucket, key, nuid, size, count, digest.digest(), meta)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._js.purge_subject(stream, chunk_subject))
            raise
        if replaced is not None and replaced != nuid:
            await self._js.purge_subject(stream, f"$O.{token(bucket)}.C.{replaced}")
        return ObjectInfo(bucket, key, size, dict(meta), None)

    async def _write_meta(
        self, bucket: str, key: str, nuid: str, size: int, count: int, digest: bytes, meta: dict[str, str]
    ) -> str | None:
        """Publish the object's metadata (replacing exactly the version read); the nuid of the
        chunks it replaced, if any."""
        subject = self._meta_subject(bucket, key)
        info = {
            "name": key,
            "bucket": token(bucket),
            "nuid": nuid,
            "size": size,
            "chunks": count,
            "mtime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "digest": "SHA-256=" + base64.urlsafe_b64encode(digest).decode(),
            "options": {"max_chunk_size": CHUNK_SIZE},
            "metadata": meta,
        }
        body = json.dumps(info).encode()
        while True:
            stored = await self._js.last_msg(self._stream(bucket), subject)
            seq = 0 if stored is None else stored.seq
            headers = {"Nats-Rollup": "sub", EXPECTED_LAST_SUBJECT_SEQ: str(seq)}
            try:
                await self._publish(bucket, subject, body, headers)
            except ApiError as exc:
                if exc.err_code in ERR_WRONG_LAST_SEQ:
                    continue  # a concurrent put won the race: replace that one instead
                raise
            return None if stored is None else json.loads(stored.data).get("nuid")

    async def get(self, bucket: str, key: str) -> bytes:
        return b"".join([chunk async for chunk in self._chunks(bucket, key)])

    def get_stream(self, bucket: str, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_count(chunk_size, "chunk_size", 1)
        return self._resliced(bucket, key, chunk_size)

    async def _resliced(self, bucket: str, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        async for chunk in self._chunks(bucket, key):
            for start in range(0, len(chunk), chunk_size):
                yield chunk[start : start + chunk_size]

    async def _chunks(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        meta = await self._meta(bucket, key)
        if meta is None:
            raise ObjectNotFound(bucket, key)
        stream, subject = self._stream(bucket), f"$O.{token(bucket)}.C.{meta.nuid}"
        seq, got = 1, 0
        while got < meta.size:
            stored = await self._js.next_msg(stream, subject, seq)
            if stored is None:  # replaced or deleted while we read
                raise ObjectNotFound(bucket, key)
            got += len(stored.data)
            seq = stored.seq + 1
            yield stored.data

    async def delete(self, bucket: str, key: str) -> None:
        meta = await self._meta(bucket, key)
        if meta is None:
            return
        stream = self._stream(bucket)
        await self._js.purge_subject(stream, self._meta_subject(bucket, key))
        await self._js.purge_subject(stream, f"$O.{token(bucket)}.C.{meta.nuid}")

    async def exists(self, bucket: str, key: str) -> bool:
        return await self._meta(bucket, key) is not None

    async def info(self, bucket: str, key: str) -> ObjectInfo:
        meta = await self._meta(bucket, key)
        if meta is None:
            raise ObjectNotFound(bucket, key)
        return ObjectInfo(bucket, key, meta.size, meta.metadata, None)

    async def set_ttl(self, bucket: str, key: str, ttl: float) -> None:
        # Never declared: a NATS object store has only a bucket-wide max_age.
        self._require(Capability.OBJECTS_TTL, "set_ttl")

    def list_keys(self, bucket: str, prefix: str = "") -> AsyncIterator[str]:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        return self._list(bucket, prefix)

    async def _list(self, bucket: str, prefix: str) -> AsyncIterator[str]:
        stream = await self._require_bucket(bucket)
        start = len(f"$O.{token(bucket)}.M.")
        for subject in await self._js.subjects(stream, f"$O.{token(bucket)}.M.>"):
            key = base64.urlsafe_b64decode(subject[start:]).decode()
            if key.startswith(prefix):
                yield key
