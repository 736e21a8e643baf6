"""Write-ahead log (RFC-009 §2, RFC-014 pattern 1): a mutation is appended to a *durable* log and
acknowledged; an applier writes it to the target later, idempotently, from a committed checkpoint.

Writer::

    wal = WriteAheadLog(
        log_driver.log(), target.keyvalue(), WalConfig(log="orders-wal"),
        durability=LogDurability.of(log_spec),          # refuses a log that is not durable
        transactions=target.transactions(),             # when the target has them
        log_transactions=log_driver.transactions(),     # group commit, when the log's store has them
    )
    receipt = await wal.put("order/789", order_bytes)  # the log offset: durable from here on
    await wal.get("order/789")                         # read-your-writes, applied or not

Applier (one per log and group at a time; ``wal.start()`` runs one in the background)::

    applier = WalApplier(log, target_kv, config, transactions=target_tx)
    await applier.run(stop_event)

Guarantees and their limits:

* **Durable receipt**: ``put`` / ``delete`` return the offset only after the log acknowledged the
  append. With ``log_transactions`` (the log store's own), concurrent writers share one log
  transaction, so one fsync covers the whole group (group commit); a writer alone appends
  directly. The log's durability is declared by whoever provisioned it (the pattern cannot know
  backends); a log declared not durable is refused with :class:`NonDurableLog`.
* **Exactly once in effect**: every key keeps its *applied offset* in the target
  (``<guard_prefix><key>``); a mutation at or below it is skipped, so a replay from an older
  checkpoint never applies anything twice or moves a key back to an older value. With
  ``transactions`` a batch of values and their applied offsets commits in one target
  transaction (one commit per batch; nothing can be doubled). Without, the value is written
  first and the guard after it: a crash between the two re-writes the same value on replay,
  which puts and deletes make harmless.
* **Per-key order**: a key's mutations are applied in offset order. A mutation that fails is
  retried with exponential backoff; meanwhile later mutations of *that key* wait behind it and
  every other key keeps flowing. After ``max_attempts`` it goes to the dead-letter log (with the
  error and attempt count) and the key moves on. A record that cannot be decoded at all goes to
  the dead-letter log at once.
* **Checkpoint**: the applier commits (as the log's group offset) the offset below which every
  mutation is resolved (applied or dead-lettered), at most every ``checkpoint_interval``.
* **Read-your-writes**: ``get`` looks for the key's latest mutation in the unapplied tail (from
  the checkpoint to the end of the log) before reading the target.
* **Apply modes**: ``async`` returns after the append; ``sync`` also waits until the mutation is
  applied (:class:`MutationDeadLettered` when it was dead-lettered instead); ``hybrid`` waits up
  to ``sync_timeout`` and then returns the receipt anyway (run an applier too, e.g.
  ``wal.start()``, for what it leaves behind). Sync and hybrid writes apply through the WAL's own
  applier: use one such WAL per log and group.
* **Batches**: an applier reads up to ``batch_size`` records, waiting up to ``batch_timeout``
  for the first.
* **Compaction**: :func:`compact_keep_latest` writes the latest mutation of each key (deletes
  kept as tombstones) to another log; :func:`replay` of it gives the state replaying the whole
  log gives.
* **Observability**: :meth:`WriteAheadLog.gauges` gives ``prism_wal_lag_seconds`` (age of the
  oldest unresolved mutation) and ``prism_wal_unapplied_entries``.

Only ``put`` and ``delete`` are mutations; the ``transform`` hook (consumer-style compute) may
rewrite or reject one: an exception from it counts as a failed attempt. ``retention`` is a
declaration (set it on the log backend); the :class:`~prism_testkit.interfaces.Log` interface
cannot delete records, so compaction writes a new log rather than shrinking this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import prism_testkit.simulation.clock as clocks
from prism_testkit.config.units import Duration
from prism_testkit.errors import ConfigurationError, PayloadTooLarge, PrismError
from prism_testkit.interfaces import KeyValue, Log, Message, Record, Transactions
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    DURABLE_LOG_HINT,
    Complexity,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)
from prism_testkit.report import metrics as prometheus

from .lifecycle import DEFAULT_FORCE_TIMEOUT, DEFAULT_GRACEFUL_TIMEOUT, BatchProcess, run_batches

if TYPE_CHECKING:
    from prism_testkit.registry.backends import BackendSpec

__all__ = [
    "HEADER_CREATED_AT",
    "HEADER_ERROR",
    "HEADER_KEY",
    "HEADER_MUTATION_ID",
    "HEADER_OP",
    "HEADER_SOURCE_OFFSET",
    "CompactionResult",
    "LogDurability",
    "Mutation",
    "MutationDeadLettered",
    "NonDurableLog",
    "WalApplier",
    "WalConfig",
    "WalConfigurationError",
    "WalCorruptEntry",
    "WalError",
    "WalGauges",
    "WriteAheadLog",
    "compact_keep_latest",
    "replay",
]

log = logging.getLogger(__name__)

HEADER_OP = "wal-op"
HEADER_KEY = "wal-key"
HEADER_MUTATION_ID = "wal-mutation-id"
HEADER_CREATED_AT = "wal-created-at"
HEADER_ERROR = "wal-error"  # dead-letter records: why the last attempt failed
HEADER_ATTEMPTS = "wal-attempts"
HEADER_SOURCE_OFFSET = "wal-source-offset"  # dead-letter and compacted records: offset in the WAL

Clock = Callable[[], float]
Op = Literal["put", "delete"]


# --- errors --------------------------------------------------------------------------------


class WalError(PrismError):
    """Base of the write-ahead log's errors."""


class WalConfigurationError(WalError, ConfigurationError):
    """The WAL was set up with values or interfaces that cannot work."""


class NonDurableLog(WalConfigurationError):
    """The log given to a WAL is not declared durable: an acknowledged mutation could be lost."""

    def __init__(self, backend: str, detail: str = "") -> None:
        self.backend = backend
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"backend {backend!r} does not declare its log durable across a crash{why}; a WAL acknowledges "
            f"a mutation as soon as the log has it: {DURABLE_LOG_HINT}"
        )


class WalCorruptEntry(WalError):
    """A log record is not a WAL mutation (missing or unknown headers)."""


class MutationDeadLettered(WalError):
    """In ``sync`` mode: the mutation is durable in the log but could not be applied; it went to
    the dead-letter log after its last attempt."""

    def __init__(self, offset: int, key: str, error: str) -> None:
        self.offset = offset
        self.key = key
        super().__init__(f"mutation at offset {offset} of key {key!r} was dead-lettered: {error}")


# --- configuration -------------------------------------------------------------------------


class WalConfig(BaseModel):
    """Config of a WAL, shared by writers, appliers and namespace files.

    Names left empty derive from ``log``: the dead-letter log ``<log>-dead-letter`` and the key
    prefix of applied offsets in the target ``<log>-applied/``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: str = Field(default="wal", min_length=1, description="the write-ahead log")
    group: str = Field(default="wal-applier", min_length=1, description="applier group: its checkpoint")
    retention: Duration | None = Field(
        default=None, gt=0, description="how long the log keeps entries (seconds; set on the log backend)"
    )
    apply_mode: Literal["sync", "async", "hybrid"] = Field(
        default="async", description="return after the append (async), after the apply (sync), or either (hybrid)"
    )
    sync_timeout: Duration = Field(default=0.05, gt=0, description="hybrid: how long a write waits for its apply")
    batch_size: int = Field(default=1000, ge=1, description="records read per applier batch")
    batch_timeout: Duration = Field(default=0.1, gt=0, description="how long an applier waits for a batch")
    checkpoint_interval: Duration = Field(default=60.0, ge=0, description="seconds between checkpoint commits")
    max_attempts: int = Field(default=5, ge=1, description="apply attempts before the dead-letter log")
    backoff_initial: Duration = Field(default=0.05, gt=0, description="wait before the second attempt")
    backoff_max: Duration = Field(default=5.0, gt=0, description="longest wait between attempts")
    dead_letter_log: str | None = Field(default=None, min_length=1, description="where failed mutations go")
    guard_prefix: str | None = Field(default=None, min_length=1, description="target key prefix of applied offsets")
    compaction: Literal["none", "keep_latest"] = Field(default="none", description="compaction strategy")
    group_commit: bool = Field(
        default=True, description="concurrent writes share one log transaction (one fsync) when the log has them"
    )
    group_commit_max: int = Field(default=256, ge=1, description="most mutations committed together")

    @model_validator(mode="after")
    def _backoff_order(self) -> WalConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(f"backoff_max ({self.backoff_max}) is below backoff_initial ({self.backoff_initial})")
        return self

    @property
    def dead_letter(self) -> str:
        return self.dead_letter_log or f"{self.log}-dead-letter"

    def guard_key(self, key: str) -> str:
        return f"{self.guard_prefix or f'{self.log}-applied/'}{key}"

    def backoff(self, attempts: int) -> float:
        """Wait after ``attempts`` failed attempts: doubling from ``backoff_initial``."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1)))


def _checked_config(config: object) -> WalConfig:
    if not isinstance(config, WalConfig):
        raise WalConfigurationError(f"config must be a WalConfig, not {type(config).__name__}")
    return config


@dataclass(frozen=True)
class LogDurability:
    """What the caller knows about the provisioned log: its backend and whether it is durable
    (from the backend's registration, or the operator's declaration for a server given by URL)."""

    backend: str
    durable: bool
    detail: str = ""  # why, e.g. "JetStream 2.9 fsyncs every two minutes"

    @classmethod
    def of(cls, spec: BackendSpec) -> LogDurability:
        return cls(spec.name, spec.properties.durable, spec.description)

    def require(self) -> None:
        if not self.durable:
            raise NonDurableLog(self.backend, self.detail)


# --- mutations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    op: Op
    key: str
    value: bytes | None  # None for a delete
    mutation_id: str = ""
    created_at: float = 0.0

    def message(self) -> Message:
        headers = {
            HEADER_OP: self.op,
            HEADER_KEY: self.key,
            HEADER_MUTATION_ID: self.mutation_id,
            HEADER_CREATED_AT: repr(self.created_at),
        }
        return Message(self.value or b"", headers, key=self.key)

    @classmethod
    def decode(cls, record: Record) -> Mutation:
        headers = record.message.headers
        op, key = headers.get(HEADER_OP), headers.get(HEADER_KEY)
        if op not in ("put", "delete") or not key:
            raise WalCorruptEntry(f"record at offset {record.offset} is not a WAL mutation (op={op!r}, key={key!r})")
        try:
            created = float(headers.get(HEADER_CREATED_AT, "0"))
        except ValueError:
            created = 0.0
        kind: Op = "put" if op == "put" else "delete"
        value = bytes(record.message.payload) if kind == "put" else None
        return cls(kind, key, value, headers.get(HEADER_MUTATION_ID, ""), created)


Transform = Callable[[Mutation], Mutation | Awaitable[Mutation]]


async def _transformed(transform: Transform | None, mutation: Mutation) -> Mutation:
    if transform is None:
        return mutation
    result = transform(mutation)
    if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
        result = await result
    assert isinstance(result, Mutation), f"transform returned {type(result).__name__}, not a Mutation"
    return result


# --- applying ------------------------------------------------------------------------------


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
    """Applies the log's mutations to ``target`` from the committed checkpoint (see the module
    docstring). ``transactions`` must be the target store's own (same keys as ``target``).

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

        def failed(exc: Exception) -> None:
            log.error("WAL applier of %s failed; retrying", self.config.log, exc_info=exc)

        try:
            await run_batches(stop, batch, wait=self.config.batch_timeout, on_error=failed)
        finally:
            with suppress(Exception):
                await self.checkpoint()

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


# --- group commit --------------------------------------------------------------------------


class _GroupCommit:
    """Concurrent appends share one log transaction, so one fsync covers many mutations.

    The first writer to arrive flushes; whoever arrives while a flush is in flight waits for the
    next one, which takes everyone waiting (up to ``limit``). A lone writer therefore pays no
    extra latency: a group of one is a plain ``append``. The transaction assigns offsets at
    commit, so after it the group's records are found by mutation id from the end offset read
    before it. Either every mutation of a group is in the log or none is: a failed commit fails
    every writer of the group with the same error.
    """

    def __init__(self, log: Log, transactions: Transactions, name: str, limit: int) -> None:
        self.log, self.transactions, self.name, self.limit = log, transactions, name, limit
        self.groups = 0  # transactions committed with more than one mutation
        self.grouped = 0  # mutations that went through them
        self._waiting: list[tuple[Message, str, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, message: Message, mutation_id: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, mutation_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await asyncio.shield(future)  # a cancelled writer must not cancel the group

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
            try:
                offsets = await self._commit(group)
            except BaseException as exc:
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, future), offset in zip(group, offsets, strict=True):
                if not future.done():
                    future.set_result(offset)

    async def _commit(self, group: list[tuple[Message, str, asyncio.Future[int]]]) -> list[int]:
        if len(group) == 1:
            return [await self.log.append(self.name, group[0][0])]
        start = await self.log.end_offset(self.name)
        async with self.transactions.transaction() as tx:
            for message, _, _ in group:
                await tx.append(self.name, message)
        self.groups += 1
        self.grouped += len(group)
        wanted = {mutation_id: index for index, (_, mutation_id, _) in enumerate(group)}
        offsets: list[int | None] = [None] * len(group)
        missing, offset = len(group), start
        while missing:
            records = await self.log.read(self.name, offset, limit=max(100, len(group)))
            if not records:
                raise WalError(f"committed group of {len(group)} not found in log {self.name!r} from offset {start}")
            for record in records:
                index = wanted.get(record.message.headers.get(HEADER_MUTATION_ID, ""))
                if index is not None and offsets[index] is None:
                    offsets[index] = record.offset
                    missing -= 1
            offset = records[-1].offset + 1
        return [o for o in offsets if o is not None]


# --- writing and reading -------------------------------------------------------------------


@dataclass(frozen=True)
class WalGauges:
    # a level, not a count (prism_testkit.report.metrics)
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


# --- compaction and replay -----------------------------------------------------------------


@dataclass(frozen=True)
class CompactionResult:
    read: int  # records of the source below ``upto``
    kept: int  # records written to the output
    upto: int  # source offset the compaction covered (exclusive)
    dropped_corrupt: list[int] = field(default_factory=list)


async def compact_keep_latest(
    log: Log, source: str, output: str, *, upto: int | None = None, page: int = 1000
) -> CompactionResult:
    """Write the latest mutation of every key of ``source`` below ``upto`` (default: its end now)
    to ``output``, in source order, each tagged with its source offset. Deletes stay as
    tombstones so the output also replays correctly over an older copy of the state. Records
    appended during compaction are left for the next run."""
    end = await log.end_offset(source) if upto is None else upto
    latest: dict[str, Record] = {}
    corrupt: list[int] = []
    offset, read = 0, 0
    while offset < end:
        records = [r for r in await log.read(source, offset, limit=min(page, end - offset)) if r.offset < end]
        if not records:
            break
        for record in records:
            read += 1
            try:
                latest[Mutation.decode(record).key] = record  # later offsets replace earlier ones
            except WalCorruptEntry:
                corrupt.append(record.offset)
        offset = records[-1].offset + 1
    kept = sorted(latest.values(), key=lambda r: r.offset)
    for record in kept:
        await log.append(output, record.message.with_headers(**{HEADER_SOURCE_OFFSET: str(record.offset)}))
    return CompactionResult(read, len(kept), end, corrupt)


async def replay(log: Log, source: str, target: KeyValue, *, start: int = 0, page: int = 1000) -> int:
    """Apply every mutation of ``source`` from ``start`` to ``target`` in order (no guard: for
    rebuilding a fresh target, e.g. a migration or checking a compaction). Returns the count."""
    applied, offset = 0, start
    while True:
        records = await log.read(source, offset, limit=page)
        if not records:
            return applied
        for record in records:
            mutation = Mutation.decode(record)
            if mutation.op == "put":
                assert mutation.value is not None
                await target.put(mutation.key, mutation.value)
            else:
                await target.delete(mutation.key)
            applied += 1
        offset = records[-1].offset + 1


# --- registration --------------------------------------------------------------------------


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    if ctx.client_api not in SPEC.client_apis:
        return []
    if ctx.needs.durability == "strong":
        return [("needs.durability", "durability: strong")]
    if ctx.needs.replay:
        return [("needs.replay", "replay: enabled")]
    return []


def _defaults(ctx: NeedsContext) -> Mapping[str, object]:
    retention = ctx.needs.retention
    if retention is None:
        return {}
    return {"retention": retention if retention != float("inf") else None}


SPEC = PatternSpec(
    name="wal",
    title="Write-Ahead Log",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "log": PatternSlot(
            Slot.needs("log", durable=True),
            ("log", "messaging"),
            "durable log written before the ack",
            hint=DURABLE_LOG_HINT,
        ),
        "target": PatternSlot(
            Slot.needs("keyvalue"),
            ("target",),
            "key-value store the log is applied to (transactional ones apply each batch atomically)",
            required=False,
        ),
    },
    config=WalConfig,
    client_apis=frozenset({"queue", "pubsub", "keyvalue", "transact"}),
    summary="operations are appended to a durable log before they are acknowledged; replay and compaction",
    suites=("wal", "stateful_wal", "lifecycle"),
    conflicts=frozenset({"event-sourcing"}),
    before=frozenset({"tiered-storage"}),
    wanted=_wanted,
    defaults=_defaults,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
