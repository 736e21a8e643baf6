"""The pattern itself: :class:`ClaimCheck` claims payloads into an object store and restores them,
and counts what it did in :class:`ClaimCheckMetrics`."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import BucketNotFound, ConfigurationError, ObjectNotFound, PayloadTooLarge, PrismError
from prism_testkit.interfaces import Message, ObjectStore
from prism_testkit.pattern_sdk import metrics as prometheus

from .config import ClaimCheckConfig
from .reference import ChecksumMismatch, ClaimNotFound, ClaimReference, InvalidClaimReference
from .streaming import _Decoder, _Verifier

log = logging.getLogger(__name__)

# Object metadata written next to every claimed payload, so an operator looking at the bucket
# can tell what an object is without the message that points to it.
_META_MARKER = "prism-claim-check"
_META_COMPRESSION = "prism-compression"


# --- metrics -------------------------------------------------------------------------------


@dataclass
class ClaimCheckMetrics:
    """ADR-053's monitoring counters (plus checksum mismatches)."""

    claims_created: int = 0
    claims_deleted: int = 0
    claim_not_found_errors: int = 0
    claim_delete_failures: int = 0
    checksum_mismatches: int = 0


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
