"""The test doubles the suites and the harness's own tests (``tests/``) share, each defined once.

The two exceptions differ on purpose: a process that is killed runs none of its error handling,
so :class:`Killed` is no :class:`Exception`; a rollback is an ordinary application error, so
:class:`Rollback` is one. Faults with more machinery live in the ``_*_faults`` modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from prism_testkit.interfaces import Message, Transaction, Transactions

if TYPE_CHECKING:
    from prism_testkit.patterns.cdc import EventSink


class Killed(BaseException):
    """A process died here: a BaseException, so no ``except Exception`` in the code under test
    (a retry loop, a cleanup that writes) swallows it or does what a real kill never lets run."""


class Rollback(Exception):
    """Raised inside a transaction block to roll it back: an Exception, as an application's is."""


class DyingSink:
    """A CDC connector's sink that publishes ``lives`` events, then kills it in the next publish."""

    def __init__(self, inner: EventSink, lives: int) -> None:
        self.inner, self.lives = inner, lives

    async def publish(self, topic: str, message: Message) -> None:
        if self.lives <= 0:
            raise Killed("the connector died mid-batch")
        self.lives -= 1
        await self.inner.publish(topic, message)


class HeldCommits:
    """Transactions whose next commit, once ``armed``, waits for ``release`` (``reached`` is set
    first): a transaction begun early commits after later ones."""

    def __init__(self, inner: Transactions) -> None:
        self.inner = inner
        self.armed = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        armed, self.armed = self.armed, False
        async with self.inner.transaction() as tx:
            yield tx
            if armed:
                self.reached.set()
                await self.release.wait()
