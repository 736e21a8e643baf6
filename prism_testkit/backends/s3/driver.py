"""s3: an object store over the S3 API (:mod:`minio` client), with ``objects.ttl``.

The private server is moto's S3 server (``python -m moto.server``), which keeps everything in
memory: it is declared **not durable**. Any URL of an S3-compatible service works too:
``s3://ACCESS:SECRET@host:port`` (plain HTTP), ``http://...`` or ``https://...``; an optional
``?region=...`` is passed on. The secret never appears in messages (``redact``).

Mapping: buckets are S3 buckets of the same name (the harness's names are valid bucket names);
keys are S3 object keys, except that '%', control characters and whole '.' / '..' path segments
are percent-encoded (minio refuses dot segments, which HTTP stacks would normalise away; an S3
server need not take a control character in a path nor carry it in a listing's XML). The
minio client is synchronous, so every call runs in a worker thread (``asyncio.to_thread``):
the loop never blocks.

Metadata: the user's metadata map goes, as percent-encoded JSON, into one user-metadata header
(``x-amz-meta-prism-meta``), because S3 lower-cases metadata names, restricts their characters
and treats names such as ``content-type`` as standard headers: one header keeps every map
exactly as given.

TTL: S3 lifecycle rules act with a granularity of days and moto never expires anything, so the
expiry time (unix seconds) is stored in ``x-amz-meta-prism-expires-at``, and an expired object
is treated as absent by every read (get, get_stream, info, exists, list_keys, delete_bucket),
which also deletes it lazily. Nothing removes an expired object that is never read again: on a
real S3 bucket, add a lifecycle expiration rule for physical removal. ``set_ttl`` rewrites the
metadata with a server-side copy onto the object itself. ``list_keys`` needs one HEAD request
per listed object to see expiry times (list responses carry no user metadata). The expiry of a
``put_stream`` counts from the start of the upload, when the metadata is sent.

Streams: ``put_stream`` feeds the async chunk iterator through a thread-safe reader into a
sequential multipart upload (5 MiB parts), so memory stays around two parts whatever the
object's size; a failed stream aborts the upload and leaves no object (a replaced object keeps
its content). ``get_stream`` reads the response in ``chunk_size`` pieces and releases the
connection when the iterator ends or is closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import BucketNotEmpty, BucketNotFound, ObjectNotFound, ProvisioningError
from prism_testkit.interfaces import ObjectInfo, ObjectStore
from prism_testkit.provision.base import Endpoint
from prism_testkit.redaction import redact

from .._common import BytesLike, as_bytes, check_count, check_metadata, check_name, check_positive

_META = "x-amz-meta-prism-meta"
_EXPIRES = "x-amz-meta-prism-expires-at"
_PART_SIZE = 5 << 20  # S3's smallest multipart part: bounds put_stream's memory
_DELETE_BATCH = 1000  # S3's limit per DeleteObjects request
_REGION = "us-east-1"

T = TypeVar("T")
_HeaderMap = dict[str, str | list[str] | tuple[str]]  # minio's type of object metadata


def _code(exc: S3Error) -> str:
    return exc.code or ""


class _Headers:
    """What we store in an object's user metadata, and read back from its headers."""

    @staticmethod
    def encode(metadata: Mapping[str, str], expires_at: float | None) -> _HeaderMap:
        headers: _HeaderMap = {
            _META: urllib.parse.quote(json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":")))
        }
        if expires_at is not None:
            headers[_EXPIRES] = repr(expires_at)
        return headers

    @staticmethod
    def decode(headers: Mapping[str, str]) -> tuple[dict[str, str], float | None]:
        lowered = {k.lower(): v for k, v in headers.items()}
        raw = lowered.get(_META)
        metadata = json.loads(urllib.parse.unquote(raw)) if raw else {}
        expires = lowered.get(_EXPIRES)
        return metadata, float(expires) if expires else None


def _expired(expires_at: float | None, now: float | None = None) -> bool:
    return expires_at is not None and expires_at <= (time.time() if now is None else now)


# '%' (so the mapping stays injective) and the control characters, which an S3 server need not
# take in a request's path nor carry in the XML of a listing or a multi-object delete (moto
# answered a put of such a key with 404, and the delete naming one with 500).
_ESCAPED = str.maketrans({"%": "%25"} | {chr(c): f"%{c:02X}" for c in (*range(0x20), 0x7F)})


def _s3_key(key: str) -> str:
    """The S3 name of ``key``. minio (rightly: HTTP stacks normalise them away) refuses '.' and
    '..' path segments, so those are percent-encoded, as are '%' itself, so the mapping is
    injective, and the control characters (:data:`_ESCAPED`). Every other key is stored as is."""
    segments = key.translate(_ESCAPED).split("/")
    return "/".join("%2E" * len(s) if s in (".", "..") else s for s in segments)


def _user_key(name: str) -> str:
    return urllib.parse.unquote(name)


def _s3_list_prefix(prefix: str) -> str:
    """An S3 listing prefix that covers every key starting with ``prefix`` (callers filter).
    A trailing partial segment of dots may become an encoded '.' or '..' segment, so it is
    left out of the listing prefix."""
    head, _, last = prefix.rpartition("/")
    if last and set(last) == {"."}:
        return _s3_key(head + "/") if head or prefix.startswith("/") else ""
    return _s3_key(prefix)


class _ChunkReader(io.RawIOBase):
    """A blocking file-like view of an async chunk iterator, read from a worker thread.

    Each ``read(n)`` asks the event loop for chunks until it has ``n`` bytes or the iterator
    ends; only the chunk being split is held besides the returned bytes. ``cancel`` makes the
    next read fail, so an abandoned upload is aborted instead of waiting forever.
    """

    def __init__(self, chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._iterator = aiter(chunks)
        self._loop = loop
        self._rest = b""
        self._done = False
        self._cancelled = False
        self.size = 0

    def cancel(self) -> None:
        self._cancelled = True

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes | None:
        future = asyncio.run_coroutine_threadsafe(self._anext(), self._loop)
        while True:
            if self._cancelled:
                future.cancel()
                raise asyncio.CancelledError("put_stream was cancelled")
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue

    async def _anext(self) -> bytes | None:
        try:
            chunk = await anext(self._iterator)
        except StopAsyncIteration:
            return None
        if not isinstance(chunk, BytesLike):
            raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
        return bytes(chunk)

    def read(self, size: int = -1) -> bytes:
        parts, have = [], 0
        if self._rest:
            parts.append(self._rest)
            have, self._rest = len(self._rest), b""
        while (size < 0 or have < size) and not self._done:
            chunk = self._next_chunk()
            if chunk is None:
                self._done = True
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if size >= 0 and len(data) > size:
            data, self._rest = data[:size], data[size:]
        self.size += len(data)
        return data


class _S3Objects(ObjectStore):
    def __init__(self, driver: S3Driver) -> None:
        self._driver = driver

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def _client(self) -> Minio:
        return self._driver.client

    def _expires_at(self, ttl: float | None, what: str = "put with a ttl") -> float | None:
        if ttl is None:
            return None
        self._driver.require(Capability.OBJECTS_TTL, what)
        return time.time() + check_positive(ttl, "ttl")

    # --- synchronous helpers (worker threads) -----------------------------------------------

    def _translate(self, exc: S3Error, bucket: str, key: str | None = None) -> Exception:
        code = _code(exc)
        if code == "NoSuchBucket":
            return BucketNotFound(bucket)
        if code == "BucketNotEmpty":
            return BucketNotEmpty(bucket)
        if code in ("NoSuchKey", "ResourceNotFound", "NoSuchObject") and key is not None:
            # A HEAD of a missing bucket answers a bare 404 too: tell the two apart.
            if not self._client.bucket_exists(bucket):
                return BucketNotFound(bucket)
            return ObjectNotFound(bucket, key)
        return exc

    def _stat(self, bucket: str, key: str) -> ObjectInfo:
        """The live object's info; an expired object is deleted on the way and reported absent."""
        try:
            stat = self._client.stat_object(bucket, _s3_key(key))
        except S3Error as exc:
            raise self._translate(exc, bucket, key) from None
        metadata, expires_at = _Headers.decode(stat.metadata or {})
        if _expired(expires_at):
            self._remove_expired(bucket, key, stat.etag)
            raise ObjectNotFound(bucket, key)
        return ObjectInfo(bucket, key, int(stat.size or 0), MappingProxyType(metadata), expires_at)

    def _remove_expired(self, bucket: str, key: str, etag: str | None) -> None:
        # Only the version we saw expire: a put that replaced it meanwhile must survive.
        with contextlib.suppress(S3Error):
            stat = self._client.stat_object(bucket, _s3_key(key))
            if etag is None or stat.etag == etag:
                self._client.remove_object(bucket, _s3_key(key))

    def _open(self, bucket: str, key: str) -> Any:
        try:
            response = self._client.get_object(bucket, _s3_key(key))
        except S3Error as exc:
            raise self._translate(exc, bucket, key) from None
        _, expires_at = _Headers.decode(response.headers)
        if _expired(expires_at):
            etag = response.headers.get("ETag", "").strip('"') or None
            _release(response)
            self._remove_expired(bucket, key, etag)
            raise ObjectNotFound(bucket, key)
        return response

    def _read(self, bucket: str, key: str) -> bytes:
        response = self._open(bucket, key)
        try:
            return bytes(response.read())
        finally:
            _release(response)

    def _live_keys(self, bucket: str, prefix: str) -> list[str]:
        try:
            objects = self._client.list_objects(bucket, prefix=_s3_list_prefix(prefix), recursive=True)
            listed = [(_user_key(o.object_name), o.etag) for o in objects if o.object_name]
        except S3Error as exc:
            raise self._translate(exc, bucket) from None
        keys, now = [], time.time()
        for key, etag in listed:
            if not key.startswith(prefix):
                continue
            try:
                stat = self._client.stat_object(bucket, _s3_key(key))
            except S3Error:
                continue  # deleted since the listing
            if _expired(_Headers.decode(stat.metadata or {})[1], now):
                self._remove_expired(bucket, key, etag)
            else:
                keys.append(key)
        return keys

    def _delete_bucket(self, bucket: str) -> None:
        try:
            self._client.remove_bucket(bucket)
            return
        except S3Error as exc:
            if _code(exc) != "BucketNotEmpty":
                raise self._translate(exc, bucket) from None
        # Expired objects are absent: if they are all that is left, the bucket is empty.
        if self._live_keys(bucket, ""):
            raise BucketNotEmpty(bucket)
        try:
            self._client.remove_bucket(bucket)
        except S3Error as exc:
            raise self._translate(exc, bucket) from None

    def _put(self, bucket: str, key: str, data: Any, length: int, headers: _HeaderMap) -> None:
        try:
            self._client.put_object(
                bucket,
                _s3_key(key),
                data,
                length,
                metadata=headers,
                part_size=_PART_SIZE if length < 0 else 0,
                num_parallel_uploads=1,  # one part in flight: bounded memory
            )
        except S3Error as exc:
            raise self._translate(exc, bucket) from None

    def _set_expiry(self, bucket: str, key: str, expires_at: float) -> None:
        info = self._stat(bucket, key)
        headers = _Headers.encode(info.metadata, expires_at)
        try:
            self._client.copy_object(
                bucket, _s3_key(key), CopySource(bucket, _s3_key(key)), metadata=headers, metadata_directive=REPLACE
            )
        except S3Error as exc:
            raise self._translate(exc, bucket, key) from None

    def _delete(self, bucket: str, key: str) -> None:
        try:
            self._client.remove_object(bucket, _s3_key(key))
        except S3Error as exc:
            if _code(exc) == "NoSuchKey":
                return
            raise self._translate(exc, bucket) from None
        if not self._client.bucket_exists(bucket):  # some servers answer 204 for a missing bucket
            raise BucketNotFound(bucket)

    # --- buckets -------------------------------------------------------------------------------

    async def create_bucket(self, bucket: str) -> None:
        check_name(bucket, "bucket")
        try:
            await self._call(self._client.make_bucket, bucket)
        except S3Error as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def delete_bucket(self, bucket: str) -> None:
        await self._call(self._delete_bucket, check_name(bucket, "bucket"))

    async def bucket_exists(self, bucket: str) -> bool:
        return await self._call(self._client.bucket_exists, check_name(bucket, "bucket"))

    # --- objects -------------------------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        bucket, key, data = check_name(bucket, "bucket"), check_name(key, "key"), as_bytes(data, "data")
        meta, expires_at = check_metadata(metadata), self._expires_at(ttl)
        await self._call(self._put, bucket, key, io.BytesIO(data), len(data), _Headers.encode(meta, expires_at))
        return ObjectInfo(bucket, key, len(data), MappingProxyType(meta), expires_at)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        bucket, key, meta = check_name(bucket, "bucket"), check_name(key, "key"), check_metadata(metadata)
        expires_at = self._expires_at(ttl)
        reader = _ChunkReader(chunks, asyncio.get_running_loop())
        upload = asyncio.ensure_future(
            self._call(self._put, bucket, key, reader, -1, _Headers.encode(meta, expires_at))
        )
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            reader.cancel()  # the thread's next read fails and minio aborts the multipart upload
            with contextlib.suppress(BaseException):
                await upload
            raise
        return ObjectInfo(bucket, key, reader.size, MappingProxyType(meta), expires_at)

    async def get(self, bucket: str, key: str) -> bytes:
        return await self._call(self._read, check_name(bucket, "bucket"), check_name(key, "key"))

    def get_stream(self, bucket: str, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_count(chunk_size, "chunk_size", 1)
        return self._stream(check_name(bucket, "bucket"), check_name(key, "key"), chunk_size)

    async def _stream(self, bucket: str, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        response = await self._call(self._open, bucket, key)
        try:
            pieces: Iterator[bytes] = response.stream(chunk_size)
            while True:
                chunk = await self._call(next, pieces, None)
                if chunk is None:
                    return
                if chunk:
                    yield bytes(chunk)
        finally:
            _release(response)

    async def delete(self, bucket: str, key: str) -> None:
        await self._call(self._delete, check_name(bucket, "bucket"), check_name(key, "key"))

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await self.info(bucket, key)
        except ObjectNotFound:
            return False
        return True

    async def info(self, bucket: str, key: str) -> ObjectInfo:
        return await self._call(self._stat, check_name(bucket, "bucket"), check_name(key, "key"))

    async def set_ttl(self, bucket: str, key: str, ttl: float) -> None:
        expires_at = self._expires_at(ttl, "set_ttl")
        assert expires_at is not None
        await self._call(self._set_expiry, check_name(bucket, "bucket"), check_name(key, "key"), expires_at)

    def list_keys(self, bucket: str, prefix: str = "") -> AsyncIterator[str]:
        return self._list_keys(check_name(bucket, "bucket"), prefix)

    async def _list_keys(self, bucket: str, prefix: str) -> AsyncIterator[str]:
        for key in await self._call(self._live_keys, bucket, prefix):
            yield key


def _release(response: Any) -> None:
    with contextlib.suppress(Exception):
        response.close()
        response.release_conn()


# --- driver ----------------------------------------------------------------------------------


def _client_from_url(name: str, url: str) -> Minio:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("s3", "http", "https") or not parts.hostname:
        raise ProvisioningError(f"backend {name!r} needs an s3://ACCESS:SECRET@host:port URL, got {redact(url)}")
    access = urllib.parse.unquote(parts.username or "")
    secret = urllib.parse.unquote(parts.password or "")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    endpoint = f"{host}:{parts.port}" if parts.port else host
    region = urllib.parse.parse_qs(parts.query).get("region", [_REGION])[0]
    return Minio(
        endpoint, access_key=access or None, secret_key=secret or None, secure=parts.scheme == "https", region=region
    )


class S3Driver(Driver):
    backend_name: ClassVar[str] = "s3"

    def __init__(self, name: str, capabilities: frozenset[Capability], client: Minio) -> None:
        super().__init__(name, capabilities)
        self._client: Minio | None = client

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        client = _client_from_url(name, endpoint.url)
        try:
            await asyncio.to_thread(client.list_buckets)
        except Exception as exc:
            message = redact(f"backend {name!r}: cannot reach {endpoint.url}: {type(exc).__name__}: {exc}")
            raise ProvisioningError(message) from None
        return cls(name, capabilities, client)

    @property
    def client(self) -> Minio:
        if self._client is None:
            raise RuntimeError(f"driver {self.name!r} is closed")
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client._http.clear()  # minio exposes no close(); this drops the pooled connections

    def _bucket_names(self, prefix: str) -> list[str]:
        return sorted(b.name for b in self.client.list_buckets() if b.name.startswith(prefix))

    def _purge(self, prefix: str) -> None:
        client = self.client
        for bucket in self._bucket_names(prefix):
            for _ in range(3):  # a put racing with the purge may refill the bucket once or twice
                try:
                    keys = [o.object_name for o in client.list_objects(bucket, recursive=True) if o.object_name]
                    for start in range(0, len(keys), _DELETE_BATCH):
                        batch = [DeleteObject(k) for k in keys[start : start + _DELETE_BATCH]]
                        for error in client.remove_objects(bucket, batch):
                            raise RuntimeError(f"purge of bucket {bucket!r} failed: {error.code} {error.message}")
                    client.remove_bucket(bucket)
                    break
                except S3Error as exc:
                    if _code(exc) == "NoSuchBucket":
                        break
                    if _code(exc) != "BucketNotEmpty":
                        raise

    async def purge(self, prefix: str) -> None:
        await asyncio.to_thread(self._purge, prefix)

    async def leftovers(self, prefix: str) -> list[str]:
        return [f"bucket:{name}" for name in await asyncio.to_thread(self._bucket_names, prefix)]

    def objects(self) -> ObjectStore:
        return _S3Objects(self)
