"""Tier adapters: one small interface over a key-value backend or an object store.

A copy is named ``data_prefix + tier + "/" + key + "@" + token``; the token is unique per write, so the
garbage collector can tell a tier's copies apart and find those no reference names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from prism_testkit.errors import BucketNotFound, ObjectNotFound
from prism_testkit.interfaces import KeyValue, ObjectStore

SEPARATOR = "@"


def copy_name(data_prefix: str, key: str, token: str) -> str:
    return f"{data_prefix}{key}{SEPARATOR}{token}"


def split_copy_name(data_prefix: str, name: str) -> tuple[str, str] | None:
    """(key, token) of a copy name, None for names that are not copies."""
    if not name.startswith(data_prefix) or SEPARATOR not in name:
        return None
    key, _, token = name[len(data_prefix) :].rpartition(SEPARATOR)
    return key, token


class Tier(Protocol):
    """Where copies live. ``read`` returns None for a missing copy; ``remove`` is idempotent."""

    async def prepare(self) -> None: ...
    async def write(self, name: str, value: bytes) -> None: ...
    async def read(self, name: str) -> bytes | None: ...
    async def remove(self, name: str) -> None: ...
    def names(self, prefix: str) -> AsyncIterator[str]: ...


class KeyValueTier:
    """A tier on a key-value backend (needs ``keyvalue.scan`` for the garbage collector)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def prepare(self) -> None:
        return None

    async def write(self, name: str, value: bytes) -> None:
        await self.kv.put(name, value)

    async def read(self, name: str) -> bytes | None:
        value = await self.kv.get(name)
        return None if value is None else bytes(value)

    async def remove(self, name: str) -> None:
        await self.kv.delete(name)

    def names(self, prefix: str) -> AsyncIterator[str]:
        return self.kv.scan(prefix)


class ObjectTier:
    """A tier on an object store. Values above ``stream_threshold`` are written and read in
    ``chunk_size`` pieces through the streaming calls."""

    def __init__(self, objects: ObjectStore, bucket: str, *, stream_threshold: int, chunk_size: int) -> None:
        self.objects, self.bucket = objects, bucket
        self.stream_threshold, self.chunk_size = stream_threshold, chunk_size

    async def prepare(self) -> None:
        if not await self.objects.bucket_exists(self.bucket):
            await self.objects.create_bucket(self.bucket)

    async def write(self, name: str, value: bytes) -> None:
        if len(value) <= self.stream_threshold:
            await self.objects.put(self.bucket, name, value)
            return
        await self.objects.put_stream(self.bucket, name, self._chunks(value))

    async def _chunks(self, value: bytes) -> AsyncIterator[bytes]:
        view = memoryview(value)
        for start in range(0, len(view), self.chunk_size):
            yield bytes(view[start : start + self.chunk_size])

    async def read(self, name: str) -> bytes | None:
        try:
            info = await self.objects.info(self.bucket, name)
            if info.size <= self.stream_threshold:
                return bytes(await self.objects.get(self.bucket, name))
            parts = [bytes(c) async for c in self.objects.get_stream(self.bucket, name, chunk_size=self.chunk_size)]
            return b"".join(parts)
        except ObjectNotFound:
            return None

    async def remove(self, name: str) -> None:
        await self.objects.delete(self.bucket, name)

    async def names(self, prefix: str) -> AsyncIterator[str]:
        try:
            async for name in self.objects.list_keys(self.bucket, prefix):
                yield name
        except BucketNotFound:
            return
