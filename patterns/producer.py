"""Producer (the seeds' producer pattern, issue #40): batched, retried, deduplicated publishing to
a queue, a topic or a log, with metrics and a health check, running under the pattern lifecycle.

Slots: ``sink`` (a :class:`~prism_testkit.interfaces.Queue`, :class:`~prism_testkit.interfaces.PubSub`
or :class:`~prism_testkit.interfaces.Log`; or a :class:`BatchSink` such as :class:`OutboxSink`,
which writes each batch in one outbox transaction) and an optional ``state``
(:class:`~prism_testkit.interfaces.KeyValue`) holding the deduplication marks::

    producer = Producer(driver.queue(), ProducerConfig(destination="orders", batch_size=50,
                        batch_interval=0.05, deduplication=True), state=driver.keyvalue())
    async with producer:                                  # start() ... stop()
        outcome = await producer.publish(Message(b"order 1"))   # waits for its batch
        handle = await producer.send(Message(b"order 2"))       # returns once queued
        await producer.flush()

Guarantees and their limits:

* **Batching**: messages are published in batches of ``batch_size``; a batch that is not full is
  flushed ``batch_interval`` seconds after its first message came (so a lone message waits at
  most that long), on :meth:`Producer.flush`, and on stop. One batch publishes at a time, in the
  order messages were handed over; a batch of a :class:`BatchSink` is one call.
* **Retries**: a send that raises is retried up to ``max_retries`` times with exponential
  backoff (``retry_backoff`` doubling up to ``retry_backoff_max``); only the failed message is
  sent again, never the ones of its batch that the sink already accepted. Every attempt carries
  the same ``prism-message-id`` header (a queue with ``queue.dedup`` drops a resend whose first
  send did arrive) and ``producer-attempt`` = 1, 2, 3..., so each retry is visible downstream.
  A send whose outcome was unknown (the connection dropped after the broker stored it) and was
  retried may therefore arrive twice, with one id: at-least-once. Errors that no retry can fix
  (``PayloadTooLarge``, ``NotSupported``, ``ValueError``, ``TypeError``) fail at once. A message
  that fails for good fails with :class:`PublishFailed`, and so does every later message of its
  batch, unsent: nothing is published past a failure, so order holds.
* **Deduplication** (``deduplication=True``, needs ``state``): a message whose *content*
  (destination, key, payload and headers) was published less than ``dedup_window`` seconds ago
  (default 5 minutes) is not published again; :meth:`Producer.publish` reports it
  ``deduplicated``. The marks live in the state slot, so producers sharing it (a restarted one
  included) deduplicate each other; a mark is written *after* the sink accepted the message, so
  a message that failed is never suppressed. Limits: a producer killed between the sink's
  acceptance and the mark's write publishes the content again (a duplicate, never a loss); marks
  lost from the state (or unreadable: the producer publishes and counts ``state_errors``) mean
  "not seen", so that content is published again; the window is judged by the producer's clock
  on the time in the mark, and the mark carries the window as TTL where the state supports one.
  Identical content handed over concurrently is published once.
* **Metrics** (:class:`ProducerMetrics`, ``prism_producer_*``): published, failed, deduplicated,
  bytes published, batches published, retries, state errors, pending, publish latency (last,
  max and sum over published messages, from hand-over to the sink's acceptance).
* **Lifecycle** (:mod:`~prism_testkit.patterns.lifecycle`): :meth:`Producer.publish` before
  ``start()`` raises ``NotStarted``, after ``stop()`` began ``PatternStopped``. ``stop(within=)``
  flushes every queued message (no waiting for the interval); what is not published when the
  bound runs out fails with :class:`PublishAbandoned` and is listed in the report's ``left``.

Compositions: a producer above the claim check (give it a
:class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue` as sink: large payloads go to the
object store, the claim travels), and a producer whose sink is an outbox (:class:`OutboxSink`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

import prism_testkit.simulation.clock as clocks
from prism_testkit.config.units import Duration
from prism_testkit.errors import ConfigurationError, NotSupported, PayloadTooLarge, PrismError
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, Log, Message, PubSub, Queue
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

from .lifecycle import (
    DEFAULT_GRACEFUL_TIMEOUT,
    Health,
    HealthStatus,
    PatternProcess,
    validated_slots,
)

__all__ = [
    "HEADER_ATTEMPT",
    "BatchSink",
    "OutboxSink",
    "PublishAbandoned",
    "PublishFailed",
    "PublishOutcome",
    "PublishStatus",
    "Producer",
    "ProducerConfig",
    "ProducerConfigurationError",
    "ProducerError",
    "ProducerMetrics",
    "content_digest",
]

log = logging.getLogger(__name__)

HEADER_ATTEMPT = "producer-attempt"
# Errors no retry can fix: the message fails at once.
_PERMANENT: tuple[type[BaseException], ...] = (PayloadTooLarge, NotSupported, ValueError, TypeError)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# --- errors --------------------------------------------------------------------------------


class ProducerError(PrismError):
    """Base class of the producer's errors."""


class ProducerConfigurationError(ProducerError, ConfigurationError):
    pass


class PublishFailed(ProducerError):
    """The message was not published: its retries ran out, the error cannot be retried, or an
    earlier message of its batch failed (nothing is published past a failure)."""

    def __init__(self, message_id: str, attempts: int, detail: str) -> None:
        super().__init__(f"message {message_id} not published after {attempts} attempt(s): {detail}")
        self.message_id = message_id
        self.attempts = attempts


class PublishAbandoned(ProducerError):
    """The producer was stopped (its drain ran out of time) before the message was published.
    ``maybe_published``: its send was under way, so it may have arrived."""

    def __init__(self, message_id: str, maybe_published: bool) -> None:
        what = "its send was under way: it may have been published" if maybe_published else "never sent"
        super().__init__(f"message {message_id} abandoned by the producer's stop ({what})")
        self.message_id = message_id
        self.maybe_published = maybe_published


# --- config --------------------------------------------------------------------------------


class ProducerConfig(BaseModel):
    """How a producer publishes. Durations accept seconds or strings like ``"100ms"``, ``"5m"``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    destination: str = Field(default="events", min_length=1, description="queue, topic or log published to")
    batch_size: int = Field(default=1, ge=1, description="messages per batch (1: publish each at once)")
    batch_interval: Duration = Field(
        default=0.1, ge=0, description="seconds a batch that is not full waits for more after its first message"
    )
    max_retries: int = Field(default=3, ge=0, description="retries of a failed send before the message fails")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first retry (then doubled)")
    retry_backoff_max: Duration = Field(default=2.0, ge=0, description="longest wait between retries")
    deduplication: bool = Field(default=False, description="drop content published within dedup_window (needs state)")
    dedup_window: Duration = Field(default=300.0, gt=0, description="seconds a published content stays a duplicate")
    state_prefix: str = Field(default="producer-dedup/", description="prefix of the dedup marks' keys in state")
    graceful_timeout: Duration = Field(
        default=DEFAULT_GRACEFUL_TIMEOUT, ge=0, description="stop(): seconds to flush before the forced stop"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("retry_backoff_max must be at least retry_backoff")
        return self


# --- metrics -------------------------------------------------------------------------------


@dataclass
class ProducerMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"pending"})

    published: int = 0  # messages the sink accepted (each once, however many attempts)
    failed: int = 0  # messages that failed for good (PublishFailed) or were abandoned by a stop
    deduplicated: int = 0  # messages not published: their content was published within the window
    bytes_published: int = 0  # payload bytes of the published messages
    batches_published: int = 0  # batches of which at least one message was published
    retries: int = 0  # sends attempted again after an error
    state_errors: int = 0  # dedup state unreadable or unwritable (the message was published anyway)
    pending: int = 0  # handed over, not yet published nor failed
    publish_latency_last_seconds: float = 0.0
    publish_latency_max_seconds: float = 0.0
    publish_latency_sum_seconds: float = 0.0  # divide by published for the mean

    def summary(self) -> dict[str, float]:
        return {
            name: float(value)
            for name, value in vars(self).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }


# --- outcomes ------------------------------------------------------------------------------


class PublishStatus(StrEnum):
    PUBLISHED = "published"
    DEDUPLICATED = "deduplicated"


@dataclass(frozen=True)
class PublishOutcome:
    status: PublishStatus
    message_id: str  # for a duplicate: the id of the publish it duplicates, when known
    destination: str
    attempts: int = 0  # sends it took (0 for a duplicate)

    @property
    def published(self) -> bool:
        return self.status is PublishStatus.PUBLISHED


def content_digest(destination: str, message: Message) -> str:
    """What deduplication compares: destination, key, payload and headers (the producer's own
    headers left out), as a SHA-256 hex digest."""
    headers = sorted((k, v) for k, v in message.headers.items() if k not in (MESSAGE_ID_HEADER, HEADER_ATTEMPT))
    h = hashlib.sha256()
    h.update(json.dumps([destination, message.key, headers]).encode())
    h.update(b"\0")
    h.update(bytes(message.payload))
    return h.hexdigest()


# --- sinks ---------------------------------------------------------------------------------


@runtime_checkable
class BatchSink(Protocol):
    """A sink that takes a whole batch in one call, all or nothing (an outbox transaction)."""

    async def publish_batch(self, destination: str, messages: Sequence[Message]) -> None: ...


class OutboxSink:
    """A producer whose sink is an outbox: each batch becomes one outbox transaction (its events
    commit together or not at all), and the outbox's relay publishes them on. ``event_type``
    names the events; the destination is their aggregate id."""

    def __init__(self, outbox: object, event_type: str = "Produced") -> None:
        from .outbox import Outbox

        if not isinstance(outbox, Outbox):
            raise ProducerConfigurationError(f"OutboxSink needs an Outbox, not {type(outbox).__name__}")
        self.outbox = outbox
        self.event_type = event_type

    async def publish_batch(self, destination: str, messages: Sequence[Message]) -> None:
        async with self.outbox.transaction() as tx:
            for message in messages:
                await tx.publish(destination, self.event_type, bytes(message.payload), dict(message.headers))


class _Send(Protocol):
    async def __call__(self, destination: str, messages: Sequence[Message]) -> None: ...


def _sender(sink: object) -> tuple[str, _Send]:
    """How to publish through ``sink``: its kind and a function sending a batch (one message for
    every kind but a batch sink)."""
    if isinstance(sink, BatchSink):
        return "batch", sink.publish_batch
    if isinstance(sink, Queue):
        queue = sink

        async def send_queue(destination: str, messages: Sequence[Message]) -> None:
            for message in messages:
                await queue.send(destination, message)

        return "queue", send_queue
    if isinstance(sink, Log):
        log_ = sink

        async def append(destination: str, messages: Sequence[Message]) -> None:
            for message in messages:
                await log_.append(destination, message)

        return "log", append
    pubsub = sink
    assert isinstance(pubsub, PubSub)

    async def publish(destination: str, messages: Sequence[Message]) -> None:
        for message in messages:
            await pubsub.publish(destination, message)

    return "pubsub", publish


# --- the producer --------------------------------------------------------------------------


@dataclass(eq=False)
class _Item:
    message: Message  # with its id header
    message_id: str
    destination: str
    digest: str | None
    future: asyncio.Future[PublishOutcome]
    handed_at: float
    attempts: int = 0
    sending: bool = False


@dataclass
class _Mark:
    at: float
    message_id: str

    def encode(self) -> bytes:
        return json.dumps({"at": self.at, "id": self.message_id}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Mark | None:
        try:
            data = json.loads(raw)
            return cls(float(data["at"]), str(data["id"]))
        except (ValueError, KeyError, TypeError):
            return None


class Producer(PatternProcess):
    """Batched, retried, deduplicated publishing (see the module docstring)."""

    pattern_name = "producer"

    def __init__(
        self,
        sink: object,
        config: ProducerConfig | None = None,
        *,
        state: KeyValue | None = None,
        clock: Clock = clocks.wall,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        config = ProducerConfig() if config is None else config
        if not isinstance(config, ProducerConfig):
            raise ProducerConfigurationError(f"config must be a ProducerConfig, not {type(config).__name__}")
        slots = validated_slots(
            "producer",
            {"sink": sink, "state": state},
            {"sink": (BatchSink, Queue, Log, PubSub)},
            {"state": (KeyValue,)},
        )
        if config.deduplication and "state" not in slots:
            raise ProducerConfigurationError(
                "producer: deduplication keeps its marks in the 'state' slot: give a key-value store as state"
            )
        super().__init__(graceful_timeout=config.graceful_timeout)
        self.config = config
        self.sink = sink
        self.state_store = state
        self.clock = clock
        self._sleep = sleep
        self.sink_kind, self._send = _sender(sink)
        self.metrics = prometheus.tracked("producer", ProducerMetrics())
        self._buffer: list[_Item] = []
        self._in_flight: list[_Item] = []
        self._by_digest: dict[str, _Item] = {}  # content handed over and not yet settled
        self._changed = asyncio.Event()
        self._flush_requests = 0
        self._state_ttl = True  # cleared when the state refuses a TTL (keyvalue.ttl undeclared)
        self._consecutive_failures = 0
        self._flusher: asyncio.Task[None] | None = None

    # --- publishing ---------------------------------------------------------------------------

    async def send(self, message: Message | bytes, *, destination: str | None = None) -> asyncio.Future[PublishOutcome]:
        """Hand ``message`` over and return once it is queued (or found a duplicate): a future
        of its :class:`PublishOutcome`, failing with :class:`PublishFailed` or
        :class:`PublishAbandoned`."""
        self.ensure_running("publish")
        if isinstance(message, bytes | bytearray | memoryview):
            message = Message(bytes(message))
        if not isinstance(message, Message):
            raise TypeError(f"publish takes a Message or bytes, not {type(message).__name__}")
        dest = destination or self.config.destination
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PublishOutcome] = loop.create_future()
        digest: str | None = None
        if self.config.deduplication:
            digest = content_digest(dest, message)
            twin = self._by_digest.get(digest)
            if twin is not None:  # the same content is on its way: published once
                self.metrics.deduplicated += 1
                future.set_result(PublishOutcome(PublishStatus.DEDUPLICATED, twin.message_id, dest))
                return future
        message_id = message.headers.get(MESSAGE_ID_HEADER) or str(clocks.fresh_uuid())
        item = _Item(
            message.with_headers(**{MESSAGE_ID_HEADER: message_id, HEADER_ATTEMPT: None}),
            message_id,
            dest,
            digest,
            future,
            loop.time(),
        )
        if digest is not None:
            self._by_digest[digest] = item  # before any await: a concurrent twin finds it
            try:
                mark = await self._read_mark(digest)
            except BaseException:
                self._by_digest.pop(digest, None)
                raise
            if mark is not None:
                self._by_digest.pop(digest, None)
                self.metrics.deduplicated += 1
                future.set_result(PublishOutcome(PublishStatus.DEDUPLICATED, mark.message_id, dest))
                return future
            if not self.running:  # stopped while the mark was read
                self._by_digest.pop(digest, None)
                self.ensure_running("publish")
        self._buffer.append(item)
        self.metrics.pending += 1
        self._changed.set()
        return future

    async def publish(self, message: Message | bytes, *, destination: str | None = None) -> PublishOutcome:
        """Hand ``message`` over and wait until it is published (or found a duplicate)."""
        future = await self.send(message, destination=destination)
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Publish everything handed over so far without waiting for the interval; returns once
        each of those messages is published or failed (failures are not raised here)."""
        self.ensure_running("flush")
        waiting = [item.future for item in (*self._in_flight, *self._buffer)]
        if not waiting:
            return
        self._flush_requests += 1
        self._changed.set()
        try:
            await asyncio.wait(waiting)
        finally:
            self._flush_requests -= 1

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._in_flight)

    # --- dedup state --------------------------------------------------------------------------

    def _mark_key(self, digest: str) -> str:
        return f"{self.config.state_prefix}{digest}"

    async def _read_mark(self, digest: str) -> _Mark | None:
        """The mark of ``digest`` if it is still inside the window."""
        assert self.state_store is not None
        try:
            raw = await self.state_store.get(self._mark_key(digest))
        except Exception:
            self.metrics.state_errors += 1
            log.warning("producer: dedup state unreadable: publishing without the check", exc_info=True)
            return None
        if raw is None:
            return None
        mark = _Mark.decode(bytes(raw))
        if mark is None:
            return None
        age = self.clock() - mark.at
        return mark if age < self.config.dedup_window else None

    async def _write_mark(self, item: _Item) -> None:
        assert self.state_store is not None
        assert item.digest is not None
        value = _Mark(self.clock(), item.message_id).encode()
        key = self._mark_key(item.digest)
        try:
            if self._state_ttl:
                try:
                    await self.state_store.put(key, value, ttl=self.config.dedup_window)
                    return
                except NotSupported:
                    self._state_ttl = False
            await self.state_store.put(key, value)
        except Exception:
            self.metrics.state_errors += 1
            log.warning("producer: dedup mark of %s not written: it may be published again", item.message_id)

    # --- the flusher --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        size, interval = self.config.batch_size, self.config.batch_interval
        while True:
            while not self._buffer:
                if self.stop_requested.is_set():
                    return
                self._changed.clear()
                await self._changed.wait()
            while len(self._buffer) < size and not self.stop_requested.is_set() and not self._flush_requests:
                remaining = self._batch_due(interval) - loop.time()
                if remaining <= 0:
                    break
                self._changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    break
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            self._in_flight = batch
            try:
                await self._publish_batch(batch)
            finally:
                self._in_flight = []

    def _batch_due(self, interval: float) -> float:
        """When the batch in the buffer goes out unless it fills first: ``interval`` after its
        first message, so a steady trickle of younger messages cannot hold it back."""
        return self._buffer[0].handed_at + interval

    async def _publish_batch(self, batch: list[_Item]) -> None:
        published = 0
        if self.sink_kind == "batch":
            try:
                await self._attempts(batch)
            except PublishFailed as exc:
                for item in batch:
                    self._fail(item, PublishFailed(item.message_id, item.attempts, str(exc)))
            else:
                for item in batch:
                    await self._published(item)
                published = len(batch)
        else:
            for i, item in enumerate(batch):
                try:
                    await self._attempts([item])
                except PublishFailed as exc:
                    self._fail(item, exc)
                    for later in batch[i + 1 :]:
                        self._fail(
                            later,
                            PublishFailed(later.message_id, 0, f"not sent: message {item.message_id} before it failed"),
                        )
                    break
                await self._published(item)
                published += 1
        if published:
            self.metrics.batches_published += 1

    async def _attempts(self, items: list[_Item]) -> None:
        """Send ``items`` (one message, or a batch sink's whole batch), retrying with backoff."""
        delay = self.config.retry_backoff
        while True:
            attempt = items[0].attempts + 1
            for item in items:
                item.attempts, item.sending = attempt, True
            messages = [item.message.with_headers(**{HEADER_ATTEMPT: str(attempt)}) for item in items]
            try:
                await self._send(items[0].destination, messages)
                return
            except _PERMANENT as exc:
                raise PublishFailed(items[0].message_id, attempt, f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                if attempt > self.config.max_retries:
                    raise PublishFailed(items[0].message_id, attempt, f"{type(exc).__name__}: {exc}") from exc
                self.metrics.retries += 1
                log.info("producer: send of %s failed (%s): retry %d", items[0].message_id, exc, attempt)
            finally:
                for item in items:
                    item.sending = False
            await self._sleep(delay)
            delay = min(max(delay * 2, self.config.retry_backoff), self.config.retry_backoff_max)

    async def _published(self, item: _Item) -> None:
        if item.digest is not None:
            await self._write_mark(item)
            self._by_digest.pop(item.digest, None)
        latency = asyncio.get_running_loop().time() - item.handed_at
        m = self.metrics
        m.published += 1
        m.pending -= 1
        m.bytes_published += len(item.message.payload)
        m.publish_latency_last_seconds = latency
        m.publish_latency_max_seconds = max(m.publish_latency_max_seconds, latency)
        m.publish_latency_sum_seconds += latency
        self._consecutive_failures = 0
        if not item.future.done():
            item.future.set_result(
                PublishOutcome(PublishStatus.PUBLISHED, item.message_id, item.destination, item.attempts)
            )

    def _fail(self, item: _Item, error: ProducerError) -> None:
        if item.digest is not None:
            self._by_digest.pop(item.digest, None)
        self.metrics.failed += 1
        self.metrics.pending -= 1
        self._consecutive_failures += 1
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()  # retrieved: a sender that never awaits it gets no warning

    # --- lifecycle hooks ----------------------------------------------------------------------

    async def _on_start(self) -> None:
        self._flusher = self.spawn(self._flush_loop(), name="flush")

    async def _check_health(self) -> Health:
        metrics = self.metrics.summary()
        if self._flusher is None or self._flusher.done():
            return Health(HealthStatus.UNHEALTHY, self.state, "the flush loop is not running", metrics)
        if self._consecutive_failures:
            return Health(
                HealthStatus.DEGRADED,
                self.state,
                f"the last {self._consecutive_failures} message(s) failed to publish",
                metrics,
            )
        return Health(HealthStatus.HEALTHY, self.state, f"{self.pending} pending", metrics)

    async def _drain(self) -> None:
        self._changed.set()  # the flusher sees the stop: every queued message goes out now
        if self._flusher is not None:
            await asyncio.wait([self._flusher])
        left = sum(1 for _ in self._left())
        if left:
            raise ProducerError(f"the flush loop ended with {left} message(s) unpublished")

    async def _force_stop(self) -> Sequence[str]:
        # What is left, seen before the flusher is cancelled (cancelling it unwinds its batch).
        left_items = [(item, item.sending) for item in self._left()]
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.wait([self._flusher])
        left: list[str] = []
        for item, maybe in left_items:
            left.append(f"{item.message_id}{' (send under way: may have been published)' if maybe else ''}")
            self._fail(item, PublishAbandoned(item.message_id, maybe))
        self._buffer, self._in_flight = [], []
        return left

    def _left(self) -> Iterator[_Item]:
        for item in (*self._in_flight, *self._buffer):
            if not item.future.done():
                yield item


# --- registration --------------------------------------------------------------------------


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    window = getattr(ctx.needs, "deduplication", None)
    if window is None:
        return []
    return [("needs.deduplication", f"deduplication: {window:g}s window")]


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    window = getattr(ctx.needs, "deduplication", None)
    found: dict[str, object] = {"destination": ctx.namespace}
    if window is not None:
        found.update(deduplication=True, dedup_window=window)
    return found


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, ProducerConfig)
    if config.deduplication and "state" not in ctx.slots:
        yield (
            "deduplication",
            "deduplication keeps its marks in the 'state' slot: expected a key-value backend in slot 'state' "
            "(with needs: 'state: <backend>' in backends), found none",
        )


SPEC = PatternSpec(
    name="producer",
    title="Producer",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "sink": PatternSlot(MESSAGING, ("messaging",), "queue, topic or log the producer publishes to", messaging=True),
        "state": PatternSlot(
            Slot.needs("keyvalue"),
            ("state",),
            "key-value store holding the deduplication marks (needed only with deduplication)",
            required=False,
        ),
    },
    config=ProducerConfig,
    client_apis=frozenset({"queue", "pubsub"}),
    summary="batched publishing (by size and interval) with retries, content deduplication in a window, metrics",
    suites=("producer", "producer_consumer", "producer_compositions", "stateful_producer"),
    # The application hands messages to the producer first: it batches and deduplicates what the
    # claim check then claims and the outbox then stores.
    before=frozenset({"claim-check", "outbox", "wal"}),
    order_reason="the producer is where the application hands messages over: it batches and deduplicates first",
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
