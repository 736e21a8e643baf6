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

- :mod:`.errors`: the consumer's errors;
- :mod:`.config`: the config model code and namespace files share, and the state's keys;
- :mod:`.metrics`: its counters and position gauge;
- :mod:`.process`: the :class:`Consumer` itself.

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

from .config import ConsumerConfig
from .errors import ConsumerConfigurationError, ConsumerError, ConsumerStateError
from .metrics import ConsumerMetrics
from .process import Consumer, Handler
from .process import Sleep as Sleep

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerConfigurationError",
    "ConsumerError",
    "ConsumerMetrics",
    "ConsumerStateError",
    "Handler",
]


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
