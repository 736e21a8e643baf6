"""Claim check (RFC-009 §3, RFC-033, ADR-052, ADR-053): large payloads go to object storage,
the message carries only a reference to them.

The pattern is written against the thin interfaces only (:class:`ObjectStore` for payloads and
a :class:`Queue`, :class:`Log` or :class:`PubSub` for messages) and knows nothing about the
backends behind them. The reference travels in one message header (``config.field``), so the
pattern layers under any messaging interface and leaves the payload empty.

Producer: size check → compress → upload with TTL → send the reference.
Consumer: receive → download → decompress → verify SHA-256 of the original → process → ack →
release (delete the object when ``on_consume == "delete"``). The object is deleted only *after*
the message is acknowledged: a nacked or unacknowledged message must still find its object when
it is redelivered. When a delete fails, the object's TTL (or the bucket's lifecycle policy) is
the safety net (ADR-053's two-phase strategy), and ``claim_delete_failures`` counts it.

Payloads above ``streaming_threshold`` move in ``chunk_size`` pieces through ``put_stream`` /
``get_stream``; :meth:`ClaimCheck.outgoing_stream` and :meth:`ClaimCheck.incoming_stream` claim
and restore payloads that never sit in memory as a whole.

Usage::

    cc = ClaimCheck(objects, ClaimCheckConfig(threshold="1MB", bucket="claims", ttl=604800))
    await cc.ensure_bucket()
    queue = ClaimCheckQueue(raw_queue, cc)
    await queue.send("videos", Message(big_payload))
    delivery = await queue.receive("videos", wait=1.0)
    process(delivery.message.payload)          # the original payload, verified
    await queue.ack("videos", delivery)        # acks, then deletes the claimed object
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import prism_testkit.simulation.clock as clocks
from prism_testkit.config.units import Duration, Size, parse_size
from prism_testkit.errors import (
    BucketNotFound,
    ConfigurationError,
    ConnectionLost,
    NotFound,
    ObjectNotFound,
    PayloadTooLarge,
    PrismError,
)
from prism_testkit.interfaces import (
    Log,
    Message,
    ObjectStore,
    PubSub,
    Queue,
    QueueDelivery,
    Record,
    Subscription,
)
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    MESSAGING,
    CheckContext,
    Complexity,
    ConfigProblem,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)
from prism_testkit.report import metrics as prometheus

__all__ = [
    "DEFAULT_FIELD",
    "ChecksumMismatch",
    "ClaimCheck",
    "ClaimCheckConfig",
    "ClaimCheckError",
    "ClaimCheckLog",
    "ClaimCheckMetrics",
    "ClaimCheckPubSub",
    "ClaimCheckQueue",
    "ClaimCheckSubscription",
    "ClaimNotFound",
    "ClaimReference",
    "InvalidClaimReference",
    "PayloadTooLarge",
    "parse_size",
]

log = logging.getLogger(__name__)

DEFAULT_FIELD = "prism-claim-check"
MiB = 1 << 20

# Object metadata written next to every claimed payload, so an operator looking at the bucket
# can tell what an object is without the message that points to it.
_META_MARKER = "prism-claim-check"
_META_COMPRESSION = "prism-compression"


# --- errors --------------------------------------------------------------------------------


class ClaimCheckError(PrismError):
    """Base of the claim check's data errors.

    ``raw`` is the undecoded delivery, record or message the error came from when an adapter
    raised it, so the caller can still ack/nack/dead-letter a delivery whose claim is broken
    (otherwise it would be redelivered forever).
    """

    raw: object | None = None


class InvalidClaimReference(ClaimCheckError):
    """A claim header that cannot be parsed, or that points outside the configured bucket/prefix."""

    def __init__(self, detail: str, header: str | None = None) -> None:
        self.detail = detail
        self.header = header
        super().__init__(f"invalid claim reference: {detail}")


class ClaimNotFound(ClaimCheckError, NotFound):
    """The claimed object is missing: deleted, expired by its TTL, or its bucket is gone."""

    def __init__(self, reference: ClaimReference) -> None:
        self.reference = reference
        super().__init__(
            f"claimed object {reference.key!r} not found in bucket {reference.bucket!r} (deleted or expired)"
        )


class ChecksumMismatch(ClaimCheckError):
    """The restored payload is not the payload that was claimed (corrupt or replaced object)."""

    def __init__(self, reference: ClaimReference, expected: str, actual: str) -> None:
        self.reference = reference
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"claimed object {reference.key!r} in bucket {reference.bucket!r} is corrupt: "
            f"expected {expected}, got {actual}"
        )


# --- configuration -------------------------------------------------------------------------


class ClaimCheckConfig(BaseModel):
    """How payloads are claimed. Producers and consumers of one namespace must agree on it.

    ``threshold``: a payload is claimed when ``len(payload) > threshold`` — strictly greater,
    as RFC-009 says "payloads > 1MB go to S3"; a payload of exactly ``threshold`` bytes stays
    inline. Sizes accept ints (bytes) or strings like ``"1MB"`` / ``"8MiB"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    threshold: Size = Field(ge=0, description="claim payloads strictly larger than this (bytes)")
    bucket: str = Field(min_length=1, description="bucket holding the claimed payloads")
    key_prefix: str = Field(default="", description="prefix of every object key")
    compression: Literal["none", "gzip"] = "none"
    compression_level: int = Field(default=6, ge=1, le=9, description="gzip level")
    ttl: Duration | None = Field(default=None, gt=0, description="seconds before a stored object expires")
    on_consume: Literal["delete", "keep"] = Field(
        default="delete", description="delete the object after the message is acked, or keep it for replay"
    )
    max_payload: Size | None = Field(
        default=None, ge=0, description="reject larger payloads with PayloadTooLarge; nothing is written"
    )
    streaming_threshold: Size = Field(
        default=8 * MiB, ge=0, description="payloads larger than this move in chunks (put/get_stream)"
    )
    chunk_size: Size = Field(default=MiB, ge=1, description="size of streamed chunks (bytes)")
    field: str = Field(
        default=DEFAULT_FIELD,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="message header that carries the claim reference",
    )


# --- the reference -------------------------------------------------------------------------


class ClaimReference(BaseModel):
    """What travels in the message instead of the payload (RFC-033's ClaimCheckMessage)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    size: int = Field(ge=0, description="bytes of the original payload")
    checksum: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the original payload")
    compression: Literal["none", "gzip"]
    stored_size: int = Field(ge=0, description="bytes of the stored (possibly compressed) object")
    expires_at: float | None = Field(default=None, description="unix time the object expires")

    def to_header(self) -> str:
        """Compact JSON, with a version so the format can evolve."""
        return json.dumps({"v": 1, **self.model_dump()}, separators=(",", ":"))

    @classmethod
    def from_header(cls, header: str) -> ClaimReference:
        try:
            data = json.loads(header)
        except (TypeError, ValueError) as exc:
            raise InvalidClaimReference(f"not JSON ({exc})", header) from None
        if not isinstance(data, dict):
            raise InvalidClaimReference("not a JSON object", header)
        version = data.pop("v", None)
        if version != 1:
            raise InvalidClaimReference(f"unsupported version {version!r} (expected 1)", header)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
            raise InvalidClaimReference(problems, header) from None


# --- metrics -------------------------------------------------------------------------------


@dataclass
class ClaimCheckMetrics:
    """ADR-053's monitoring counters (plus checksum mismatches)."""

    claims_created: int = 0
    claims_deleted: int = 0
    claim_not_found_errors: int = 0
    claim_delete_failures: int = 0
    checksum_mismatches: int = 0


# --- streaming helpers ---------------------------------------------------------------------


class _Verifier:
    """Hashes and counts restored bytes; fails as soon as more bytes arrive than were claimed,
    so a corrupt (or malicious, e.g. a gzip bomb) object cannot make us produce unbounded output."""

    def __init__(self, reference: ClaimReference) -> None:
        self.reference = reference
        self.sha = hashlib.sha256()
        self.count = 0

    def update(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self.count > self.reference.size:
            raise ChecksumMismatch(
                self.reference, f"{self.reference.size} bytes", f"more than {self.reference.size} bytes"
            )
        self.sha.update(chunk)

    def finish(self) -> None:
        if self.count != self.reference.size:
            raise ChecksumMismatch(self.reference, f"{self.reference.size} bytes", f"{self.count} bytes")
        actual = "sha256:" + self.sha.hexdigest()
        if actual != self.reference.checksum:
            raise ChecksumMismatch(self.reference, self.reference.checksum, actual)


class _Decoder:
    """Incremental decompression with bounded output per step."""

    def __init__(self, reference: ClaimReference, chunk_size: int) -> None:
        self.reference = reference
        self.chunk_size = chunk_size
        self.inflater = zlib.decompressobj(wbits=31) if reference.compression == "gzip" else None

    def _corrupt(self, detail: str) -> ChecksumMismatch:
        return ChecksumMismatch(self.reference, f"a {self.reference.compression} stream", detail)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.inflater is None:
            if data:
                yield data
            return
        pending = data
        while True:
            if self.inflater.eof:
                if pending or self.inflater.unused_data:
                    raise self._corrupt("trailing bytes after the gzip stream")
                return
            try:
                out = self.inflater.decompress(pending, self.chunk_size)
            except zlib.error as exc:
                raise self._corrupt(f"undecodable gzip ({exc})") from None
            if out:
                yield out
            pending = self.inflater.unconsumed_tail
            # A full output step may leave output buffered inside zlib even with no input
            # left, so only a short step means this input is done.
            if not pending and len(out) < self.chunk_size:
                if self.inflater.unused_data:
                    raise self._corrupt("trailing bytes after the gzip stream")
                return

    def finish(self) -> Iterator[bytes]:
        if self.inflater is None:
            return
        try:
            out = self.inflater.flush()
        except zlib.error as exc:
            raise self._corrupt(f"undecodable gzip ({exc})") from None
        if out:
            yield out
        if not self.inflater.eof:
            raise self._corrupt("truncated gzip stream")


@dataclass
class _Upload:
    """What the upload generator learnt while the payload streamed through it."""

    size: int = 0
    stored_size: int = 0
    too_large: PayloadTooLarge | None = None


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ObjectNotFound | BucketNotFound)


# --- the pattern ---------------------------------------------------------------------------


class ClaimCheck:
    """Claims large payloads into ``objects`` and restores them. Backend-agnostic.

    Safe to share between producers and consumers of one process; it keeps no per-message state.
    """

    def __init__(self, objects: ObjectStore, config: ClaimCheckConfig) -> None:
        if not isinstance(config, ClaimCheckConfig):
            raise ConfigurationError(f"config must be a ClaimCheckConfig, not {type(config).__name__}")
        self.objects = objects
        self.config = config
        self.metrics = prometheus.tracked("claim_check", ClaimCheckMetrics())

    # -- setup ------------------------------------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (safe when several producers race to create it)."""
        if await self.objects.bucket_exists(self.config.bucket):
            return
        try:
            await self.objects.create_bucket(self.config.bucket)
        except PrismError:
            if not await self.objects.bucket_exists(self.config.bucket):
                raise

    # -- references -------------------------------------------------------------------------

    def is_claimed(self, message: Message) -> bool:
        return self.config.field in message.headers

    def reference(self, message: Message) -> ClaimReference | None:
        """The claim reference a message carries (``None`` for an inline message).

        A reference that points outside the configured bucket or key prefix is rejected: a
        consumer must never be made to read — or, on release, delete — arbitrary objects.
        """
        header = message.headers.get(self.config.field)
        if header is None:
            return None
        ref = self._in_scope(ClaimReference.from_header(header), header)
        if message.payload:
            raise InvalidClaimReference("a claimed message must have an empty payload", header)
        return ref

    def _in_scope(self, ref: ClaimReference, header: str | None = None) -> ClaimReference:
        if ref.bucket != self.config.bucket or not ref.key.startswith(self.config.key_prefix):
            raise InvalidClaimReference(
                f"reference to {ref.bucket}/{ref.key} is outside the configured "
                f"bucket {self.config.bucket!r} and prefix {self.config.key_prefix!r}",
                header,
            )
        return ref

    # -- producer side ----------------------------------------------------------------------

    def _check_limit(self, size: int) -> None:
        limit = self.config.max_payload
        if limit is not None and size > limit:
            raise PayloadTooLarge(size, limit)

    def _new_key(self) -> str:
        return self.config.key_prefix + clocks.fresh_uuid().hex

    def _metadata(self) -> dict[str, str]:
        return {_META_MARKER: "v1", _META_COMPRESSION: self.config.compression}

    def _expires_at(self, reported: float | None, started: float) -> float | None:
        if reported is not None:
            return reported
        return started + self.config.ttl if self.config.ttl is not None else None

    def _claimed(self, message_headers: Mapping[str, str], key: str | None, ref: ClaimReference) -> Message:
        self.metrics.claims_created += 1
        headers = dict(message_headers)
        headers[self.config.field] = ref.to_header()
        return Message(b"", headers, key)

    async def outgoing(self, message: Message) -> Message:
        """The message to publish: unchanged when small, else with its payload claimed.

        Raises :class:`PayloadTooLarge` (nothing written) above ``max_payload``.
        """
        if self.config.field in message.headers:
            # Already claimed (e.g. a retried send of an outgoing() result): never claim twice.
            self.reference(message)
            return message
        payload = message.payload
        self._check_limit(len(payload))
        if len(payload) <= self.config.threshold:
            return message
        if len(payload) > self.config.streaming_threshold:
            return await self.outgoing_stream(self._slices(payload), headers=message.headers, key=message.key)
        started = clocks.wall()
        stored = (
            zlib.compress(payload, self.config.compression_level, wbits=31)
            if self.config.compression == "gzip"
            else payload
        )
        object_key = self._new_key()
        info = await self.objects.put(
            self.config.bucket, object_key, stored, metadata=self._metadata(), ttl=self.config.ttl
        )
        ref = ClaimReference(
            bucket=self.config.bucket,
            key=object_key,
            size=len(payload),
            checksum="sha256:" + hashlib.sha256(payload).hexdigest(),
            compression=self.config.compression,
            stored_size=len(stored),
            expires_at=self._expires_at(info.expires_at, started),
        )
        return self._claimed(message.headers, message.key, ref)

    async def _slices(self, payload: bytes) -> AsyncIterator[bytes]:
        # One chunk-sized copy at a time, never a second copy of the whole payload.
        view = memoryview(payload)
        for start in range(0, len(view), self.config.chunk_size):
            yield bytes(view[start : start + self.config.chunk_size])

    async def outgoing_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> Message:
        """Claim a payload streamed from ``chunks`` (a file, a socket...) in bounded memory.

        The size is unknown up front, so a streamed payload is *always* claimed, whatever the
        threshold. Compression and SHA-256 run incrementally while ``put_stream`` uploads.
        Above ``max_payload`` the upload is aborted, the partial object deleted and
        :class:`PayloadTooLarge` raised. ``key`` is the message key of the returned message.
        """
        cfg = self.config
        state = _Upload()
        sha = hashlib.sha256()
        deflater = zlib.compressobj(cfg.compression_level, zlib.DEFLATED, 31) if cfg.compression == "gzip" else None

        async def encoded() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                if not chunk:
                    continue
                state.size += len(chunk)
                if cfg.max_payload is not None and state.size > cfg.max_payload:
                    state.too_large = PayloadTooLarge(state.size, cfg.max_payload)
                    raise state.too_large
                sha.update(chunk)
                out = deflater.compress(chunk) if deflater is not None else bytes(chunk)
                if out:
                    state.stored_size += len(out)
                    yield out
            if deflater is not None:
                tail = deflater.flush()
                state.stored_size += len(tail)
                if tail:
                    yield tail

        started = clocks.wall()
        object_key = self._new_key()
        try:
            info = await self.objects.put_stream(
                cfg.bucket, object_key, encoded(), metadata=self._metadata(), ttl=cfg.ttl
            )
        except Exception as exc:
            # Whatever the store kept of a failed upload is an orphan nobody will ever release.
            await self._discard(cfg.bucket, object_key)
            if state.too_large is not None and exc is not state.too_large:
                raise state.too_large from exc
            raise
        ref = ClaimReference(
            bucket=cfg.bucket,
            key=object_key,
            size=state.size,
            checksum="sha256:" + sha.hexdigest(),
            compression=cfg.compression,
            stored_size=state.stored_size,
            expires_at=self._expires_at(info.expires_at, started),
        )
        return self._claimed(headers or {}, key, ref)

    async def _discard(self, bucket: str, key: str) -> None:
        try:
            await self.objects.delete(bucket, key)
        except Exception:  # best effort; the TTL is the safety net
            log.warning("could not delete orphaned claim object %s/%s", bucket, key, exc_info=True)

    # -- consumer side ----------------------------------------------------------------------

    async def incoming(self, message: Message) -> Message:
        """The message with its original payload restored and verified, and the claim header
        removed; an inline message is returned unchanged.

        Raises :class:`ClaimNotFound`, :class:`ChecksumMismatch` or :class:`InvalidClaimReference`.
        Does not delete the object: call :meth:`release` once the message is acknowledged.
        """
        ref = self.reference(message)
        if ref is None:
            return message
        if max(ref.size, ref.stored_size) > self.config.streaming_threshold:
            # BytesIO.getvalue() hands over its buffer without copying when it is exactly full,
            # so the whole payload exists once, not once per chunk list plus once joined.
            buffer = io.BytesIO()
            async for chunk in self._restore_stream(ref):
                buffer.write(chunk)
            payload = buffer.getvalue()
        else:
            payload = await self._restore(ref)
        return Message(payload, {k: v for k, v in message.headers.items() if k != self.config.field}, message.key)

    async def _restore(self, ref: ClaimReference) -> bytes:
        try:
            stored = await self.objects.get(ref.bucket, ref.key)
        except Exception as exc:
            if _is_missing(exc):
                self.metrics.claim_not_found_errors += 1
                raise ClaimNotFound(ref) from exc
            raise
        verifier = _Verifier(ref)
        # One step for a healthy object; the verifier stops a corrupt one at size + 1 bytes.
        decoder = _Decoder(ref, ref.size + 1)
        parts: list[bytes] = []
        try:
            for part in itertools.chain(decoder.feed(stored), decoder.finish()):
                verifier.update(part)
                parts.append(part)
            verifier.finish()
        except ChecksumMismatch:
            self.metrics.checksum_mismatches += 1
            raise
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def incoming_stream(self, message: Message) -> AsyncIterator[bytes]:
        """The message's payload in chunks, decompressed, in bounded memory.

        The checksum can only be verified once the last byte is in, so the iterator raises
        :class:`ChecksumMismatch` at its *end* (or as soon as the object yields more bytes than
        were claimed). Consumers must not commit side effects of the data — rename a temp file
        into place, ack the message — before the iteration completes without error.
        An inline message yields its payload as one chunk.
        """
        ref = self.reference(message)
        if ref is None:
            return self._inline(message.payload)
        return self._restore_stream(ref)

    async def _inline(self, payload: bytes) -> AsyncIterator[bytes]:
        if payload:
            yield payload

    async def _restore_stream(self, ref: ClaimReference) -> AsyncIterator[bytes]:
        verifier = _Verifier(ref)
        decoder = _Decoder(ref, self.config.chunk_size)
        stream = self.objects.get_stream(ref.bucket, ref.key, chunk_size=self.config.chunk_size)
        try:
            try:
                async for stored in stream:
                    for chunk in decoder.feed(stored):
                        verifier.update(chunk)
                        yield chunk
            except Exception as exc:
                if _is_missing(exc):
                    self.metrics.claim_not_found_errors += 1
                    raise ClaimNotFound(ref) from exc
                raise
            for chunk in decoder.finish():
                verifier.update(chunk)
                yield chunk
            verifier.finish()
        except ChecksumMismatch:
            self.metrics.checksum_mismatches += 1
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- cleanup ----------------------------------------------------------------------------

    async def release(self, target: Message | ClaimReference) -> None:
        """Done with a claim: delete its object when ``on_consume == "delete"`` (idempotent),
        nothing when ``"keep"``. Call only after the message is acknowledged / committed.

        ``target`` is the *claimed* message (with its header) or its reference; an inline
        message is a no-op. A failed delete is counted in ``claim_delete_failures`` and raised.
        """
        ref = self.reference(target) if isinstance(target, Message) else self._in_scope(target)
        if ref is None or self.config.on_consume == "keep":
            return
        try:
            await self.objects.delete(ref.bucket, ref.key)
        except BucketNotFound:
            return  # the bucket and everything in it are gone already
        except Exception:
            self.metrics.claim_delete_failures += 1
            raise
        self.metrics.claims_deleted += 1

    async def _release_quietly(self, ref: ClaimReference | None) -> None:
        """Release after an ack: the ack already happened, so a failed delete must not look like
        a failed ack to the caller (who might retry it); it is counted and the TTL cleans up."""
        if ref is None:
            return
        try:
            await self.release(ref)
        except Exception:
            log.warning("could not delete claim object %s/%s", ref.bucket, ref.key, exc_info=True)


# --- messaging adapters --------------------------------------------------------------------


_T = TypeVar("_T")


async def _send_claimed(claim_check: ClaimCheck, message: Message, send: Callable[[Message], Awaitable[_T]]) -> _T:
    """Claim, then send; if the send certainly failed, delete the now-unreferenced object.

    An unknown outcome (:class:`ConnectionLost`, or a non-prism error such as a socket error)
    may have delivered the message, so its object is kept and left to the TTL.
    """
    claimed = await claim_check.outgoing(message)
    try:
        return await send(claimed)
    except PrismError as exc:
        ref = claim_check.reference(claimed) if claimed is not message else None
        if ref is not None and not isinstance(exc, ConnectionLost):
            await claim_check._discard(ref.bucket, ref.key)
        raise


def _attach(exc: ClaimCheckError, raw: object) -> ClaimCheckError:
    exc.raw = raw
    return exc


class ClaimCheckQueue:
    """A :class:`Queue` with claim check applied on send and reversed on receive.

    ``ack`` acknowledges first and releases the object after, never the other way round, so a
    nacked (or timed-out) message still finds its object on redelivery. A receive whose claim
    is broken raises the claim error with ``.raw`` set to the undecoded :class:`QueueDelivery`, which
    the caller can ``ack`` (drop) or ``nack``.
    """

    def __init__(self, queue: Queue, claim_check: ClaimCheck) -> None:
        self.inner = queue
        self.claim_check = claim_check
        # delivery id -> (undecoded delivery, its claim). The backend gets back exactly the
        # delivery it handed out, and ack knows what to release though the restored message
        # no longer carries the header. Entries live until the delivery is acked or nacked.
        self._pending: dict[str, tuple[QueueDelivery, ClaimReference | None]] = {}

    async def send(self, queue: str, message: Message) -> str:
        async def send(claimed: Message) -> str:
            return await self.inner.send(queue, claimed)

        return await _send_claimed(self.claim_check, message, send)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        raw = await self.inner.receive(queue, wait=wait, visibility_timeout=visibility_timeout)
        if raw is None:
            return None
        try:
            ref = self.claim_check.reference(raw.message)
            self._pending[raw.delivery_id] = (raw, ref)
            message = await self.claim_check.incoming(raw.message)
        except ClaimCheckError as exc:
            self._pending.setdefault(raw.delivery_id, (raw, None))
            raise _attach(exc, raw) from None
        return QueueDelivery(raw.delivery_id, message, raw.attempt)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        raw, ref = self._pending.get(delivery.delivery_id, (delivery, None))
        await self.inner.ack(queue, raw)
        self._pending.pop(delivery.delivery_id, None)
        await self.claim_check._release_quietly(ref)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        raw, _ = self._pending.get(delivery.delivery_id, (delivery, None))
        await self.inner.nack(queue, raw)
        self._pending.pop(delivery.delivery_id, None)


class ClaimCheckLog:
    """A :class:`Log` with claim check applied on append and reversed on read.

    Objects are released by :meth:`commit`, after the group offset is committed. With
    ``on_consume == "delete"`` only one consumer group may read the log and a replay of
    committed records fails with :class:`ClaimNotFound`; use ``"keep"`` plus a TTL that
    matches the log's retention for replay or several groups.
    """

    def __init__(self, log: Log, claim_check: ClaimCheck) -> None:
        self.inner = log
        self.claim_check = claim_check
        self._claims: dict[tuple[str, int], ClaimReference] = {}  # (log, offset) -> claim read

    async def append(self, log: str, message: Message) -> int:
        async def append(claimed: Message) -> int:
            return await self.inner.append(log, claimed)

        return await _send_claimed(self.claim_check, message, append)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        records = await self.inner.read(log, offset, limit=limit, wait=wait)
        restored: list[Record] = []
        for record in records:
            try:
                ref = self.claim_check.reference(record.message)
                message = await self.claim_check.incoming(record.message)
            except ClaimCheckError as exc:
                raise _attach(exc, record) from None
            if ref is not None and self.claim_check.config.on_consume == "delete":
                self._claims[(log, record.offset)] = ref
            restored.append(Record(record.offset, message))
        return restored

    async def end_offset(self, log: str) -> int:
        return await self.inner.end_offset(log)

    async def committed(self, log: str, group: str) -> int | None:
        return await self.inner.committed(log, group)

    async def commit(self, log: str, group: str, offset: int, records: list[Record] | None = None) -> None:
        """Commit ``group``'s offset, then release the claims of ``records`` below ``offset``
        (records as returned by :meth:`read`, or undecoded ones carrying the header)."""
        await self.inner.commit(log, group, offset)
        for record in records or ():
            if record.offset >= offset:
                continue
            ref = self._claims.pop((log, record.offset), None)
            if ref is None:
                try:
                    ref = self.claim_check.reference(record.message)
                except InvalidClaimReference:
                    ref = None
            await self.claim_check._release_quietly(ref)


class ClaimCheckSubscription:
    """A :class:`Subscription` whose messages come back restored."""

    def __init__(self, inner: Subscription, claim_check: ClaimCheck) -> None:
        self.inner = inner
        self.claim_check = claim_check

    async def receive(self, wait: float) -> Message | None:
        message = await self.inner.receive(wait)
        if message is None:
            return None
        try:
            return await self.claim_check.incoming(message)
        except ClaimCheckError as exc:
            raise _attach(exc, message) from None

    async def close(self) -> None:
        await self.inner.close()


class ClaimCheckPubSub:
    """A :class:`PubSub` with claim check applied on publish and reversed on receive.

    Every subscriber gets the same reference, so a subscriber deleting the object after reading
    it would pull it from under the others: only ``on_consume == "keep"`` is accepted, and the
    objects' ``ttl`` (or a bucket lifecycle policy) removes them.
    """

    def __init__(self, pubsub: PubSub, claim_check: ClaimCheck) -> None:
        if claim_check.config.on_consume != "keep":
            raise ConfigurationError(
                "claim check over pub/sub needs on_consume='keep' (with a ttl): fan-out delivers "
                "one reference to every subscriber, and the first to delete the object would "
                "break the others"
            )
        self.inner = pubsub
        self.claim_check = claim_check

    async def publish(self, topic: str, message: Message) -> None:
        async def publish(claimed: Message) -> None:
            await self.inner.publish(topic, claimed)

        await _send_claimed(self.claim_check, message, publish)

    async def subscribe(self, topic: str) -> ClaimCheckSubscription:
        return ClaimCheckSubscription(await self.inner.subscribe(topic), self.claim_check)


# --- registration --------------------------------------------------------------------------

_HEADER_ROOM = 64 * 1024  # the claim reference and other headers must still fit under max_payload
_DEFAULT_THRESHOLD = 1_000_000  # RFC-009: payloads > 1MB are claimed
_DEFAULT_TTL = 604800.0  # RFC-009: 7 days, matching the log's retention


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> Iterator[Wanted]:
    size = ctx.needs.max_message_size
    if size is None:
        return
    if ctx.messaging is None:
        if "messaging" not in ctx.roles:
            problem(
                "backends.messaging",
                "max_message_size needs a messaging backend to compare with: expected 'messaging: <backend>'",
            )
        return
    limit = ctx.messaging.properties.max_payload
    if limit is not None and size > limit:
        yield "needs.max_message_size", f"max_message_size {size} > {ctx.messaging.name} max_payload {limit}"


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    limit = ctx.messaging.properties.max_payload if ctx.messaging else None
    retention = ctx.needs.retention
    return {
        "threshold": _DEFAULT_THRESHOLD if limit is None else max(0, min(_DEFAULT_THRESHOLD, limit - _HEADER_ROOM)),
        "bucket": f"{ctx.namespace}-claims",
        "max_payload": ctx.needs.max_message_size,
        "ttl": retention if retention is not None and math.isfinite(retention) else _DEFAULT_TTL,
        "on_consume": "keep" if ctx.client_api == "pubsub" or ctx.needs.replay else "delete",
    }


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, ClaimCheckConfig)
    if ctx.client_api == "pubsub" and config.on_consume == "delete":
        yield (
            "on_consume",
            "claim check under pub/sub expects on_consume: keep (with a ttl), found 'delete': fan-out hands "
            "one reference to every subscriber, and the first to delete the object breaks the others",
        )
    messaging = ctx.slots.get("messaging")
    limit = messaging.properties.max_payload if messaging else None
    if messaging is not None and limit is not None and config.threshold > limit:
        yield (
            "threshold",
            f"expected a threshold at most the messaging backend's max_payload ({limit} bytes of "
            f"{messaging.name!r}), found {config.threshold}: payloads in between would be sent inline and rejected",
        )


SPEC = PatternSpec(
    name="claim-check",
    title="Claim Check",
    priority=Priority.P0,
    complexity=Complexity.LOW,
    slots={
        "messaging": PatternSlot(
            MESSAGING, ("messaging",), "queue, log or topic carrying the claim reference", messaging=True
        ),
        "objects": PatternSlot(Slot.needs("objects"), ("objects",), "object store holding claimed payloads"),
    },
    config=ClaimCheckConfig,
    client_apis=frozenset({"queue", "pubsub", "transact"}),
    summary="large payloads go to object storage; the message carries a reference in a named header",
    suites=("claim_check", "stateful_claim_check"),
    # The payload is claimed before anything stores the message, so stores hold references.
    before=frozenset({"outbox", "wal", "event-sourcing"}),
    order_reason="the payload must be claimed before a store keeps the message, so the store holds only the reference",
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
