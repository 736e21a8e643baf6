"""Claim check (RFC-009 §3, RFC-033, ADR-052, ADR-053): large payloads go to object storage,
the message carries only a reference to them.

The pattern is written against the thin interfaces only (:class:`ObjectStore` for payloads and
a :class:`Queue`, :class:`Log` or :class:`PubSub` for messages) and knows nothing about the
backends behind them. The reference travels in one message header (``config.field``), so the
pattern layers under any messaging interface and leaves the payload empty.

Producer: size check → compress → upload with TTL → send the reference.
Consumer: receive → download → decompress → verify SHA-256 of the original → process → ack →
release (delete the object when ``on_consume == "delete"``). The object is deleted only *after*
the message is acknowledged: a nacked or unacknowledged message must still find its object when
it is redelivered. When a delete fails, the object's TTL (or the bucket's lifecycle policy) is
the safety net (ADR-053's two-phase strategy), and ``claim_delete_failures`` counts it.

Payloads above ``streaming_threshold`` move in ``chunk_size`` pieces through ``put_stream`` /
``get_stream``; :meth:`ClaimCheck.outgoing_stream` and :meth:`ClaimCheck.incoming_stream` claim
and restore payloads that never sit in memory as a whole.

Usage::

    cc = ClaimCheck(objects, ClaimCheckConfig(threshold="1MB", bucket="claims", ttl=604800))
    await cc.ensure_bucket()
    queue = ClaimCheckQueue(raw_queue, cc)
    await queue.send("videos", Message(big_payload))
    delivery = await queue.receive("videos", wait=1.0)
    process(delivery.message.payload)          # the original payload, verified
    await queue.ack("videos", delivery)        # acks, then deletes the claimed object

- :mod:`.config`: the config model producers, consumers and namespace files share;
- :mod:`.reference`: the claim reference a message carries, and the claim check's errors;
- :mod:`.streaming`: incremental decompression and verification of a restored object;
- :mod:`.claim`: :class:`ClaimCheck` itself (claim, restore, release) and its metrics;
- :mod:`.adapters`: the queue, log and pub/sub wrappers;
- :mod:`.stage`: the claim check as a chain stage.

This module registers the pattern.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prism_testkit.config.units import parse_size
from prism_testkit.errors import PayloadTooLarge
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

from .adapters import ClaimCheckLog, ClaimCheckPubSub, ClaimCheckQueue, ClaimCheckSubscription
from .claim import ClaimCheck, ClaimCheckMetrics
from .config import DEFAULT_FIELD, ClaimCheckConfig
from .config import MiB as MiB
from .reference import ChecksumMismatch, ClaimCheckError, ClaimNotFound, ClaimReference, InvalidClaimReference
from .stage import ClaimCheckStage

__all__ = [
    "DEFAULT_FIELD",
    "ChecksumMismatch",
    "ClaimCheck",
    "ClaimCheckConfig",
    "ClaimCheckError",
    "ClaimCheckLog",
    "ClaimCheckMetrics",
    "ClaimCheckPubSub",
    "ClaimCheckQueue",
    "ClaimCheckStage",
    "ClaimCheckSubscription",
    "ClaimNotFound",
    "ClaimReference",
    "InvalidClaimReference",
    "PayloadTooLarge",
    "parse_size",
]


# --- registration --------------------------------------------------------------------------

_HEADER_ROOM = 64 * 1024  # the claim reference and other headers must still fit under max_payload
_DEFAULT_THRESHOLD = 1_000_000  # RFC-009: payloads > 1MB are claimed
_DEFAULT_TTL = 604800.0  # RFC-009: 7 days, matching the log's retention


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> Iterator[Wanted]:
    size = ctx.needs.max_message_size
    if size is None:
        return
    if ctx.messaging is None:
        if "messaging" not in ctx.roles:
            problem(
                "backends.messaging",
                "max_message_size needs a messaging backend to compare with: expected 'messaging: <backend>'",
            )
        return
    limit = ctx.messaging.properties.max_payload
    if limit is not None and size > limit:
        yield "needs.max_message_size", f"max_message_size {size} > {ctx.messaging.name} max_payload {limit}"


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    limit = ctx.messaging.properties.max_payload if ctx.messaging else None
    retention = ctx.needs.retention
    return {
        "threshold": _DEFAULT_THRESHOLD if limit is None else max(0, min(_DEFAULT_THRESHOLD, limit - _HEADER_ROOM)),
        "bucket": f"{ctx.namespace}-claims",
        "max_payload": ctx.needs.max_message_size,
        "ttl": retention if retention is not None and math.isfinite(retention) else _DEFAULT_TTL,
        "on_consume": "keep" if ctx.client_api == "pubsub" or ctx.needs.replay else "delete",
    }


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, ClaimCheckConfig)
    if ctx.client_api == "pubsub" and config.on_consume == "delete":
        yield (
            "on_consume",
            "claim check under pub/sub expects on_consume: keep (with a ttl), found 'delete': fan-out hands "
            "one reference to every subscriber, and the first to delete the object breaks the others",
        )
    messaging = ctx.slots.get("messaging")
    limit = messaging.properties.max_payload if messaging else None
    if messaging is not None and limit is not None and config.threshold > limit:
        yield (
            "threshold",
            f"expected a threshold at most the messaging backend's max_payload ({limit} bytes of "
            f"{messaging.name!r}), found {config.threshold}: payloads in between would be sent inline and rejected",
        )


SPEC = PatternSpec(
    name="claim-check",
    title="Claim Check",
    priority=Priority.P0,
    complexity=Complexity.LOW,
    slots={
        "messaging": PatternSlot(
            MESSAGING, ("messaging",), "queue, log or topic carrying the claim reference", messaging=True
        ),
        "objects": PatternSlot(Slot.needs("objects"), ("objects",), "object store holding claimed payloads"),
    },
    config=ClaimCheckConfig,
    client_apis=frozenset({"queue", "pubsub", "transact"}),
    summary="large payloads go to object storage; the message carries a reference in a named header",
    suites=("claim_check", "stateful_claim_check"),
    # The payload is claimed before anything stores the message, so stores hold references.
    before=frozenset({"outbox", "wal", "event-sourcing"}),
    order_reason="the payload must be claimed before a store keeps the message, so the store holds only the reference",
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
