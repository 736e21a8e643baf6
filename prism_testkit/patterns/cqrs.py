"""CQRS (RFC-009 §6): commands go to a write model, queries to read models kept in sync by a
change stream.

Here the write model is an event-sourced :class:`~.event_sourcing.Repository` (commands are
validated against the aggregate's current state by their ``decide`` function) and every read
model is a :class:`~.event_sourcing.ProjectionRunner` following the event store's notification
log into its own views, possibly each on a different backend. The RFC's other route
(``sync_from: cdc``), read models fed by the CDC connector from a row write model on a backend
with a change feed, is :mod:`.cqrs_cdc`.

Read-your-writes is an explicit wait: :meth:`Cqrs.execute` returns the notification position
the write is below (the log's end right after the commit, so it covers the write whatever its
offset), and :meth:`Cqrs.query` with ``after=`` waits until the read model reached it, or raises
:class:`ReadModelBehind` after the timeout. Lag is a metric: :meth:`Cqrs.health` reports each
read model's events and seconds behind and raises the alert flag (and counts it) when it is
further behind than ``lag_tolerance``.

Usage::

    cqrs = Cqrs(Repository(store, Account()), {"balances": balances_runner, "audit": audit_runner})
    written = await cqrs.execute("acct-1", lambda state: withdraw(state, 20))
    balance = await cqrs.query("balances", "acct-1", after=written)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    MESSAGING,
    CheckContext,
    Complexity,
    ConfigProblem,
    PatternSlot,
    PatternSpec,
    Priority,
)

from .cdc import CdcConfig
from .event_sourcing import (
    EventSourcingConfigurationError,
    Loaded,
    NewEvent,
    ProjectionRunner,
    ProjectionTimeout,
    Repository,
)

__all__ = [
    "SPEC",
    "Cqrs",
    "CqrsConfig",
    "CqrsMetrics",
    "ReadModelBehind",
    "ReadModelHealth",
    "UnknownReadModel",
    "Written",
]


class CqrsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lag_tolerance: Duration = Field(default=1.0, gt=0, description="alert when a read model lags more (seconds)")
    read_your_writes_timeout: Duration = Field(
        default=5.0, gt=0, description="how long a query with after= waits for its read model"
    )
    sync_from: Literal["events", "cdc"] = Field(
        default="events",
        description="what feeds the read models: the event store's notifications (slot 'write'), or the CDC "
        "connector over a row write model on a backend with a change feed (slot 'source')",
    )
    cdc: CdcConfig | None = Field(
        default=None,
        description="the capture feeding the read models (sync_from: cdc; default: the write model's prefix)",
    )


class ReadModelBehind(ProjectionTimeout):
    """A read-your-writes wait ran out before the read model reached the write."""

    def __init__(self, model: str, position: int, wanted: int | None, waited: float) -> None:
        # wanted is None when the write's change position is not known yet (CDC: not captured yet)
        self.model, self.position, self.wanted = model, position, wanted
        target = "the write (not captured yet)" if wanted is None else wanted
        super().__init__(f"read model {model!r} is at {position}, not yet at {target}, after {waited}s")


class UnknownReadModel(EventSourcingConfigurationError, KeyError):
    def __init__(self, model: str, known: Sequence[str]) -> None:
        self.model = model
        super().__init__(f"no read model {model!r}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Written:
    """A command's result: the aggregate after it and the notification position read models
    must reach to show it."""

    stream: str
    version: int
    state: Any
    position: int


@dataclass(frozen=True, slots=True)
class ReadModelHealth:
    model: str
    events_behind: int
    seconds_behind: float
    alert: bool  # further behind than lag_tolerance


@dataclass
class CqrsMetrics:
    commands: int = 0  # commands executed (accepted)
    lag_alerts: int = 0  # health checks that found a read model beyond the tolerance
    max_seconds_behind: float = 0.0
    read_your_writes_timeouts: int = 0


Decide = Callable[[Loaded], Sequence[NewEvent]]


class Cqrs:
    def __init__(
        self, write: Repository, read_models: Mapping[str, ProjectionRunner], config: CqrsConfig | None = None
    ) -> None:
        if not read_models:
            raise EventSourcingConfigurationError("CQRS needs at least one read model")
        foreign = [name for name, runner in read_models.items() if runner.store.config != write.store.config]
        if foreign:
            raise EventSourcingConfigurationError(
                f"read models {foreign} follow another event store than the write model"
            )
        self.write = write
        self.read_models = dict(read_models)
        self.config = CqrsConfig() if config is None else config
        self.metrics = prometheus.tracked("cqrs", CqrsMetrics())

    def _model(self, name: str) -> ProjectionRunner:
        try:
            return self.read_models[name]
        except KeyError:
            raise UnknownReadModel(name, sorted(self.read_models)) from None

    # -- commands ---------------------------------------------------------------------------

    async def execute(self, stream: str, decide: Decide, *, attempts: int = 3) -> Written:
        """Validate the command against the current state (``decide`` raises to refuse it) and
        append its events; retried on a version conflict (``attempts`` in all)."""
        loaded = await self.write.execute(stream, decide, attempts=attempts)
        # Read after the commit: every offset below it is committed, ours included.
        position = await self.write.store.notifications_end()
        self.metrics.commands += 1
        return Written(stream, loaded.version, loaded.state, position)

    # -- queries ----------------------------------------------------------------------------

    async def query(
        self, model: str, key: str, *, after: Written | int | None = None, within: float | None = None
    ) -> Any:
        """``key`` of read model ``model``; with ``after``, once the model shows that write."""
        runner = self._model(model)
        if after is not None:
            await self.wait(model, after, within=within)
        return await runner.views.get(key)

    async def wait(self, model: str, after: Written | int, *, within: float | None = None) -> None:
        """Return once read model ``model`` reached ``after``; :class:`ReadModelBehind` when
        it does not within ``within`` seconds (default: the config's timeout)."""
        runner = self._model(model)
        wanted = after.position if isinstance(after, Written) else after
        timeout = self.config.read_your_writes_timeout if within is None else within
        try:
            await runner.wait_for(wanted, within=timeout)
        except ProjectionTimeout:
            self.metrics.read_your_writes_timeouts += 1
            raise ReadModelBehind(model, await runner.position(), wanted, timeout) from None

    # -- synchronisation and lag ------------------------------------------------------------

    async def sync_once(self) -> dict[str, int]:
        """One batch for every read model; events applied per model."""
        return {name: await runner.run_once() for name, runner in self.read_models.items()}

    async def run(self, stop: asyncio.Event) -> None:
        """Keep every read model following the store until ``stop`` is set."""
        await asyncio.gather(*(runner.run(stop) for runner in self.read_models.values()))

    async def health(self) -> list[ReadModelHealth]:
        """Each read model's lag; counts an alert for each beyond ``lag_tolerance``."""
        report = []
        for name, runner in self.read_models.items():
            lag = await runner.lag()
            alert = lag.seconds > self.config.lag_tolerance
            self.metrics.lag_alerts += alert
            self.metrics.max_seconds_behind = max(self.metrics.max_seconds_behind, lag.seconds)
            report.append(ReadModelHealth(name, lag.events, lag.seconds, alert))
        return report


_SOURCE = Slot.needs("changefeed", "keyvalue.scan", "transactions")


def _check(ctx: CheckContext) -> list[ConfigProblem]:
    """The write model's slot follows ``sync_from``: an event store, or a change-feed source."""
    config = ctx.config
    assert isinstance(config, CqrsConfig)
    wants, other = ("source", "write") if config.sync_from == "cdc" else ("write", "source")
    what = {
        "write": "an event store (keyvalue and log and transactions; durable)",
        "source": f"rows on a backend with a change feed ({_SOURCE.describe()})",
    }
    problems: list[ConfigProblem] = []
    if wants not in ctx.slots:
        problems.append(
            ("sync_from", f"sync_from: {config.sync_from} needs slot {wants!r}: expected {what[wants]}, found none")
        )
    if other in ctx.slots:
        problems.append(
            (
                "sync_from",
                f"slot {other!r} goes with sync_from: {'events' if other == 'write' else 'cdc'}, "
                f"found it with sync_from: {config.sync_from}",
            )
        )
    if config.cdc is not None and config.sync_from != "cdc":
        problems.append(("cdc", "a capture configures read models fed by CDC: expected sync_from: cdc"))
    return problems


SPEC = PatternSpec(
    name="cqrs",
    title="CQRS",
    priority=Priority.P2,
    complexity=Complexity.HIGH,
    slots={
        "write": PatternSlot(
            Slot.needs("transactions", "log", "keyvalue", durable=True),
            ("store",),
            "write model of sync_from: events: the event store commands append to",
            required=False,
        ),
        "source": PatternSlot(
            _SOURCE,
            ("store",),
            "write model of sync_from: cdc: rows written in transactions, captured by the CDC connector",
            required=False,
            hint="read models fed by CDC follow the write model's own change log (PostgreSQL logical decoding, the "
            "SQLite change table, memstore's feed); Redis, NATS, Kafka and S3 have none",
        ),
        "read": PatternSlot(Slot.needs("keyvalue.cas"), ("read",), "read models and their tracking positions"),
        "sync": PatternSlot(
            MESSAGING,
            ("messaging",),
            "broker between the change stream and remote read models (in-process delivery, as here, needs none)",
            required=False,
            messaging=True,
        ),
    },
    config=CqrsConfig,
    client_apis=frozenset({"transact", "reader", "keyvalue"}),
    summary="commands on an event-sourced or row write model; read models follow its events or its CDC stream; "
    "read-your-writes on demand",
    suites=("cqrs", "lifecycle"),
    before=frozenset({"cdc"}),
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
