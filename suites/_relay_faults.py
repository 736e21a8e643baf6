"""A relay (or change-feed publisher) process dying, as the outbox suites simulate it: after the
fault fires, nothing the dead process does reaches a store (so it can neither commit its offset
or feed position nor release its lease)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from prism_testkit import KeyValue
from prism_testkit.interfaces import ChangeFeed, ChangeSet


class Killed(BaseException):
    """The relay's process died: nothing it does after this point happens (not an Exception, so
    the relay's own error handling cannot swallow it)."""


class Mortal(Protocol):
    def check(self) -> None:
        """Raise :class:`Killed` once the process is dead."""
        ...


class DyingKeyValue:
    """The relay's key-value as a killed process sees it: unreachable once the fault fired, so
    the dead relay can neither commit its offset nor release its lease."""

    def __init__(self, inner: KeyValue, fault: Mortal) -> None:
        self.inner, self.fault = inner, fault

    async def get(self, key: str) -> bytes | None:
        self.fault.check()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.fault.check()
        await self.inner.put(key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        self.fault.check()
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        self.fault.check()
        return await self.inner.exists(key)

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self.fault.check()
        return self.inner.scan(prefix)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self.fault.check()
        return await self.inner.compare_and_set(key, expected, new)


class DyingChangeFeed:
    """A change feed as a killed publisher process sees it: once the fault fired, the dead
    publisher can neither read nor confirm (so it never moves the position past what it sent)."""

    def __init__(self, inner: ChangeFeed, fault: Mortal) -> None:
        self.inner, self.fault = inner, fault

    async def create(self, capture: str, prefix: str) -> None:
        self.fault.check()
        await self.inner.create(capture, prefix)

    async def read(self, capture: str, *, limit: int = 100, wait: float = 0.0) -> list[ChangeSet]:
        self.fault.check()
        return await self.inner.read(capture, limit=limit, wait=wait)

    async def confirm(self, capture: str, position: int) -> None:
        self.fault.check()
        await self.inner.confirm(capture, position)

    async def mark(self, capture: str, label: str) -> None:
        self.fault.check()
        await self.inner.mark(capture, label)

    async def drop(self, capture: str) -> None:
        self.fault.check()
        await self.inner.drop(capture)

    async def captures(self, prefix: str) -> list[str]:
        self.fault.check()
        return await self.inner.captures(prefix)
