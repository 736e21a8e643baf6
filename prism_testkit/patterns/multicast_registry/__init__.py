"""Multicast registry (MEMO-006's pattern-slot example, RFC-025's lifecycle example): a registry
of identities with metadata and a TTL, and one message multicast to every identity a filter on
that metadata selects, with a delivery outcome per identity.

Two slots, both thin interfaces, no backend known:

* ``registry``: a :class:`KeyValue` with scan (``keyvalue`` + ``keyvalue.scan``). One key per
  identity, ``<key_prefix><identity>``, holding a JSON record (metadata, registration and update
  times, expiry). With ``backend_ttl`` (the default) a record is also written with the backend's
  TTL (its own expiry plus ``eviction_grace``) so the backend evicts it; a backend without
  ``keyvalue.ttl`` answers :class:`~prism_testkit.errors.NotSupported`, and the registry then
  writes without one (counted in ``backend_ttl_unsupported``).
* ``messaging``: a :class:`Queue` or a :class:`PubSub`. Identity ``x`` is reached at
  ``<destination_prefix>x`` (a queue it consumes, or a topic it subscribes to).

Guarantees:

* **Expiry is the registry's own.** An identity is live while ``clock() < expires_at``, whatever
  the backend has evicted yet: an expired identity is never returned by :meth:`get` or
  :meth:`enumerate`, and never sent to, even when its record is still stored.
* **A multicast's membership is decided at one instant**, the moment it began (``started_at``,
  on the registry's clock): it goes to every identity whose registration completed before it
  began and that was live at that instant and matched the filter then, once each; never to one
  whose TTL had run out or that was deregistered before it began. Registrations, updates and
  deregistrations that race the multicast's scan may or may not be included, never twice.
* **One outcome per recipient**: :class:`DeliveryOutcome` ``delivered`` (the messaging backend
  accepted the send) or ``failed`` with the reason (the last error, after ``attempts``). A failure
  is ``definite`` when nothing can have been sent (for example ``PayloadTooLarge``, or a stop
  before the send began); a send cut short by an error or a forced stop may still have arrived.
  Each copy carries the headers ``prism-multicast-id``, ``prism-multicast-identity`` and
  ``prism-message-id`` (``<multicast id>:<identity>``), so a queue with ``queue.dedup`` keeps one
  copy of a retried send.
* **Bad input raises a typed error and changes nothing**: :class:`InvalidIdentity`,
  :class:`InvalidMetadata`, :class:`InvalidFilter`, :class:`IdentityNotFound` (update of an
  identity that is not registered or has expired).

Over pub/sub, ``delivered`` means published: an identity that is not subscribed at that moment
does not get the message (pub/sub keeps nothing). Use a queue for identities that may be away.

Filters are mappings from a metadata field to a value (equality) or to operators, all of which
must hold: ``{"region": "eu", "load": {"lt": 5}, "role": {"in": ["a", "b"]}}``. Operators:
``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``in``, ``nin``, ``exists``, ``prefix``. Values
compare within a kind only (a number with a number, a string with a string, a boolean with a
boolean; ``True`` is not ``1``); ``ne`` and ``nin`` also match an identity without the field;
ordering operators and ``prefix`` never match a field of another kind.

Lifecycle (``prism_testkit.pattern_sdk.lifecycle``): ``await registry.start()`` (or ``async with``),
``health()``, ``stop(within=)``: a stop refuses new operations at once, lets the multicasts in
flight finish for at most ``within`` seconds, then cancels their remaining sends (outcome
``failed``, reason ``stopped``) and reports each unfinished multicast in ``StopReport.left``.

Limits: the membership read is a scan of the registry prefix plus one read per identity, so a
multicast costs O(identities registered). ``update`` reads then writes: an update racing a
deregistration of the same identity may re-create it (last writer wins). Expiry compares
timestamps written by the registering process's clock with the multicasting process's clock:
clocks that disagree by more than a TTL's precision shift expiry by that much.

Usage::

    registry = MulticastRegistry(kv, queue, MulticastRegistryConfig(key_prefix="rooms/", destination_prefix="inbox-"))
    async with registry:
        await registry.register("alice", {"room": "lobby", "level": 3}, ttl=30)
        result = await registry.multicast(Message(b"hello"), {"room": "lobby", "level": {"ge": 2}})
        result.delivered    # ['alice']

- :mod:`.errors`: the registry's errors;
- :mod:`.config`: the config model code and namespace files share;
- :mod:`.validation`: what an identity and its metadata may be;
- :mod:`.values`: a registration, a delivery's outcome, a multicast's result;
- :mod:`.metrics`: its counters and gauges;
- :mod:`.filters`: filters over metadata and their operators;
- :mod:`.records`: the stored record of a registration;
- :mod:`.registry`: the :class:`MulticastRegistry` itself.

This module registers the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prism_testkit.interfaces import MESSAGE_ID_HEADER as MESSAGE_ID_HEADER
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    CheckContext,
    Complexity,
    ConfigProblem,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)

from .config import MulticastRegistryConfig
from .errors import IdentityNotFound, InvalidFilter, InvalidIdentity, InvalidMetadata, MulticastRegistryError
from .filters import OPERATORS, Filter
from .filters import Condition as Condition
from .metrics import MulticastRegistryMetrics
from .registry import IDENTITY_HEADER, MULTICAST_ID_HEADER, MulticastRegistry
from .registry import Clock as Clock
from .validation import Scalar as Scalar
from .validation import check_identity as check_identity
from .validation import check_metadata as check_metadata
from .values import DeliveryOutcome, MulticastResult, Registration

__all__ = [
    "IDENTITY_HEADER",
    "MULTICAST_ID_HEADER",
    "OPERATORS",
    "DeliveryOutcome",
    "Filter",
    "IdentityNotFound",
    "InvalidFilter",
    "InvalidIdentity",
    "InvalidMetadata",
    "MulticastRegistry",
    "MulticastRegistryConfig",
    "MulticastRegistryError",
    "MulticastRegistryMetrics",
    "MulticastResult",
    "Registration",
]


# --- registration --------------------------------------------------------------------------


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> Iterator[Wanted]:
    if "registry" in ctx.roles:
        if "messaging" not in ctx.roles:
            problem(
                "backends.messaging",
                "a registry multicasts through a messaging backend: expected 'messaging: <backend>'",
            )
            return
        yield "backends.registry", "a registry backend is named: identities to multicast to"


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    return {"key_prefix": f"{ctx.namespace}/registry/", "destination_prefix": f"{ctx.namespace}-identity-"}


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, MulticastRegistryConfig)
    if config.max_ttl is not None and config.default_ttl is not None and config.default_ttl > config.max_ttl:
        yield "default_ttl", f"expected a default_ttl at most max_ttl ({config.max_ttl} s), found {config.default_ttl}"
    if config.key_prefix == "":
        yield "key_prefix", "expected a non-empty key_prefix: the registry scans it, and '' would read every key"


SPEC = PatternSpec(
    name="multicast-registry",
    title="Multicast Registry",
    priority=Priority.P2,
    complexity=Complexity.MEDIUM,
    slots={
        "registry": PatternSlot(
            Slot.needs("keyvalue", "keyvalue.scan"),
            ("registry",),
            "identities with metadata and a TTL (key-value basic + scan, MEMO-006)",
        ),
        "messaging": PatternSlot(
            Slot.one_of("queue", "pubsub"),
            ("messaging",),
            "queue or topic per identity that a multicast sends to",
            messaging=True,
        ),
    },
    config=MulticastRegistryConfig,
    client_apis=frozenset({"pubsub", "queue"}),
    summary="identities register with metadata and a TTL; one message goes to every live identity a filter selects",
    suites=("multicast_registry", "stateful_multicast_registry"),
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
