"""Projections: read models folded from the store's notification log, exactly once in effect.

A :class:`Projection` is a handler from an event to view writes. A :class:`ProjectionRunner`
follows the notification log from its view store's tracking position and applies batches
through the view store (see :mod:`.views` for how each kind makes the effect exactly-once).
Rebuilding is running the same projection into an empty view store (a fresh prefix) from 0;
the result equals the incrementally maintained one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.pattern_sdk.lifecycle import (
    DEFAULT_FORCE_TIMEOUT,
    DEFAULT_GRACEFUL_TIMEOUT,
    BatchProcess,
    logged,
    run_batches,
)

from .errors import EventSourcingConfigurationError, ProjectionTimeout
from .events import RecordedEvent
from .store import Clock, EventStore, Notification
from .views import ViewStore, ViewWriter

log = logging.getLogger(__name__)

Handler = Callable[[ViewWriter, RecordedEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lag:
    events: int  # committed events not yet applied
    seconds: float  # age of the oldest of them (0.0 when none)


class ProjectionRunner(BatchProcess):
    """Applies ``handler`` to every event of ``store``, in notification order, into ``views``.

    Run one runner per view store: a second one is harmless (its batches conflict and are
    retried) but useless.

    Drive it with :meth:`run_once` / :meth:`catch_up` / :meth:`run`, or as a lifecycle process
    (a CQRS read model too): :meth:`start`, :meth:`health`, :meth:`stop` (``within=``). A stop
    lets the batch in hand be applied (with its tracking position, in one write); forced (the
    bound ran out: the store or the views hang), the batch is cancelled and the report names
    the events left (``event N of PREFIX``), which the next runner over the same views applies.
    """

    pattern_name = "projection"

    def __init__(
        self,
        store: EventStore,
        views: ViewStore,
        handler: Handler,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.05,
        clock: Clock | None = None,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> None:
        if batch_size < 1 or poll_interval <= 0:
            raise EventSourcingConfigurationError("batch_size must be >= 1 and poll_interval > 0")
        super().__init__(
            graceful_timeout=graceful_timeout,
            force_timeout=force_timeout,
            health_timeout=health_timeout,
            idle_wait=poll_interval,
        )
        self._batch: list[int] = []  # offsets of the batch in hand, until applied
        self.store, self.views, self.handler = store, views, handler
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self.clock = store.clock if clock is None else clock  # lag compares with events' store time
        self.applied = 0  # events applied by this runner (replays included)

    async def position(self) -> int:
        return await self.views.position()

    async def run_once(self, *, wait: float = 0.0) -> int:
        """Apply the next batch; how many events it held (0: caught up)."""
        start = await self.views.position()
        batch = await self.store.read_notifications(start, limit=self.batch_size, wait=wait)
        if not batch:
            return 0
        by_offset: dict[int, Notification] = {n.offset: n for n in batch}

        async def apply(writer: ViewWriter, offset: int) -> None:
            await self.handler(writer, by_offset[offset].event)

        self._batch = list(by_offset)
        await self.views.apply_batch(start, list(by_offset), apply)
        self._batch = []
        self.applied += len(batch)
        return len(batch)

    async def catch_up(self) -> int:
        """Apply batches until none is left; how many events that took."""
        total = 0
        while applied := await self.run_once():
            total += applied
        return total

    async def lag(self) -> Lag:
        position = await self.views.position()
        behind = max(0, await self.store.notifications_end() - position)
        if behind == 0:
            return Lag(0, 0.0)
        oldest = await self.store.read_notifications(position, limit=1)
        seconds = max(0.0, self.clock() - oldest[0].event.recorded_at) if oldest else 0.0
        return Lag(behind, seconds)

    async def wait_for(self, offset: int, within: float) -> None:
        """Return once every event below notification ``offset`` is applied (read-your-writes),
        or raise :class:`ProjectionTimeout` after ``within`` seconds."""
        deadline = clocks.monotonic() + within
        while (position := await self.views.position()) < offset:
            if clocks.monotonic() >= deadline:
                raise ProjectionTimeout(f"projection {self.views.prefix!r} is at {position}, not yet at {offset}")
            await asyncio.sleep(self.poll_interval)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set; failures are logged and retried."""

        async def batch() -> bool:
            return await self.run_once() >= self.batch_size

        failed = logged(log, "projection %s failed; retrying", self.views.prefix)
        await run_batches(stop, batch, wait=self.poll_interval, on_error=failed)

    # -- lifecycle --------------------------------------------------------------------------

    async def _step(self) -> bool:
        try:
            return await self.run_once() >= self.batch_size
        except Exception:
            self._batch = []  # not applied: read again by the next batch
            raise

    async def _probe(self) -> None:
        await self.views.position()
        await self.store.notifications_end()

    def _in_flight(self) -> list[str]:
        return [f"event {offset} of {self.views.prefix}" for offset in self._batch]
