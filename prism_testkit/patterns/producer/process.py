"""The :class:`Producer` process: batching, retries, deduplication marks, health and the drain on stop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import NotSupported, PayloadTooLarge
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, Log, Message, PubSub, Queue
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import (
    Health,
    HealthStatus,
    PatternProcess,
    validated_slots,
)

from .config import ProducerConfig
from .errors import ProducerConfigurationError, ProducerError, PublishAbandoned, PublishFailed
from .metrics import ProducerMetrics
from .outcomes import HEADER_ATTEMPT, PublishOutcome, PublishStatus, content_digest
from .sinks import BatchSink, _sender

log = logging.getLogger(__name__)

# Errors no retry can fix: the message fails at once.
_PERMANENT: tuple[type[BaseException], ...] = (PayloadTooLarge, NotSupported, ValueError, TypeError)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
            batch = self._next_batch(size)
            self._in_flight = batch
            try:
                await self._publish_batch(batch)
            finally:
                self._in_flight = []

    def _next_batch(self, size: int) -> list[_Item]:
        """The oldest messages, at most ``size``, up to the first to another destination: a
        batch goes to one destination (a batch sink takes one per call, as one transaction)."""
        destination = self._buffer[0].destination
        count = 0
        while count < min(size, len(self._buffer)) and self._buffer[count].destination == destination:
            count += 1
        batch, self._buffer = self._buffer[:count], self._buffer[count:]
        return batch

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
