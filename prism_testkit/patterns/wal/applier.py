"""The applier: applies the log's mutations to the target from the committed checkpoint, with
per-key applied offsets (guards), retries, the dead-letter log and checkpoints."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import PayloadTooLarge
from prism_testkit.interfaces import KeyValue, Log, Record, Transactions
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import (
    DEFAULT_FORCE_TIMEOUT,
    DEFAULT_GRACEFUL_TIMEOUT,
    BatchProcess,
    logged,
    run_batches,
)

from .codec import HEADER_ATTEMPTS, HEADER_ERROR, HEADER_KEY, HEADER_SOURCE_OFFSET, Mutation, Transform
from .config import Clock, WalConfig, _checked_config
from .errors import WalCorruptEntry, WalError

log = logging.getLogger(__name__)


async def _transformed(transform: Transform | None, mutation: Mutation) -> Mutation:
    if transform is None:
        return mutation
    result = transform(mutation)
    if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
        result = await result
    assert isinstance(result, Mutation), f"transform returned {type(result).__name__}, not a Mutation"
    return result


@dataclass
class _Pending:
    offset: int
    record: Record
    attempts: int = 0
    due: float = 0.0
    error: str = ""


@dataclass
class ApplierMetrics:
    applied: int = 0  # mutations written to the target
    skipped: int = 0  # replayed mutations the applied-offset guard skipped
    retries: int = 0  # failed attempts that will be retried
    dead_lettered: int = 0
    checkpoints: int = 0
    batches: int = 0


# Errors that say "this mutation cannot be applied" (retry, then dead-letter). Anything else
# (the target is down, a transaction aborted) stops the batch and is retried from the record.
class _Rejected(Exception):
    """Wraps an error of the transform hook: the mutation, not the infrastructure, failed."""


_REJECTIONS: tuple[type[Exception], ...] = (_Rejected, PayloadTooLarge, WalCorruptEntry, ValueError, TypeError)


class WalApplier(BatchProcess):
    """Applies the log's mutations to ``target`` from the committed checkpoint (docs/patterns.md,
    "The write-ahead log"). ``transactions`` must be the target store's own (same keys as ``target``).

    Drive it with :meth:`run_once` / :meth:`run` / :meth:`drain`, or as a lifecycle process:
    :meth:`start`, :meth:`health`, :meth:`stop` (``within=``). A stop lets the batch in hand be
    applied, then commits the checkpoint; forced (the bound ran out: the log or the target
    hangs), the batch is cancelled and the report names the mutations left unapplied
    (``mutation N of LOG``, and those waiting for a retry): the checkpoint was not moved past
    them, so the next applier over the same log applies them (its guards skip what was).
    """

    pattern_name = "wal-applier"

    def __init__(
        self,
        log: Log,
        target: KeyValue,
        config: WalConfig,
        *,
        transactions: Transactions | None = None,
        transform: Transform | None = None,
        on_applied: Callable[[int, Mutation], None] | None = None,
        on_skipped: Callable[[int, Mutation], None] | None = None,
        clock: Clock = clocks.monotonic,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> None:
        self.config = _checked_config(config)
        super().__init__(
            graceful_timeout=graceful_timeout,
            force_timeout=force_timeout,
            health_timeout=health_timeout,
            idle_wait=self.config.batch_timeout,
        )
        self.log = log
        self.target = target
        self.transactions = transactions
        self.transform = transform
        self.on_applied = on_applied  # called once a mutation's write committed
        self.on_skipped = on_skipped  # called when the guard shows a replayed mutation was resolved
        self.clock = clock
        self.metrics = prometheus.tracked("wal_applier", ApplierMetrics())
        self._position: int | None = None  # next offset to read; None until loaded
        self._blocked: dict[str, deque[_Pending]] = {}  # keys waiting behind a failed mutation
        self._dead: dict[int, tuple[str, str]] = {}  # offset -> (key, error), for sync writers
        self._last_checkpoint = float("-inf")
        self._committed = -1
        self._lock = asyncio.Lock()
        self._batch_end: int | None = None  # end of the batch in hand (None between batches)

    # -- observability ----------------------------------------------------------------------

    @property
    def resolved(self) -> int | None:
        """Offset below which this applier resolved every mutation (None before its first batch)."""
        if self._position is None:
            return None
        heads = [queue[0].offset for queue in self._blocked.values() if queue]
        return min([self._position, *heads])

    @property
    def blocked_keys(self) -> list[str]:
        return [key for key, queue in self._blocked.items() if queue]

    def dead_lettered(self, offset: int) -> tuple[str, str] | None:
        """(key, error) of a mutation this applier dead-lettered."""
        return self._dead.get(offset)

    def is_resolved(self, offset: int) -> bool:
        """Whether this applier applied (or dead-lettered) the mutation at ``offset``; a key
        waiting behind a failed mutation does not hold up the others."""
        if self._position is None or offset >= self._position:
            return False
        return not any(p.offset == offset for queue in self._blocked.values() for p in queue)

    # -- one batch --------------------------------------------------------------------------

    async def run_once(self, *, wait: float | None = None) -> int:
        """Retry what is due, apply one batch of new records, checkpoint when the interval
        passed; returns how many mutations were applied."""
        async with self._lock:
            return await self._run_once(self.config.batch_timeout if wait is None else wait)

    async def _run_once(self, wait: float) -> int:
        config = self.config
        if self._position is None:
            self._position = await self.log.committed(config.log, config.group) or 0
            self._committed = self._position
        applied = await self._retry_due()
        records = await self.log.read(config.log, self._position, limit=config.batch_size, wait=wait)
        self._batch_end = records[-1].offset + 1 if records else None
        for expected, record in enumerate(records, start=self._position):
            if record.offset != expected:
                raise WalError(f"log {config.log!r} skipped from offset {expected} to {record.offset}")
        if self.transactions is not None and records:
            applied += await self._apply_batch(records, self.transactions)
            self._position = records[-1].offset + 1
        for record in records if self.transactions is None else ():
            key = record.message.headers.get(HEADER_KEY)
            queue = self._blocked.get(key) if key else None
            if queue:
                queue.append(_Pending(record.offset, record))  # per-key order: behind the failed one
            else:
                applied += await self._attempt(_Pending(record.offset, record))
            self._position = record.offset + 1
        self._batch_end = None
        if records:
            self.metrics.batches += 1
        await self._checkpoint(force=False)
        return applied

    async def _apply_batch(self, records: list[Record], transactions: Transactions) -> int:
        """Apply a batch in one target transaction (one commit for the whole batch), each
        mutation with its applied offset. A rejected mutation is left out of the transaction and
        holds back the rest of its key; the others commit. Nothing of the batch is settled (no
        callbacks, retries or dead letters) before the commit: if it fails, the batch is read
        again."""
        outcomes: list[tuple[str, _Pending, Mutation | None, str]] = []  # (what, pending, mutation, error)
        held: set[str] = set()  # keys with a rejection earlier in this batch
        async with transactions.transaction() as tx:
            for record in records:
                pending = _Pending(record.offset, record)
                key = record.message.headers.get(HEADER_KEY)
                if key and (self._blocked.get(key) or key in held):
                    outcomes.append(("wait", pending, None, ""))
                    continue
                try:
                    mutation = Mutation.decode(record)
                except WalCorruptEntry as exc:
                    outcomes.append(("corrupt", pending, None, str(exc)))
                    continue
                guard = self.config.guard_key(mutation.key)
                if _applied(await tx.get(guard), record.offset):
                    outcomes.append(("skipped", pending, mutation, ""))
                    continue
                try:
                    change = await self._transform(mutation)
                except _REJECTIONS as exc:
                    held.add(mutation.key)
                    outcomes.append(("rejected", pending, mutation, _describe(exc)))
                    continue
                if change.op == "put":
                    assert change.value is not None
                    await tx.put(change.key, change.value)
                else:
                    await tx.delete(change.key)
                await tx.put(guard, str(record.offset).encode())
                outcomes.append(("applied", pending, mutation, ""))
        applied = 0
        for what, pending, settled, error in outcomes:  # committed: settle in log order
            if what == "applied" and settled is not None:
                applied += 1
                self.metrics.applied += 1
                if self.on_applied is not None:
                    self.on_applied(pending.offset, settled)
            elif what == "skipped" and settled is not None:
                self._skipped(pending.offset, settled)
            elif what == "corrupt":
                await self._dead_letter(pending, None, error)
            elif what == "rejected" and settled is not None:
                await self._reject(pending, settled, error, None)
            else:
                key = pending.record.message.headers.get(HEADER_KEY, "")
                self._blocked.setdefault(key, deque()).append(pending)
        return applied

    async def _retry_due(self) -> int:
        applied = 0
        now = self.clock()
        for key in list(self._blocked):
            queue = self._blocked[key]
            while queue and queue[0].due <= now:
                head = queue.popleft()
                try:
                    done = await self._attempt(head, requeue=queue)
                except BaseException:
                    queue.appendleft(head)  # the target failed, not the mutation: keep its place
                    raise
                applied += done
                if queue and queue[0] is head:
                    break  # failed again: the rest of the key waits
            if not queue:
                del self._blocked[key]
        return applied

    async def _attempt(self, pending: _Pending, requeue: deque[_Pending] | None = None) -> int:
        """Apply one mutation; on rejection schedule a retry (at the head of its key's queue) or
        dead-letter it. Returns 1 when it was written."""
        try:
            mutation = Mutation.decode(pending.record)
        except WalCorruptEntry as exc:
            await self._dead_letter(pending, None, str(exc))
            return 0
        try:
            written = await self._apply(pending.offset, mutation)
        except _REJECTIONS as exc:
            await self._reject(pending, mutation, _describe(exc), requeue)
            return 0
        return 1 if written else 0

    async def _reject(self, pending: _Pending, mutation: Mutation, error: str, requeue: deque[_Pending] | None) -> None:
        """A failed attempt: retry later at the head of its key's queue, or dead-letter it."""
        pending.attempts += 1
        pending.error = error
        if pending.attempts >= self.config.max_attempts:
            await self._dead_letter(pending, mutation, error)
            return
        self.metrics.retries += 1
        pending.due = self.clock() + self.config.backoff(pending.attempts)
        queue = requeue if requeue is not None else self._blocked.setdefault(mutation.key, deque())
        queue.appendleft(pending)
        self._blocked[mutation.key] = queue

    async def _apply(self, offset: int, mutation: Mutation) -> bool:
        """Write one mutation with its applied offset; False when the guard says it is resolved.
        The guard is read before the transform runs, so a replay never retries a resolved one."""
        guard = self.config.guard_key(mutation.key)
        if self.transactions is not None:
            async with self.transactions.transaction() as tx:
                if _applied(await tx.get(guard), offset):
                    return self._skipped(offset, mutation)
                change = await self._transform(mutation)  # raising rolls the transaction back
                if change.op == "put":
                    assert change.value is not None
                    await tx.put(change.key, change.value)
                else:
                    await tx.delete(change.key)
                await tx.put(guard, str(offset).encode())
        else:
            if _applied(await self.target.get(guard), offset):
                return self._skipped(offset, mutation)
            change = await self._transform(mutation)
            if change.op == "put":
                assert change.value is not None
                await self.target.put(change.key, change.value)
            else:
                await self.target.delete(change.key)
            await self.target.put(guard, str(offset).encode())  # after the value: a replay re-writes it
        self.metrics.applied += 1
        if self.on_applied is not None:
            self.on_applied(offset, mutation)
        return True

    def _skipped(self, offset: int, mutation: Mutation) -> bool:
        self.metrics.skipped += 1
        if self.on_skipped is not None:
            self.on_skipped(offset, mutation)
        return False

    async def _transform(self, mutation: Mutation) -> Mutation:
        try:
            return await _transformed(self.transform, mutation)
        except Exception as exc:
            raise _Rejected(str(exc)) from exc

    async def _dead_letter(self, pending: _Pending, mutation: Mutation | None, error: str) -> None:
        message = pending.record.message.with_headers(
            **{HEADER_ERROR: error, HEADER_ATTEMPTS: str(pending.attempts), HEADER_SOURCE_OFFSET: str(pending.offset)}
        )
        await self.log.append(self.config.dead_letter, message)
        if mutation is not None:
            # Resolved: a replay from an older checkpoint must not dead-letter it again.
            guard = self.config.guard_key(mutation.key)
            if not _applied(await self.target.get(guard), pending.offset):
                await self.target.put(guard, str(pending.offset).encode())
        self.metrics.dead_lettered += 1
        self._dead[pending.offset] = (mutation.key if mutation else "", error)
        log.warning("WAL %s: mutation at offset %d dead-lettered: %s", self.config.log, pending.offset, error)

    async def _checkpoint(self, *, force: bool) -> None:
        resolved = self.resolved
        if resolved is None or resolved <= self._committed:
            return
        now = self.clock()
        if not force and now - self._last_checkpoint < self.config.checkpoint_interval:
            return
        await self.log.commit(self.config.log, self.config.group, resolved)
        self._committed, self._last_checkpoint = resolved, now
        self.metrics.checkpoints += 1

    async def checkpoint(self) -> None:
        """Commit the checkpoint now (also done when :meth:`run` stops)."""
        async with self._lock:
            await self._checkpoint(force=True)

    async def drain(self, *, until: int | None = None, within: float = 30.0) -> None:
        """Apply until everything below ``until`` (default: the current end) is resolved; retries
        are waited out. Raises ``TimeoutError`` after ``within`` seconds."""
        end = await self.log.end_offset(self.config.log) if until is None else until
        deadline = clocks.monotonic() + within
        while (self.resolved or 0) < end or self._position is None:
            if clocks.monotonic() > deadline:
                raise TimeoutError(f"WAL {self.config.log!r} not applied up to {end} within {within}s")
            if await self.run_once(wait=0.0) == 0 and (self.resolved or 0) < end:
                await asyncio.sleep(min(0.01, self.config.backoff_initial))
        await self.checkpoint()

    async def run(self, stop: asyncio.Event) -> None:
        """Apply until ``stop`` is set, then checkpoint. Errors of the target or log are logged
        and the batch retried (from the record that failed) after ``batch_timeout``."""

        async def batch() -> bool:
            return bool(await self.run_once()) or not self._blocked

        failed = logged(log, "WAL applier of %s failed; retrying", self.config.log)
        await run_batches(stop, batch, wait=self.config.batch_timeout, on_error=failed, finish=self.checkpoint)

    # -- lifecycle --------------------------------------------------------------------------

    async def _step(self) -> bool:
        try:
            applied = await self.run_once()
        except BaseException:
            if not self.stop_requested.is_set():
                self._batch_end = None  # a failed batch is read again; a cancelled one is reported
            raise
        return bool(applied) or not self._blocked

    async def _finish(self) -> None:
        await self.checkpoint()

    async def _probe(self) -> None:
        await self.log.end_offset(self.config.log)
        await self.target.get(self.config.guard_key("health"))

    def _in_flight(self) -> list[str]:
        left: list[int] = []
        if self._batch_end is not None and self._position is not None:
            left.extend(range(self._position, self._batch_end))
        left.extend(p.offset for queue in self._blocked.values() for p in queue)
        return [f"mutation {offset} of {self.config.log}" for offset in sorted(set(left))]


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


def _applied(guard: bytes | None, offset: int) -> bool:
    return guard is not None and int(guard) >= offset
