"""A relay process dying, as the outbox suites simulate it: after the fault fires, nothing the
dead relay does reaches a store (so it can neither commit its offset nor release its lease)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from prism_testkit import KeyValue


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
