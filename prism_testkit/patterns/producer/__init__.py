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
  order messages were handed over; a batch of a :class:`BatchSink` is one call. A batch goes to
  one destination: a message to another one (``publish(..., destination=)``) begins the next.
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
* **Lifecycle** (:mod:`~prism_testkit.pattern_sdk.lifecycle`): :meth:`Producer.publish` before
  ``start()`` raises ``NotStarted``, after ``stop()`` began ``PatternStopped``. ``stop(within=)``
  flushes every queued message (no waiting for the interval); what is not published when the
  bound runs out fails with :class:`PublishAbandoned` and is listed in the report's ``left``.

Compositions: a producer above the claim check (give it a
:class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue` as sink: large payloads go to the
object store, the claim travels), and a producer whose sink is an outbox (:class:`OutboxSink`).

- :mod:`.errors`: the producer's errors;
- :mod:`.config`: the config model code and namespace files share;
- :mod:`.metrics`: its counters and gauges;
- :mod:`.outcomes`: what a publish returns, and the content digest deduplication compares;
- :mod:`.sinks`: where it publishes (queue, log, pub/sub, or a batch sink such as an outbox);
- :mod:`.process`: the :class:`Producer` itself.

This module registers the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prism_testkit.interfaces import MESSAGE_ID_HEADER as MESSAGE_ID_HEADER
from prism_testkit.pattern_sdk.lifecycle import DEFAULT_GRACEFUL_TIMEOUT as DEFAULT_GRACEFUL_TIMEOUT
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

from .config import ProducerConfig
from .errors import ProducerConfigurationError, ProducerError, PublishAbandoned, PublishFailed
from .metrics import ProducerMetrics
from .outcomes import HEADER_ATTEMPT, PublishOutcome, PublishStatus, content_digest
from .process import Clock as Clock
from .process import Producer
from .process import Sleep as Sleep
from .sinks import BatchSink, OutboxSink

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
