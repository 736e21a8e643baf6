"""The :class:`Consumer` process: polling a queue, log or topic, handler retries, processed marks,
the saved position, health and the drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from prism_testkit.errors import DeliveryNotFound, NotSupported
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
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import (
    Health,
    HealthStatus,
    PatternProcess,
    validated_slots,
)

from .config import ConsumerConfig
from .errors import ConsumerConfigurationError, ConsumerError, ConsumerStateError
from .metrics import ConsumerMetrics

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


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
