"""localfs: an object store on the local filesystem.

Layout under the root directory::

    <root>/<bucket>/                   one directory per bucket (name encoded, see _encode)
        <key>.meta                     sidecar JSON: key, blob file name, size, metadata, expiry
        <key>.<token>.blob             the object's bytes, never modified once written
        .tmp-*                         writes in progress (or abandoned by a crash)
    <root>/.trash-*                    buckets being deleted

Encoded names never start with '.' and never contain '.', '/' or upper-case letters, so a key
cannot escape its bucket, cannot clash with a temp file, sidecar or blob of another key, and
stays distinct on case-insensitive filesystems. Keys whose encoding is too long for a file name
are stored under '~' + sha256 (the sidecar keeps the real key).

A put writes the blob to a temp file, fsyncs it, renames it to a fresh blob name, then replaces
the sidecar the same way: that last os.replace is the commit, so readers see the old object or
the new one, never a mix. Blocking I/O runs in worker threads (asyncio.to_thread) so large
objects do not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, ClassVar, Self

from prism_testkit.capabilities import BackendProperties, Capability, Ordering
from prism_testkit.driver import Driver
from prism_testkit.errors import BucketNotEmpty, BucketNotFound, ObjectNotFound, ProvisioningError
from prism_testkit.interfaces import ObjectInfo, ObjectStore
from prism_testkit.provision.base import EmbeddedProvisioner, Endpoint
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from ._common import BytesLike, as_bytes, check_count, check_metadata, check_name, check_positive

CAPABILITIES: frozenset[Capability] = frozenset({Capability.OBJECTS, Capability.OBJECTS_TTL})
PROPERTIES = BackendProperties(durable=True, survives_power_loss=True, ordering=Ordering.TOTAL)  # fsync file + dir

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_ENCODED = 150  # leaves room for the blob suffix within the usual 255-byte name limit
_HASHED = "~"
_META = ".meta"
_BLOB = ".blob"
_TMP = ".tmp-"
_TRASH = ".trash-"
_WRITE_BATCH = 1 << 20  # put_stream hands the disk at least this much per thread hop
_OPEN_RETRIES = 5

# Serialises sidecar read-modify-writes in this process, so concurrent puts, deletes, set_ttl
# and bucket deletion never lose each other's changes or leak a blob. Reentrant because
# lazy expiry removes objects while the lock is held.
_COMMIT_LOCK = threading.RLock()


def _encode(name: str) -> str:
    """Percent-encode everything outside [a-z0-9_-]: injective and safe as a file name."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))


def _decode(encoded: str) -> str | None:
    """The name ``encoded`` stands for, or None for a file name :func:`_encode` cannot produce."""
    try:
        name = urllib.parse.unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return None
    return name if name and _encode(name) == encoded else None


def _key_file(key: str) -> str:
    encoded = _encode(key)
    if len(encoded) <= _MAX_ENCODED:
        return encoded
    return _HASHED + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _bucket_file(bucket: str) -> str:
    encoded = _encode(check_name(bucket, "bucket"))
    if len(encoded) > _MAX_ENCODED:
        raise ValueError(f"bucket name is too long: {bucket[:40]!r}...")
    return encoded


# A directory that cannot be opened or fsynced on this platform: best effort. Any other error
# (EIO above all) means the rename may not be on disk, and the write must not be acknowledged
# (a crash at the directory fsync lost an acknowledged put while every OSError was swallowed).
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ENOTSUP}


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable; skipped where a directory cannot be fsynced, an I/O
    error is raised."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _make_dir_durably(path: Path) -> None:
    """mkdir whose result survives a power cut: a new name is on disk once its parent is fsynced
    (without it, a bucket created and acknowledged vanished with every object in it)."""
    path.mkdir(exist_ok=True)
    _fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class _Sidecar:
    key: str
    blob: str
    size: int
    metadata: dict[str, str]
    expires_at: float | None  # unix time

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def info(self, bucket: str) -> ObjectInfo:
        return ObjectInfo(bucket, self.key, self.size, MappingProxyType(dict(self.metadata)), self.expires_at)

    def to_json(self) -> bytes:
        fields = {
            "key": self.key,
            "blob": self.blob,
            "size": self.size,
            "metadata": self.metadata,
            "expires_at": self.expires_at,
        }
        return json.dumps(fields, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> _Sidecar:
        data = json.loads(raw)
        return cls(data["key"], data["blob"], data["size"], data["metadata"], data["expires_at"])


class _TempWriter:
    """An object body being written to a temp file in its bucket directory."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=_TMP, dir=directory)
        self.path = Path(name)
        self.size = 0
        self._file = os.fdopen(fd, "wb")

    def write(self, data: BytesLike) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class _BucketDir:
    """Synchronous operations on one bucket directory; the facet runs them in threads."""

    def __init__(self, root: Path, bucket: str) -> None:
        self.bucket = bucket
        self.path = root / _bucket_file(bucket)

    def require(self) -> None:
        if not self.path.is_dir():
            raise BucketNotFound(self.bucket)

    def _sidecar_path(self, key_file: str) -> Path:
        return self.path / (key_file + _META)

    def _read_sidecar(self, key_file: str) -> _Sidecar | None:
        try:
            return _Sidecar.from_json(self._sidecar_path(key_file).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None

    # --- reading -------------------------------------------------------------------------

    def load(self, key: str) -> _Sidecar:
        """The live object's sidecar; an expired object is removed on the way."""
        key_file = _key_file(key)
        sidecar = self._read_sidecar(key_file)
        if sidecar is None or sidecar.key != key:
            self.require()
            raise ObjectNotFound(self.bucket, key)
        if sidecar.expired(time.time()):
            self._remove_if_current(key_file, sidecar)
            raise ObjectNotFound(self.bucket, key)
        return sidecar

    def open(self, key: str) -> tuple[BinaryIO, _Sidecar]:
        """An open blob; once open, a concurrent replace or delete cannot take it away (POSIX)."""
        for _ in range(_OPEN_RETRIES):
            sidecar = self.load(key)
            try:
                return (self.path / sidecar.blob).open("rb"), sidecar
            except FileNotFoundError:
                continue  # replaced between reading the sidecar and opening its blob: look again
        raise ObjectNotFound(self.bucket, key)

    def read(self, key: str) -> bytes:
        file, _ = self.open(key)
        with file:
            return file.read()

    def live_keys(self, prefix: str) -> list[str]:
        now, keys = time.time(), []
        try:
            with os.scandir(self.path) as entries:
                names = [e.name for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            raise BucketNotFound(self.bucket) from None
        for name in names:
            if name.startswith(".") or not name.endswith(_META):
                continue
            key_file = name.removesuffix(_META)
            if not key_file.startswith(_HASHED):  # skip non-matching keys without reading their sidecar
                key = _decode(key_file)
                if key is None or not key.startswith(prefix):
                    continue
            sidecar = self._read_sidecar(key_file)
            if sidecar is None or not sidecar.key.startswith(prefix):
                continue
            if sidecar.expired(now):
                self._remove_if_current(key_file, sidecar)
            else:
                keys.append(sidecar.key)
        return keys

    # --- writing -------------------------------------------------------------------------

    def writer(self) -> _TempWriter:
        try:
            return _TempWriter(self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise BucketNotFound(self.bucket) from None

    def put(self, key: str, data: bytes, metadata: dict[str, str], expires_at: float | None) -> _Sidecar:
        writer = self.writer()
        try:
            writer.write(data)
            writer.finish()
            return self.commit(key, writer, metadata, expires_at)
        except BaseException:
            writer.discard()
            raise

    def commit(self, key: str, writer: _TempWriter, metadata: dict[str, str], expires_at: float | None) -> _Sidecar:
        """Publish a finished temp file as ``key``'s new body."""
        key_file = _key_file(key)
        sidecar = _Sidecar(key, f"{key_file}.{secrets.token_hex(8)}{_BLOB}", writer.size, metadata, expires_at)
        blob, old = self.path / sidecar.blob, None
        try:
            os.replace(writer.path, blob)
            try:
                with _COMMIT_LOCK:
                    old = self._read_sidecar(key_file)
                    self._replace_sidecar(key_file, sidecar)
            except BaseException:
                blob.unlink(missing_ok=True)
                raise
        except (FileNotFoundError, NotADirectoryError):
            self.require()  # the bucket was deleted while the body was being written
            raise
        _fsync_dir(self.path)
        if old is not None:
            (self.path / old.blob).unlink(missing_ok=True)
        return sidecar

    def set_expiry(self, key: str, expires_at: float) -> None:
        with _COMMIT_LOCK:
            sidecar = self.load(key)
            self._replace_sidecar(_key_file(key), replace(sidecar, expires_at=expires_at))
        _fsync_dir(self.path)

    def delete(self, key: str) -> None:
        key_file = _key_file(key)
        with _COMMIT_LOCK:
            sidecar = self._read_sidecar(key_file)
            if sidecar is None:
                self.require()
                return
            self._sidecar_path(key_file).unlink(missing_ok=True)
        (self.path / sidecar.blob).unlink(missing_ok=True)
        _fsync_dir(self.path)

    def remove_bucket(self, *, force: bool) -> None:
        """Delete the bucket (only when it holds no live object, unless ``force``)."""
        with _COMMIT_LOCK:  # no put can commit between the emptiness check and the rename
            if not force and self.live_keys(""):
                raise BucketNotEmpty(self.bucket)
            trash = self.path.parent / f"{_TRASH}{secrets.token_hex(8)}"
            try:
                os.rename(self.path, trash)  # atomic: from here on the bucket is gone
            except (FileNotFoundError, NotADirectoryError):
                raise BucketNotFound(self.bucket) from None
        _fsync_dir(self.path.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def _replace_sidecar(self, key_file: str, sidecar: _Sidecar) -> None:
        writer = _TempWriter(self.path)
        try:
            writer.write(sidecar.to_json())
            writer.finish()
            os.replace(writer.path, self._sidecar_path(key_file))
        except BaseException:
            writer.discard()
            raise

    def _remove_if_current(self, key_file: str, sidecar: _Sidecar) -> None:
        """Remove an expired object, unless a put replaced it meanwhile."""
        with _COMMIT_LOCK:
            current = self._read_sidecar(key_file)
            if current is None or current.blob != sidecar.blob:
                return
            self._sidecar_path(key_file).unlink(missing_ok=True)
        (self.path / sidecar.blob).unlink(missing_ok=True)


def _bucket_names(root: Path, prefix: str) -> list[str]:
    try:
        with os.scandir(root) as entries:
            names = [_decode(e.name) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n is not None and n.startswith(prefix))


# --- facet -----------------------------------------------------------------------------------


class _LocalObjects(ObjectStore):
    def __init__(self, driver: LocalfsDriver) -> None:
        self._driver = driver

    def _dir(self, bucket: str) -> _BucketDir:
        return _BucketDir(self._driver.root, bucket)

    def _expires_at(self, ttl: float | None, what: str = "put with a ttl") -> float | None:
        if ttl is None:
            return None
        self._driver.require(Capability.OBJECTS_TTL, what)
        return time.time() + check_positive(ttl, "ttl")

    async def create_bucket(self, bucket: str) -> None:
        path = self._dir(bucket).path
        await asyncio.to_thread(_make_dir_durably, path)

    async def delete_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self._dir(bucket).remove_bucket, force=False)

    async def bucket_exists(self, bucket: str) -> bool:
        return await asyncio.to_thread(self._dir(bucket).path.is_dir)

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        directory, key, data = self._dir(bucket), check_name(key, "key"), as_bytes(data, "data")
        meta, expires_at = check_metadata(metadata), self._expires_at(ttl)
        sidecar = await asyncio.to_thread(directory.put, key, data, meta, expires_at)
        return sidecar.info(bucket)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        directory, key, meta = self._dir(bucket), check_name(key, "key"), check_metadata(metadata)
        self._expires_at(ttl)  # reject a bad ttl before consuming the stream
        writer = await asyncio.to_thread(directory.writer)
        try:
            buffer = bytearray()  # batches small chunks; bounded by _WRITE_BATCH plus one chunk
            async for chunk in chunks:
                if not isinstance(chunk, BytesLike):
                    raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
                buffer += chunk
                if len(buffer) >= _WRITE_BATCH:
                    full, buffer = buffer, bytearray()
                    await asyncio.to_thread(writer.write, full)
            if buffer:
                await asyncio.to_thread(writer.write, buffer)
            await asyncio.to_thread(writer.finish)
            # the expiry counts from the commit, not from the start of a long upload
            expires_at = self._expires_at(ttl)
            sidecar = await asyncio.to_thread(directory.commit, key, writer, meta, expires_at)
        except BaseException:
            writer.discard()  # quick and synchronous, so it also runs when we are cancelled
            raise
        return sidecar.info(bucket)

    async def get(self, bucket: str, key: str) -> bytes:
        return await asyncio.to_thread(self._dir(bucket).read, check_name(key, "key"))

    def get_stream(self, bucket: str, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_count(chunk_size, "chunk_size", 1)
        return self._stream(self._dir(bucket), check_name(key, "key"), chunk_size)

    async def _stream(self, directory: _BucketDir, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        file, _ = await asyncio.to_thread(directory.open, key)
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def delete(self, bucket: str, key: str) -> None:
        await asyncio.to_thread(self._dir(bucket).delete, check_name(key, "key"))

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await asyncio.to_thread(self._dir(bucket).load, check_name(key, "key"))
        except ObjectNotFound:
            return False
        return True

    async def info(self, bucket: str, key: str) -> ObjectInfo:
        sidecar = await asyncio.to_thread(self._dir(bucket).load, check_name(key, "key"))
        return sidecar.info(bucket)

    async def set_ttl(self, bucket: str, key: str, ttl: float) -> None:
        expires_at = self._expires_at(ttl, "set_ttl")
        assert expires_at is not None
        await asyncio.to_thread(self._dir(bucket).set_expiry, check_name(key, "key"), expires_at)

    def list_keys(self, bucket: str, prefix: str = "") -> AsyncIterator[str]:
        return self._list_keys(self._dir(bucket), prefix)

    async def _list_keys(self, directory: _BucketDir, prefix: str) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(directory.live_keys, prefix):
            yield key


# --- driver ----------------------------------------------------------------------------------


class LocalfsDriver(Driver):
    backend_name: ClassVar[str] = "localfs"

    def __init__(self, name: str, capabilities: frozenset[Capability], root: Path) -> None:
        super().__init__(name, capabilities)
        self._root = root
        self._closed = False

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        root = endpoint.options.get("path")
        if root is None:
            url = urllib.parse.urlparse(endpoint.url)
            if url.scheme != "file":
                raise ProvisioningError(f"backend {name!r} needs a file: URL or a 'path' option")
            root = urllib.request.url2pathname(url.path)
        root = Path(root)
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        return cls(name, capabilities, root)

    @property
    def root(self) -> Path:
        if self._closed:
            raise RuntimeError(f"driver {self.name!r} is closed")
        return self._root

    async def close(self) -> None:
        self._closed = True  # nothing is held open between calls

    async def purge(self, prefix: str) -> None:
        await asyncio.to_thread(self._purge, self.root, prefix)

    @staticmethod
    def _purge(root: Path, prefix: str) -> None:
        for bucket in _bucket_names(root, prefix):
            with contextlib.suppress(BucketNotFound):
                _BucketDir(root, bucket).remove_bucket(force=True)
        for trash in root.glob(f"{_TRASH}*"):  # left by a crash in the middle of a bucket deletion
            shutil.rmtree(trash, ignore_errors=True)

    async def leftovers(self, prefix: str) -> list[str]:
        names = await asyncio.to_thread(_bucket_names, self.root, prefix)
        return [f"bucket:{name}" for name in names]

    def objects(self) -> ObjectStore:
        self.require(Capability.OBJECTS)
        return _LocalObjects(self)


def open_localfs(root: Path, name: str = "localfs") -> LocalfsDriver:
    """A driver on the directory ``root`` (created if missing), without the harness."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return LocalfsDriver(name, CAPABILITIES, root)


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="localfs",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=EmbeddedProvisioner("files in a temp dir"),
            driver=LocalfsDriver,
            embedded=True,
            description="object store in local files, written atomically with fsync",
        )
    ]
