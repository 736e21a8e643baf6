"""Restoring a claimed object in bounded memory: incremental decompression and verification of
its size and SHA-256."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator

from .reference import ChecksumMismatch, ClaimReference

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
