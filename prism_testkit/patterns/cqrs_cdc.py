"""CQRS with read models synchronised through CDC (RFC-009 "CDC + CQRS", §5 + §6).

The write model is rows (JSON values under a key prefix, ``<table>/<id>``) on a backend with
transactions and a change feed (PostgreSQL logical decoding, the SQLite change table,
memstore's feed). A command reads the rows it needs inside one transaction, is validated
against them (``decide`` raises to refuse it: the transaction rolls back, nothing is written),
and writes rows plus one journal row ``_commands/<command id>`` in the same transaction.

The :class:`~.cdc.CdcConnector` captures the committed transactions and delivers them, whole
and in commit order, through :class:`ReadModelSink` into every read model, each a
:class:`~.event_sourcing.ViewStore` on its own backend (any key-value with compare-and-set).
The connector confirms the feed's position only after every read model applied the batch, so
a crash anywhere replays, and the read models make the replay harmless:

* exactly-once effect: a read model applies a captured transaction only when its position is
  at or after the model's tracking position. On a store with transactions
  (:class:`~.event_sourcing.TransactionalViews`) the view writes and the new tracking position
  commit in one transaction; elsewhere (:class:`~.event_sourcing.KeyValueViews`) every view
  value is stamped with the offset of the row change that wrote it (its transaction's position
  and its place in it) and written by compare-and-set, so a replayed transaction finds the
  changes already applied done, and the tracking position moves after the views.
* read-your-writes: :meth:`CdcCqrs.execute` returns the command id; the sink learns the
  change position of its journal row when the transaction is delivered, and
  :meth:`CdcCqrs.wait` returns once the read model's position is past it, or raises
  :class:`~.cqrs.ReadModelBehind` after the timeout. (The positions live in this process: the
  wait is for the process that runs the connector, as with event-sourced read models.)
* lag: :meth:`CdcCqrs.health` reads the captured but unconfirmed transactions and reports,
  per read model, the changes not yet applied and the age of the oldest; beyond
  ``lag_tolerance`` it raises the alert flag and counts it.

Usage::

    write = RowWriteModel(src.transactions(), src.keyvalue(), prefix="shop/")
    cqrs = CdcCqrs(write, src.changefeed(), {"stock": CdcReadModel(KeyValueViews(redis_kv, "stock"), on_stock)})
    done = await cqrs.execute(reserve_item)          # decide(rows) validates and writes rows
    await cqrs.query("stock", "sku-1", after=done)   # once the read model applied the command
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import TransactionAborted
from prism_testkit.interfaces import ChangeFeed, KeyValue, Message, Transaction, Transactions
from prism_testkit.pattern_sdk import metrics as prometheus

from .cdc import CdcConfig, CdcConnector, ChangeEvent, decode
from .cqrs import CqrsConfig, CqrsMetrics, ReadModelBehind, ReadModelHealth, UnknownReadModel
from .event_sourcing import CorruptStream, EventSourcingConfigurationError, ViewStore, ViewWriter

__all__ = [
    "JOURNAL",
    "CdcCqrs",
    "CdcReadModel",
    "Command",
    "Done",
    "ReadModelSink",
    "RowChange",
    "RowHandler",
    "RowWriteModel",
    "Rows",
    "STRIDE",
]

JOURNAL = "_commands"  # table of the journal rows, one per command
R = TypeVar("R")


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _load(raw: bytes | None, key: str) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise CorruptStream(f"row {key!r} is not JSON: written behind the write model's back") from None


# --- write model ---------------------------------------------------------------------------


class Rows:
    """The rows a command sees and writes, inside its transaction (keys relative to the prefix)."""

    def __init__(self, tx: Transaction, prefix: str) -> None:
        self._tx, self._prefix = tx, prefix
        self.written: dict[str, Any] = {}  # key -> new value (None: deleted)

    async def get(self, key: str) -> Any:
        return _load(await self._tx.get(self._prefix + key), key)

    async def put(self, key: str, value: Any) -> None:
        _check_key(key)
        await self._tx.put(self._prefix + key, _dump(value))
        self.written[key] = value

    async def delete(self, key: str) -> None:
        _check_key(key)
        await self._tx.delete(self._prefix + key)
        self.written[key] = None


def _check_key(key: str) -> None:
    if "/" not in key or key.startswith(JOURNAL + "/"):
        raise ValueError(f"row key {key!r} must be '<table>/<id>' outside the {JOURNAL!r} table")


Command = Callable[[Rows], Awaitable[R]]


@dataclass(frozen=True, slots=True)
class Done(Generic[R]):
    """A committed command: its id (the read-your-writes token), what ``decide`` returned and
    the rows it wrote. ``duplicate``: the id had committed before; nothing was written again."""

    command_id: str
    result: R | None
    written: Mapping[str, Any]
    duplicate: bool = False


class RowWriteModel:
    """Rows under ``prefix`` on a backend with transactions (and, for CQRS, a change feed)."""

    def __init__(self, transactions: Transactions, kv: KeyValue, prefix: str) -> None:
        if not prefix:
            raise EventSourcingConfigurationError("a write model needs a non-empty key prefix")
        self.transactions, self.kv, self.prefix = transactions, kv, prefix

    def journal_key(self, command_id: str) -> str:
        return f"{self.prefix}{JOURNAL}/{command_id}"

    async def execute(self, decide: Command[R], *, command_id: str | None = None, attempts: int = 3) -> Done[R]:
        """Run ``decide`` in a transaction and commit its writes with the command's journal row.

        ``decide`` raising refuses the command (rolled back, re-raised). A commit that loses a
        race (``TransactionAborted``) is retried against the new state, ``attempts`` in all. A
        command retried with the ``command_id`` of one that committed returns ``duplicate``."""
        command_id = command_id or clocks.fresh_uuid().hex
        for attempt in range(1, attempts + 1):
            try:
                async with self.transactions.transaction() as tx:
                    if await tx.get(self.journal_key(command_id)) is not None:
                        return Done(command_id, None, {}, duplicate=True)
                    rows = Rows(tx, self.prefix)
                    result = await decide(rows)
                    await tx.put(self.journal_key(command_id), _dump({"at": clocks.wall()}))
                return Done(command_id, result, dict(rows.written))
            except TransactionAborted:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, key: str) -> Any:
        return _load(await self.kv.get(self.prefix + key), key)

    async def rows(self, table: str) -> dict[str, Any]:
        """Every row of ``table`` (id -> value), read outside any transaction."""
        found = {}
        async for full in self.kv.scan(f"{self.prefix}{table}/"):
            value = await self.kv.get(full)
            if value is not None:
                found[full[len(self.prefix) :]] = _load(value, full)
        return found


# --- read models ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row's committed change as a read model's handler sees it."""

    key: str  # relative to the write model's prefix, "<table>/<id>"
    table: str
    before: Any  # None: the row did not exist (or a snapshot row)
    after: Any  # None: deleted
    position: int  # change position of its transaction
    snapshot: bool = False  # an initial-snapshot row (op "r"): ``after`` is the state, ``before`` unknown


RowHandler = Callable[[ViewWriter, RowChange], Awaitable[None]]


STRIDE = 1 << 20  # view-store offsets per change position: one per row change of a transaction


class CdcReadModel:
    """A read model fed by CDC: ``handler`` folds row changes into ``views``.

    Exactly-once effect: a transaction below the model's position is a redelivery and is
    skipped. Otherwise :meth:`ViewStore.apply_batch` applies it: on a store with transactions
    the view writes and the new position commit together; on a plain key-value every view value
    is stamped with the offset of the row change that wrote it (compare-and-set), so a replay
    after a crash mid-transaction skips exactly the changes already there. Each row change has
    its own offset (``position * STRIDE + index``), and the stored tracking offset moves only
    at a transaction's end, to ``(position + 1) * STRIDE``. On a plain key-value, a handler
    that derives other keys from the row's own view value must write that row's key last (a
    crash between its writes then leaves the old value to derive from on replay).
    """

    def __init__(self, views: ViewStore, handler: RowHandler) -> None:
        self.views, self.handler = views, handler
        self.applied = 0  # transactions applied by this instance
        self.skipped = 0  # redelivered transactions skipped
        self.last_commit_ms = 0  # commit time of the last transaction applied

    async def position(self) -> int:
        """Every captured transaction below this change position is applied."""
        return await self.views.position() // STRIDE

    async def apply(self, position: int, changes: Sequence[RowChange], commit_ts_ms: int = 0) -> bool:
        """Apply one captured transaction; False when it was applied before."""
        if len(changes) >= STRIDE:
            raise EventSourcingConfigurationError(f"a transaction of {len(changes)} row changes is too large")
        start = await self.views.position()
        if position < start // STRIDE:
            self.skipped += 1
            return False
        base = position * STRIDE
        offsets = [base + i for i in range(len(changes))] + [base + STRIDE - 1]  # the last one: the end mark

        async def fold(writer: ViewWriter, offset: int) -> None:
            if offset - base < len(changes):
                await self.handler(writer, changes[offset - base])

        await self.views.apply_batch(start, offsets, fold)
        self.applied += 1
        self.last_commit_ms = commit_ts_ms
        return True

    async def get(self, key: str) -> Any:
        return await self.views.get(key)


class ReadModelSink:
    """The connector's sink: gathers each transaction's events (``transaction.total`` of
    them) and applies the transaction to every read model; ``publish`` returns once all did,
    so the connector confirms only what every read model holds."""

    def __init__(
        self,
        models: Mapping[str, CdcReadModel],
        prefix: str,
        on_command: Callable[[str, int], None] = lambda command_id, position: None,
    ) -> None:
        self.models, self.prefix, self.on_command = dict(models), prefix, on_command
        self._open: list[ChangeEvent] = []

    async def publish(self, topic: str, message: Message) -> None:
        event = decode(message)
        if event.total_order == 1:
            self._open = []  # a transaction starts (again, after a failed attempt)
        self._open.append(event)
        if event.total_order < event.total:
            return
        events, self._open = self._open, []
        if len(events) != event.total or any(e.position != event.position for e in events):
            raise CorruptStream(
                f"change position {event.position}: got {len(events)} events of a {event.total}-event transaction"
            )
        changes: list[RowChange] = []
        commands: list[str] = []
        for e in events:
            key = e.key[len(self.prefix) :] if e.key.startswith(self.prefix) else e.key
            table = key.split("/", 1)[0] if "/" in key else "default"
            if table == JOURNAL:
                commands.append(key.split("/", 1)[1])
                continue
            after = _load(e.after, key)
            before = None if e.snapshot else _load(e.before, key)
            changes.append(RowChange(key, table, before, after, e.position, e.snapshot))
        for model in self.models.values():
            await model.apply(event.position, changes, event.commit_ts_ms)
        for command_id in commands:
            self.on_command(command_id, event.position)


# --- CQRS ----------------------------------------------------------------------------------


class CdcCqrs:
    """Commands on a :class:`RowWriteModel`, queries on CDC-fed :class:`CdcReadModel` s."""

    REMEMBERED = 65_536  # command positions kept for read-your-writes waits

    def __init__(
        self,
        write: RowWriteModel,
        feed: ChangeFeed,
        read_models: Mapping[str, CdcReadModel],
        config: CqrsConfig | None = None,
        *,
        cdc: CdcConfig | None = None,
        clock: Callable[[], float] = clocks.wall,
        poll_interval: float = 0.01,
    ) -> None:
        if not read_models:
            raise EventSourcingConfigurationError("CQRS needs at least one read model")
        self.config = CqrsConfig(sync_from="cdc") if config is None else config
        cdc = cdc or self.config.cdc or CdcConfig(prefix=write.prefix)
        if cdc.prefix != write.prefix:
            raise EventSourcingConfigurationError(
                f"the CDC capture covers {cdc.prefix!r}, the write model writes under {write.prefix!r}"
            )
        if cdc.tables or set(cdc.operations) != {"INSERT", "UPDATE", "DELETE"} or not cdc.include_old_value:
            raise EventSourcingConfigurationError(
                "read models need every table, operation and before-image of the capture (tables, operations, "
                "include_old_value left at their defaults)"
            )
        self.write, self.feed, self.clock, self.poll_interval = write, feed, clock, poll_interval
        self.read_models = dict(read_models)
        self.metrics = prometheus.tracked("cqrs_cdc", CqrsMetrics())
        self._positions: OrderedDict[str, int] = OrderedDict()
        self.sink = ReadModelSink(self.read_models, write.prefix, self._seen)
        self.connector = CdcConnector(feed, write.kv, self.sink, cdc)
        self._started = False

    def _seen(self, command_id: str, position: int) -> None:
        self._positions[command_id] = position
        while len(self._positions) > self.REMEMBERED:
            self._positions.popitem(last=False)

    def _model(self, name: str) -> CdcReadModel:
        try:
            return self.read_models[name]
        except KeyError:
            raise UnknownReadModel(name, sorted(self.read_models)) from None

    async def start(self) -> None:
        """Create (or resume) the capture: commands committed from now on reach the read models."""
        await self.connector.start()
        self._started = True

    # -- commands ---------------------------------------------------------------------------

    async def execute(self, decide: Command[R], *, command_id: str | None = None, attempts: int = 3) -> Done[R]:
        done = await self.write.execute(decide, command_id=command_id, attempts=attempts)
        self.metrics.commands += not done.duplicate
        return done

    # -- queries ----------------------------------------------------------------------------

    async def query(
        self, model: str, key: str, *, after: Done[Any] | str | None = None, within: float | None = None
    ) -> Any:
        runner = self._model(model)
        if after is not None:
            await self.wait(model, after, within=within)
        return await runner.get(key)

    async def wait(self, model: str, after: Done[Any] | str, *, within: float | None = None) -> None:
        """Return once read model ``model`` applied command ``after`` (its change position is
        below the model's position); :class:`ReadModelBehind` after ``within`` seconds."""
        runner = self._model(model)
        command_id = after.command_id if isinstance(after, Done) else after
        timeout = self.config.read_your_writes_timeout if within is None else within
        deadline = clocks.monotonic() + timeout
        while True:
            wanted = self._positions.get(command_id)
            position = await runner.position()
            if wanted is not None and position > wanted:
                return
            if clocks.monotonic() >= deadline:
                self.metrics.read_your_writes_timeouts += 1
                raise ReadModelBehind(model, position, wanted, timeout)
            await asyncio.sleep(self.poll_interval)

    # -- synchronisation and lag ------------------------------------------------------------

    async def sync_once(self) -> int:
        """One connector batch into every read model; events delivered."""
        return await self.connector.run_once()

    async def catch_up(self) -> int:
        """Deliver until the capture is drained (snapshot included)."""
        return await self.connector.drain()

    async def run(self, stop: asyncio.Event) -> None:
        await self.connector.run(stop)

    async def health(self, *, scan: int = 1000) -> list[ReadModelHealth]:
        """Per read model: changes captured and not applied (among the first ``scan``
        unconfirmed transactions) and the age of the oldest; the alert beyond the tolerance."""
        if not self._started:
            await self.start()
        pending = [s for s in await self.feed.read(self.connector.config.capture, limit=scan) if s.changes]
        report = []
        for name, runner in self.read_models.items():
            position = await runner.position()
            behind = [s for s in pending if s.position >= position]
            seconds = max(0.0, self.clock() - behind[0].commit_ts_ms / 1000) if behind else 0.0
            alert = seconds > self.config.lag_tolerance
            self.metrics.lag_alerts += alert
            self.metrics.max_seconds_behind = max(self.metrics.max_seconds_behind, seconds)
            report.append(ReadModelHealth(name, sum(len(s.changes) for s in behind), seconds, alert))
        return report
