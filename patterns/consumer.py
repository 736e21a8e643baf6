"""Consumer (the seeds' consumer pattern, issue #40): at-least-once consumption from a queue, a
topic or a log, with its state (position, processed marks) in a key-value store, so a restarted
consumer resumes where it was. Runs under the pattern lifecycle.

Slots: ``source`` (a :class:`~prism_testkit.interfaces.Queue`, :class:`~prism_testkit.interfaces.Log`
or :class:`~prism_testkit.interfaces.PubSub`) and ``state`` (a :class:`~prism_testkit.interfaces.KeyValue`)::

    async def handle(message: Message) -> None:
        await apply(message)                       # the application's work

    consumer = Consumer(driver.log(), driver.keyvalue(), handle,
                        ConsumerConfig(source="orders", name="billing"))
    async with consumer:                           # start() resumes from the saved position
        ...
    # stop(within=) finishes the message in hand, saves the position and returns

Guarantees and their limits:

* **At-least-once, never a skip**: a message counts as consumed only after the handler
  returned. From a log, the position saved in ``state`` is the offset after the last handled
  record, written after the handler (every ``commit_every`` records, and on stop); a restarted
  consumer (a new instance over the same state) reads from there. A consumer killed between a
  handler's return and the save handles those records again: the duplicates are exactly the
  records handled after the last save, never more, and nothing is skipped. From a queue, a
  message is acked after the handler and after its processed mark is saved; a consumer killed
  before the ack leaves it to be redelivered (the queue's visibility timeout), and the mark
  makes the redelivery an acknowledged duplicate that the handler does not see again. Killed
  between the handler and the mark, the redelivery is handled again (predicted duplicate).
* **Processed marks** are keyed by the ``prism-message-id`` header (the producer sets it; a
  message without it gets no mark, so its redelivery is handled again). They are kept
  ``processed_ttl`` seconds where the state supports a TTL.
* **Handler errors**: a handler that raises is called again after ``retry_backoff`` (doubling up
  to ``retry_backoff_max``) up to ``max_retries`` times; then a queue message is nacked (the
  queue redelivers it, counted ``failed``), a topic message is dropped (``failed``: pub/sub is
  at-most-once anyway), and a log consumer stays on the record and keeps retrying (a log
  consumer never skips; its health turns degraded).
* **Pub/sub** has no position: a consumer sees only what is published while it is subscribed
  (from ``start()`` on), and its marks drop republished duplicates.
* **Lifecycle**: ``stop(within=)`` lets the message in hand finish, saves the position and
  returns; what is still in hand when the bound runs out is left (a queue redelivers it, a log
  consumer's next instance handles it again) and listed in the report.
* **Metrics** (:class:`ConsumerMetrics`, ``prism_consumer_*``): received, processed,
  duplicates skipped, handler errors, failed, state saves, position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration
from prism_testkit.errors import ConfigurationError, DeliveryNotFound, NotSupported, PrismError
from prism_testkit.interfaces import (
    MESSAGE_ID_HEADER,
    KeyValue,
    Log,
    Message,
    PubSub,
    Queue,
    QueueDelivery,
    Record,
    Subscription,
)
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    MESSAGING,
    CheckContext,
    Complexity,
    ConfigProblem,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)
from prism_testkit.report import metrics as prometheus

from .lifecycle import DEFAULT_GRACEFUL_TIMEOUT, Health, HealthStatus, PatternProcess, validated_slots

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerConfigurationError",
    "ConsumerError",
    "ConsumerMetrics",
    "ConsumerStateError",
    "Handler",
]

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class ConsumerError(PrismError):
    """Base class of the consumer's errors."""


class ConsumerConfigurationError(ConsumerError, ConfigurationError):
    pass


class ConsumerStateError(ConsumerError):
    """The saved state cannot be read as a consumer's state (corrupt, or another program's)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"consumer state {key!r}: {detail}")
        self.key = key


class ConsumerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    source: str = Field(default="events", min_length=1, description="queue, topic or log consumed")
    name: str = Field(
        default="consumer", min_length=1, description="the consumer's name: instances sharing it share the state"
    )
    start: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a log consumer with no saved position begins"
    )
    batch_size: int = Field(default=100, ge=1, description="log records read per poll")
    commit_every: int = Field(default=1, ge=1, description="log: save the position after this many handled records")
    poll_wait: Duration = Field(default=0.2, gt=0, description="seconds one receive or read waits for a message")
    visibility_timeout: Duration = Field(default=30.0, gt=0, description="queue: seconds a received message is hidden")
    max_retries: int = Field(default=3, ge=0, description="handler retries before a message is given up")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first handler retry")
    retry_backoff_max: Duration = Field(default=2.0, ge=0, description="longest wait between handler retries")
    processed_ttl: Duration = Field(default=86400.0, gt=0, description="seconds a processed mark is kept")
    state_prefix: str = Field(default="consumer/", description="prefix of the consumer's keys in state")
    graceful_timeout: Duration = Field(
        default=DEFAULT_GRACEFUL_TIMEOUT, ge=0, description="stop(): seconds to finish the message in hand"
    )

    def position_key(self) -> str:
        return f"{self.state_prefix}{self.name}/{self.source}/position"

    def mark_key(self, message_id: str) -> str:
        return f"{self.state_prefix}{self.name}/{self.source}/done/{message_id}"


@dataclass
class ConsumerMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})

    received: int = 0  # messages and records taken from the source (redeliveries included)
    processed: int = 0  # handler calls that returned
    duplicates_skipped: int = 0  # redeliveries whose processed mark was found: acked, not handled
    handler_errors: int = 0  # handler calls that raised
    failed: int = 0  # messages given up after the retries (queue: nacked; pub/sub: dropped)
    state_saves: int = 0  # positions and marks written
    acks_lost: int = 0  # queue acks refused (the delivery expired): the mark makes its redelivery a duplicate
    position: int = -1  # log: the saved position (the next offset to handle); -1 before any

    def summary(self) -> dict[str, float]:
        return {name: float(value) for name, value in vars(self).items() if isinstance(value, int)}


class Consumer(PatternProcess):
    """At-least-once consumption with its state in key-value (see the module docstring)."""

    pattern_name = "consumer"

    def __init__(
        self,
        source: object,
        state: KeyValue,
        handler: Handler,
        config: ConsumerConfig | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        background: bool = True,
    ) -> None:
        config = ConsumerConfig() if config is None else config
        if not isinstance(config, ConsumerConfig):
            raise ConsumerConfigurationError(f"config must be a ConsumerConfig, not {type(config).__name__}")
        if not callable(handler):
            raise ConsumerConfigurationError("handler must be an async function taking a Message")
        validated_slots(
            "consumer", {"source": source, "state": state}, {"source": (Queue, Log, PubSub), "state": (KeyValue,)}
        )
        super().__init__(graceful_timeout=config.graceful_timeout)
        self.config = config
        self.source = source
        self.state_store = state
        self.handler = handler
        self._sleep = sleep
        self.source_kind = "queue" if isinstance(source, Queue) else "log" if isinstance(source, Log) else "pubsub"
        self.metrics = prometheus.tracked("consumer", ConsumerMetrics())
        self._position: int | None = None  # log: next offset to handle
        self._saved: int | None = None  # log: position last saved
        self._in_hand: str | None = None  # what the loop is handling, for a forced stop's report
        self._subscription: Subscription | None = None
        self._stuck = 0  # consecutive handler failures on one log record
        self._loop_task: asyncio.Task[None] | None = None
        self._mark_ttl = True
        self._since_save = 0  # log: records handled since the position was last saved
        self.background = background  # False: no loop of its own, the caller calls poll()

    # --- state ------------------------------------------------------------------------------

    @property
    def position(self) -> int | None:
        """Log: the next offset this consumer handles (``None`` before start)."""
        return self._position

    async def saved_position(self) -> int | None:
        """Log: the position saved in state (``None`` when none was saved)."""
        key = self.config.position_key()
        raw = await self.state_store.get(key)
        if raw is None:
            return None
        try:
            data = json.loads(bytes(raw))
            return int(data["next"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConsumerStateError(key, f"not a saved position ({type(exc).__name__}: {exc})") from None

    async def _save_position(self) -> None:
        if self._position is None or self._position == self._saved:
            return
        position = self._position
        await self.state_store.put(self.config.position_key(), json.dumps({"next": position}).encode())
        self._saved = position
        self._since_save = 0
        self.metrics.state_saves += 1
        self.metrics.position = position

    async def _is_processed(self, message: Message) -> bool:
        message_id = message.headers.get(MESSAGE_ID_HEADER)
        return message_id is not None and await self.state_store.get(self.config.mark_key(message_id)) is not None

    async def _mark_processed(self, message: Message) -> None:
        message_id = message.headers.get(MESSAGE_ID_HEADER)
        if message_id is None:
            return
        key = self.config.mark_key(message_id)
        if self._mark_ttl:
            try:
                await self.state_store.put(key, b"1", ttl=self.config.processed_ttl)
                self.metrics.state_saves += 1
                return
            except NotSupported:
                self._mark_ttl = False
        await self.state_store.put(key, b"1")
        self.metrics.state_saves += 1

    # --- handling ---------------------------------------------------------------------------

    async def _handle(self, message: Message) -> bool:
        """Call the handler with retries; whether it succeeded."""
        delay = self.config.retry_backoff
        for attempt in range(self.config.max_retries + 1):
            try:
                await self.handler(message)
            except Exception:
                self.metrics.handler_errors += 1
                log.warning("consumer %s: handler failed (attempt %d)", self.config.name, attempt + 1, exc_info=True)
                if attempt == self.config.max_retries:
                    return False
                await self._sleep(delay)
                delay = min(max(delay * 2, self.config.retry_backoff), self.config.retry_backoff_max)
            else:
                self.metrics.processed += 1
                return True
        return False

    async def poll(self) -> int:
        """One poll of the source: handle what came (waiting up to ``poll_wait``); how many
        messages were taken. The background loop calls it; call it yourself only on a consumer
        started with ``background=False``."""
        self.ensure_running("poll")
        if self.source_kind == "log":
            return await self._poll_log()
        if self.source_kind == "queue":
            return await self._poll_queue()
        return await self._poll_pubsub()

    async def _poll_log(self) -> int:
        source = self.source
        assert isinstance(source, Log)
        assert self._position is not None
        records: list[Record] = await source.read(
            self.config.source, self._position, limit=self.config.batch_size, wait=self.config.poll_wait
        )
        taken = 0
        for record in records:
            if record.offset < self._position:
                continue  # a read from a truncated start, or a duplicate of a record handled
            if record.offset > self._position:
                # dense offsets: a gap means records below it were deleted before we got there
                log.warning(
                    "consumer %s: log %s starts at %d past position %d (records deleted before consumed)",
                    self.config.name,
                    self.config.source,
                    record.offset,
                    self._position,
                )
            self.metrics.received += 1
            taken += 1
            self._in_hand = f"log record {record.offset}"
            if not await self._handle(record.message):
                self._stuck += 1
                self._in_hand = None
                break  # never skip: the next poll reads this record again
            self._stuck = 0
            self._position = record.offset + 1
            self._in_hand = None
            self._since_save += 1
            if self._since_save >= self.config.commit_every:
                await self._save_position()
            if self.stop_requested.is_set():
                break
        return taken

    async def _poll_queue(self) -> int:
        queue = self.source
        assert isinstance(queue, Queue)
        delivery: QueueDelivery | None = await queue.receive(
            self.config.source, wait=self.config.poll_wait, visibility_timeout=self.config.visibility_timeout
        )
        if delivery is None:
            return 0
        self.metrics.received += 1
        self._in_hand = f"queue delivery {delivery.delivery_id} (redelivered after its visibility timeout)"
        try:
            if await self._is_processed(delivery.message):
                self.metrics.duplicates_skipped += 1
            elif await self._handle(delivery.message):
                await self._mark_processed(delivery.message)
            else:
                self.metrics.failed += 1
                with contextlib.suppress(DeliveryNotFound):
                    await queue.nack(self.config.source, delivery)
                return 1
            try:
                await queue.ack(self.config.source, delivery)
            except DeliveryNotFound:
                self.metrics.acks_lost += 1
        finally:
            self._in_hand = None
        return 1

    async def _poll_pubsub(self) -> int:
        assert self._subscription is not None
        message = await self._subscription.receive(self.config.poll_wait)
        if message is None:
            return 0
        self.metrics.received += 1
        self._in_hand = "a topic message (pub/sub does not redeliver it)"
        try:
            if await self._is_processed(message):
                self.metrics.duplicates_skipped += 1
            elif await self._handle(message):
                await self._mark_processed(message)
            else:
                self.metrics.failed += 1
        finally:
            self._in_hand = None
        return 1

    async def _run(self) -> None:
        delay = self.config.retry_backoff
        while not self.stop_requested.is_set():
            try:
                await self.poll()
                delay = self.config.retry_backoff
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) or self.stop_requested.is_set():
                    raise
                log.warning("consumer %s: poll failed: retrying", self.config.name, exc_info=True)
                await self._sleep(delay)
                delay = min(max(delay * 2, self.config.retry_backoff), self.config.retry_backoff_max)
            if self._stuck and not self.stop_requested.is_set():
                await self._sleep(self.config.retry_backoff_max)
        await self._save_position()

    # --- lifecycle hooks --------------------------------------------------------------------

    async def _on_start(self) -> None:
        if self.source_kind == "log":
            source = self.source
            assert isinstance(source, Log)
            saved = await self.saved_position()
            if saved is None:
                saved = 0 if self.config.start == "earliest" else await source.end_offset(self.config.source)
            else:
                self._saved = saved
                self.metrics.position = saved
            self._position = saved
        elif self.source_kind == "pubsub":
            pubsub = self.source
            assert isinstance(pubsub, PubSub)
            self._subscription = await pubsub.subscribe(self.config.source)
        if self.background:
            self._loop_task = self.spawn(self._run(), name="consume")

    async def _check_health(self) -> Health:
        metrics = self.metrics.summary()
        if self.background and (self._loop_task is None or self._loop_task.done()):
            return Health(HealthStatus.UNHEALTHY, self.state, "the consume loop is not running", metrics)
        if self._stuck:
            return Health(
                HealthStatus.DEGRADED, self.state, f"the handler failed on one record {self._stuck} time(s)", metrics
            )
        return Health(HealthStatus.HEALTHY, self.state, "", metrics)

    async def _drain(self) -> None:
        if self._loop_task is not None:
            task = self._loop_task
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                error = task.exception()
                raise ConsumerError(f"the consume loop had died: {type(error).__name__}: {error}")
        else:
            await self._save_position()

    async def _force_stop(self) -> Sequence[str]:
        in_hand = self._in_hand
        if self._loop_task is not None and not self._loop_task.done():
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task])
        return [in_hand] if in_hand else []

    async def _on_stopped(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.close()


# --- registration --------------------------------------------------------------------------


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    if ctx.needs.delivery_guarantee == "at_least_once" and ctx.client_api in SPEC.client_apis:
        return [("needs.delivery_guarantee", "delivery_guarantee: at_least_once")]
    return []


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    return {"source": ctx.namespace, "name": ctx.namespace}


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, ConsumerConfig)
    if config.retry_backoff_max < config.retry_backoff:
        yield ("retry_backoff_max", f"expected at least retry_backoff ({config.retry_backoff}s)")


SPEC = PatternSpec(
    name="consumer",
    title="Consumer",
    priority=Priority.P1,
    complexity=Complexity.LOW,
    slots={
        "source": PatternSlot(MESSAGING, ("messaging",), "queue, topic or log consumed", messaging=True),
        "state": PatternSlot(
            Slot.needs("keyvalue"), ("state",), "key-value store keeping the position and the processed marks"
        ),
    },
    config=ConsumerConfig,
    client_apis=frozenset({"queue", "pubsub", "reader"}),
    summary="at-least-once consumption whose position and processed marks live in key-value: a restart resumes",
    suites=("consumer", "producer_consumer", "producer_compositions", "stateful_consumer"),
    # The application is handed messages last: whatever the claim check restores reaches it.
    before=frozenset({"claim-check", "wal"}),
    order_reason="the consumer hands messages to the application: inner patterns (the claim check) restore them first",
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
