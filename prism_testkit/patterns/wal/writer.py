"""The writer side: durable appends (receipts), sync / async / hybrid apply modes,
read-your-writes and the lag gauges."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.interfaces import KeyValue, Log, Transactions
from prism_testkit.pattern_sdk import metrics as prometheus

from .applier import WalApplier
from .codec import HEADER_KEY, Mutation, Transform
from .config import Clock, LogDurability, WalConfig, _checked_config
from .errors import MutationDeadLettered, WalConfigurationError, WalCorruptEntry
from .group_commit import _GroupCommit


@dataclass(frozen=True)
class WalGauges:
    # a level, not a count (prism_testkit.pattern_sdk.metrics)
    GAUGES: ClassVar[frozenset[str]] = frozenset({"unapplied_entries"})

    lag_seconds: float  # age of the oldest unresolved mutation (0 when none)
    unapplied_entries: int

    def prometheus(self, namespace: str) -> str:
        """Prometheus' text format, labelled with ``namespace`` (RFC-009's names)."""
        return prometheus.exposition("wal", namespace, self)


class WriteAheadLog:
    """The writer side: durable appends, read-your-writes, and (for sync / hybrid writes and
    :meth:`start`) its own :class:`WalApplier` over ``target``."""

    def __init__(
        self,
        log: Log,
        target: KeyValue,
        config: WalConfig,
        *,
        durability: LogDurability,
        transactions: Transactions | None = None,
        log_transactions: Transactions | None = None,
        transform: Transform | None = None,
        clock: Clock = clocks.wall,
    ) -> None:
        """``transactions`` are the target store's (applied offsets commit with the writes);
        ``log_transactions`` the log store's, for group commit (the same store as ``log``)."""
        self.config = _checked_config(config)
        if not isinstance(durability, LogDurability):
            raise WalConfigurationError(
                f"durability must be a LogDurability (backend name and whether its log is durable), "
                f"not {type(durability).__name__}"
            )
        durability.require()
        self.durability = durability
        self.log = log
        self.target = target
        self.clock = clock
        self.applier = WalApplier(log, target, config, transactions=transactions, transform=transform)
        self.group_commit = (
            _GroupCommit(log, log_transactions, config.log, config.group_commit_max)
            if log_transactions is not None and config.group_commit
            else None
        )
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- writes -----------------------------------------------------------------------------

    async def put(self, key: str, value: bytes) -> int:
        """Append a put; returns its offset once the log acknowledged it (the receipt)."""
        return await self._write(
            Mutation("put", _checked_key(key), bytes(value), str(clocks.fresh_uuid()), self.clock())
        )

    async def delete(self, key: str) -> int:
        """Append a delete; returns its offset once the log acknowledged it."""
        return await self._write(Mutation("delete", _checked_key(key), None, str(clocks.fresh_uuid()), self.clock()))

    async def _write(self, mutation: Mutation) -> int:
        if self.group_commit is not None:
            offset = await self.group_commit.append(mutation.message(), mutation.mutation_id)
        else:
            offset = await self.log.append(self.config.log, mutation.message())
        mode = self.config.apply_mode
        if mode == "sync":
            await self.wait_applied(offset, within=None)
        elif mode == "hybrid":
            with suppress(TimeoutError):  # durable already: the apply may finish later
                await self.wait_applied(offset, within=self.config.sync_timeout)
        return offset

    async def wait_applied(self, offset: int, *, within: float | None) -> None:
        """Apply (with this WAL's applier) until ``offset`` is resolved; raises
        :class:`MutationDeadLettered` when it was dead-lettered, ``TimeoutError`` after ``within``
        seconds (None: no limit)."""

        # Checked between batches, never by cancelling one: an apply cut in half would have to
        # be repaired by the next replay.
        deadline = None if within is None else clocks.monotonic() + within
        applier = self.applier
        while not applier.is_resolved(offset):
            if deadline is not None and clocks.monotonic() >= deadline:
                raise TimeoutError(f"mutation at offset {offset} not applied within {within}s")
            if await applier.run_once(wait=0.0) == 0 and not applier.is_resolved(offset):
                await asyncio.sleep(0.005)
        dead = applier.dead_lettered(offset)
        if dead is not None:
            raise MutationDeadLettered(offset, *dead)

    # -- reads ------------------------------------------------------------------------------

    async def _tail_start(self) -> int:
        committed = await self.log.committed(self.config.log, self.config.group) or 0
        return max(committed, self.applier.resolved or 0)

    async def get(self, key: str) -> bytes | None:
        """The key's value including acknowledged but unapplied mutations (read-your-writes)."""
        latest: Mutation | None = None
        offset = await self._tail_start()
        while True:
            records = await self.log.read(self.config.log, offset, limit=self.config.batch_size)
            if not records:
                break
            for record in records:
                if record.message.headers.get(HEADER_KEY) == key:
                    with suppress(WalCorruptEntry):
                        latest = Mutation.decode(record)
            offset = records[-1].offset + 1
        if latest is not None:
            return latest.value
        return await self.target.get(key)

    async def gauges(self) -> WalGauges:
        """``prism_wal_lag_seconds`` and ``prism_wal_unapplied_entries`` as of now."""
        start = await self._tail_start()
        end = await self.log.end_offset(self.config.log)
        lag = 0.0
        first = await self.log.read(self.config.log, start, limit=1) if end > start else []
        if first:
            with suppress(WalCorruptEntry):
                lag = max(0.0, self.clock() - Mutation.decode(first[0]).created_at)
        return WalGauges(lag, max(0, end - start))

    # -- background applier -----------------------------------------------------------------

    def start(self) -> None:
        """Run this WAL's applier in the background (async and hybrid modes)."""
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.ensure_future(self.applier.run(self._stop))

    async def close(self) -> None:
        """Stop the background applier (it checkpoints first)."""
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            await task


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"a WAL key must be a non-empty string, got {key!r}")
    return key
