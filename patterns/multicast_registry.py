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

Lifecycle (``prism_testkit.patterns.lifecycle``): ``await registry.start()`` (or ``async with``),
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
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

import prism_testkit.simulation.clock as clocks
from prism_testkit.config.units import Duration, Size
from prism_testkit.errors import ConfigurationError, NotFound, NotSupported, PayloadTooLarge, PrismError
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, Message, PubSub, Queue
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
from prism_testkit.report import metrics as prometheus

from .lifecycle import Health, HealthStatus, PatternProcess, StopReport, validated_slots

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

log = logging.getLogger(__name__)

MULTICAST_ID_HEADER = "prism-multicast-id"
IDENTITY_HEADER = "prism-multicast-identity"

Scalar = str | int | float | bool
Clock = Callable[[], float]

_IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_MAX_FIELDS = 64
_MAX_STRING = 1024
_MAX_INT = 2**53  # integers beyond this do not survive a JSON reader that uses doubles
_READ_CONCURRENCY = 32  # records fetched at once while enumerating
_KEEP: Any = object()  # update(): keep the current expiry


# --- errors --------------------------------------------------------------------------------


class MulticastRegistryError(PrismError):
    """Base of the registry's input errors; raising one changes nothing."""


class InvalidIdentity(MulticastRegistryError, ValueError):
    def __init__(self, identity: object, detail: str) -> None:
        self.identity = identity
        super().__init__(f"invalid identity {identity!r}: {detail}")


class InvalidMetadata(MulticastRegistryError, ValueError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"invalid metadata at {path}: {detail}")


class InvalidFilter(MulticastRegistryError, ValueError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"invalid filter at {path}: {detail}")


class IdentityNotFound(MulticastRegistryError, NotFound):
    """Update of an identity that is not registered (never, deregistered or expired)."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        super().__init__(f"identity {identity!r} is not registered (never registered, deregistered or expired)")


# --- configuration -------------------------------------------------------------------------


class MulticastRegistryConfig(BaseModel):
    """How a registry stores identities and reaches them. Every process sharing a registry
    must agree on ``key_prefix`` and ``destination_prefix``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key_prefix: str = Field(default="multicast-registry/", description="prefix of every registry key")
    destination_prefix: str = Field(
        default="identity-", description="identity x is reached at <destination_prefix>x (queue or topic)"
    )
    default_ttl: Duration | None = Field(default=None, gt=0, description="TTL of a registration that gives none")
    max_ttl: Duration | None = Field(default=None, gt=0, description="reject registrations with a longer TTL")
    backend_ttl: bool = Field(default=True, description="also let the backend evict expired records (keyvalue.ttl)")
    eviction_grace: Duration = Field(default=5.0, ge=0, description="seconds the backend keeps a record past expiry")
    max_metadata_bytes: Size = Field(default=16384, ge=2, description="largest metadata, as JSON bytes")
    max_concurrency: int = Field(default=16, ge=1, le=1024, description="sends of one multicast at once")
    attempts: int = Field(default=1, ge=1, le=100, description="tries per identity before its outcome is failed")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first retry (doubles)")
    graceful_timeout: Duration = Field(default=30.0, ge=0, description="stop(): seconds in-flight multicasts get")


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One live identity as the registry holds it."""

    identity: str
    metadata: Mapping[str, Scalar]
    registered_at: float
    updated_at: float
    expires_at: float | None  # on the registry's clock; None: never expires

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class DeliveryOutcome:
    identity: str
    status: Literal["delivered", "failed"]
    reason: str | None = None  # why it failed (the last error)
    attempts: int = 0
    definite: bool = True  # a failure that cannot have delivered anything

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


@dataclass(frozen=True)
class MulticastResult:
    multicast_id: str
    started_at: float  # the instant membership was decided (registry clock)
    outcomes: Mapping[str, DeliveryOutcome]  # identity -> outcome, one per recipient
    elapsed: float = 0.0

    @property
    def recipients(self) -> list[str]:
        return sorted(self.outcomes)

    @property
    def delivered(self) -> list[str]:
        return sorted(i for i, o in self.outcomes.items() if o.delivered)

    @property
    def failed(self) -> dict[str, DeliveryOutcome]:
        return {i: o for i, o in sorted(self.outcomes.items()) if not o.delivered}


@dataclass
class MulticastRegistryMetrics:
    """Counters of the registry (``prism_multicast_registry_<field>``)."""

    GAUGES: ClassVar[tuple[str, ...]] = ("multicasts_in_flight", "live_identities")

    registrations: int = 0
    updates: int = 0
    deregistrations: int = 0
    rejected_inputs: int = 0
    multicasts: int = 0
    deliveries: int = 0
    delivery_failures: int = 0
    delivery_retries: int = 0
    expired_skipped: int = 0  # stored records an enumeration ignored because they had expired
    corrupt_records: int = 0  # keys under the prefix whose value is no registration
    backend_ttl_unsupported: int = 0
    multicasts_in_flight: int = 0
    live_identities: int = 0  # live identities the last full enumeration saw
    last_multicast_seconds: float = 0.0


# --- validation ----------------------------------------------------------------------------


def check_identity(identity: object) -> str:
    if not isinstance(identity, str):
        raise InvalidIdentity(identity, f"expected a str, got {type(identity).__name__}")
    if not _IDENTITY.match(identity):
        raise InvalidIdentity(
            identity, "expected 1-128 characters of letters, digits and _ . @ : -, starting with a letter or digit"
        )
    return identity


def _check_scalar(path: str, value: object, error: Callable[[str, str], Exception]) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise error(path, f"integer {value} is beyond +-2**53")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(path, f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > _MAX_STRING:
            raise error(path, f"string of {len(value)} characters (at most {_MAX_STRING})")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise error(path, "string that is not valid unicode (a lone surrogate)") from None
        return value
    raise error(path, f"expected a str, int, float or bool, got {type(value).__name__}")


def check_metadata(metadata: object, limit: int) -> dict[str, Scalar]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("(root)", f"expected a mapping, got {type(metadata).__name__}")
    if len(metadata) > _MAX_FIELDS:
        raise InvalidMetadata("(root)", f"{len(metadata)} fields (at most {_MAX_FIELDS})")
    out: dict[str, Scalar] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _FIELD.match(name):
            raise InvalidMetadata(repr(name), "field names are 1-64 of letters, digits, _ . -, not starting with one")
        out[name] = _check_scalar(name, value, InvalidMetadata)
    size = len(json.dumps(out, separators=(",", ":")).encode())
    if size > limit:
        raise InvalidMetadata("(root)", f"{size} bytes as JSON (at most {limit})")
    return out


def _kind(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str"


def _equal(a: Scalar, b: Scalar) -> bool:
    return _kind(a) == _kind(b) and a == b


# --- filters -------------------------------------------------------------------------------

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "nin", "exists", "prefix")
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    operand: Any

    def holds(self, metadata: Mapping[str, Scalar]) -> bool:
        present = self.field in metadata
        value = metadata.get(self.field)
        op, operand = self.op, self.operand
        if op == "exists":
            return present is operand
        if op == "ne":
            return not present or not _equal(value, operand)  # type: ignore[arg-type]
        if op == "nin":
            return not present or not any(_equal(value, o) for o in operand)  # type: ignore[arg-type]
        if not present:
            return False
        assert value is not None
        if op == "eq":
            return _equal(value, operand)
        if op == "in":
            return any(_equal(value, o) for o in operand)
        if op == "prefix":
            return isinstance(value, str) and value.startswith(operand)
        return _kind(value) == _kind(operand) and _ORDER[op](value, operand)


@dataclass(frozen=True)
class Filter:
    """Conditions on metadata, all of which must hold (an empty filter matches everyone)."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, spec: Filter | Mapping[str, Any] | None) -> Filter:
        if spec is None:
            return cls()
        if isinstance(spec, Filter):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidFilter(
                "(root)", f"expected a mapping of field -> value or operators, got {type(spec).__name__}"
            )
        conditions: list[Condition] = []
        for name, rule in spec.items():
            if not isinstance(name, str) or not _FIELD.match(name):
                raise InvalidFilter(repr(name), "not a metadata field name")
            if isinstance(rule, Mapping):
                if not rule:
                    raise InvalidFilter(name, "an empty operator mapping")
                for op, operand in rule.items():
                    conditions.append(cls._condition(name, op, operand))
            else:
                conditions.append(cls._condition(name, "eq", rule))
        return cls(tuple(conditions))

    @staticmethod
    def _condition(name: str, op: object, operand: object) -> Condition:
        path = f"{name}.{op}"
        if op not in OPERATORS:
            raise InvalidFilter(path, f"unknown operator {op!r} (expected one of: {', '.join(OPERATORS)})")
        if op == "exists":
            if not isinstance(operand, bool):
                raise InvalidFilter(path, f"expected true or false, got {operand!r}")
            return Condition(name, op, operand)
        if op in ("in", "nin"):
            if isinstance(operand, str | bytes) or not isinstance(operand, Sequence | set | frozenset):
                raise InvalidFilter(path, f"expected a list of values, got {type(operand).__name__}")
            values = tuple(_check_scalar(f"{path}[{i}]", v, InvalidFilter) for i, v in enumerate(operand))
            return Condition(name, op, values)
        value = _check_scalar(path, operand, InvalidFilter)
        if op == "prefix" and not isinstance(value, str):
            raise InvalidFilter(path, f"expected a string, got {type(value).__name__}")
        if op in _ORDER and isinstance(value, bool):
            raise InvalidFilter(path, "booleans have no order: expected a number or a string")
        return Condition(name, str(op), value)

    def matches(self, metadata: Mapping[str, Scalar]) -> bool:
        return all(c.holds(metadata) for c in self.conditions)


# --- records -------------------------------------------------------------------------------


def _encode(reg: Registration) -> bytes:
    record = {
        "v": 1,
        "identity": reg.identity,
        "metadata": dict(reg.metadata),
        "registered_at": reg.registered_at,
        "updated_at": reg.updated_at,
        "expires_at": reg.expires_at,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def _decode(raw: bytes, identity: str) -> Registration | None:
    """The record, or None when it is no registration of ``identity``."""
    try:
        data = json.loads(bytes(raw))
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("identity") != identity:
            return None
        metadata = data["metadata"]
        if not isinstance(metadata, dict):
            return None
        for value in metadata.values():
            if not isinstance(value, str | int | float | bool):
                return None
        expires = data["expires_at"]
        if expires is not None and not isinstance(expires, int | float):
            return None
        return Registration(
            identity,
            metadata,
            float(data["registered_at"]),
            float(data["updated_at"]),
            None if expires is None else float(expires),
        )
    except (ValueError, KeyError, TypeError):
        return None


# --- the pattern ---------------------------------------------------------------------------


@dataclass
class _Send:
    """One identity's delivery inside a multicast."""

    identity: str
    attempts: int = 0
    sending: bool = False  # a send call is under way (its outcome unknown if cut short)
    last_error: BaseException | None = None


@dataclass
class _InFlight:
    multicast_id: str
    sends: dict[str, _Send] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[DeliveryOutcome]] = field(default_factory=dict)
    done: int = 0


class MulticastRegistry(PatternProcess):
    """A registry of identities in ``registry`` and multicasts to them through ``messaging``."""

    pattern_name: ClassVar[str] = "multicast-registry"

    def __init__(
        self,
        registry: KeyValue,
        messaging: Queue | PubSub,
        config: MulticastRegistryConfig | None = None,
        *,
        clock: Clock = clocks.wall,
    ) -> None:
        config = MulticastRegistryConfig() if config is None else config
        if not isinstance(config, MulticastRegistryConfig):
            raise ConfigurationError(f"config must be a MulticastRegistryConfig, not {type(config).__name__}")
        slots = validated_slots(
            self.pattern_name,
            {"registry": registry, "messaging": messaging},
            {"registry": (KeyValue,), "messaging": (Queue, PubSub)},
        )
        super().__init__(graceful_timeout=config.graceful_timeout)
        self.kv: KeyValue = registry
        self.messaging: Queue | PubSub = messaging
        assert slots["messaging"] is messaging
        self._queue: Queue | None = messaging if isinstance(messaging, Queue) else None
        self._pubsub: PubSub | None = None if isinstance(messaging, Queue) else messaging
        self.config = config
        self.clock = clock
        self.metrics = prometheus.tracked("multicast_registry", MulticastRegistryMetrics())
        self._backend_ttl = config.backend_ttl
        self._inflight: dict[str, _InFlight] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._forced = False

    async def __aenter__(self) -> MulticastRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.state.value in ("running", "failed"):
            await self.stop()

    # -- names ------------------------------------------------------------------------------

    def key(self, identity: str) -> str:
        return self.config.key_prefix + identity

    def destination(self, identity: str) -> str:
        """Where ``identity`` receives multicasts: its queue, or the topic it subscribes to."""
        return self.config.destination_prefix + check_identity(identity)

    # -- registrations ----------------------------------------------------------------------

    def _rejected(self, exc: Exception) -> Exception:
        self.metrics.rejected_inputs += 1
        return exc

    def _expiry(self, now: float, ttl: object) -> float | None:
        if ttl is None:
            ttl = self.config.default_ttl
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
            raise self._rejected(InvalidMetadata("ttl", f"expected a positive finite number of seconds, got {ttl!r}"))
        if self.config.max_ttl is not None and ttl > self.config.max_ttl:
            raise self._rejected(InvalidMetadata("ttl", f"{ttl} s is over max_ttl {self.config.max_ttl} s"))
        return now + float(ttl)

    async def _write(self, reg: Registration, now: float) -> None:
        raw, key = _encode(reg), self.key(reg.identity)
        if self._backend_ttl and reg.expires_at is not None:
            try:
                await self.kv.put(key, raw, ttl=max(reg.expires_at - now, 0.0) + self.config.eviction_grace)
                return
            except NotSupported:
                self._backend_ttl = False
                self.metrics.backend_ttl_unsupported += 1
        await self.kv.put(key, raw)

    async def register(
        self, identity: str, metadata: Mapping[str, Scalar] | None = None, *, ttl: float | None = None
    ) -> Registration:
        """Register ``identity`` (or replace its registration: metadata and expiry are the new
        ones). ``ttl`` in seconds (default ``config.default_ttl``; ``None`` for both: never
        expires). Invalid input raises before anything is written."""
        self.ensure_running("register")
        try:
            check_identity(identity)
            clean = check_metadata(metadata, self.config.max_metadata_bytes)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None
        now = self.clock()
        reg = Registration(identity, clean, now, now, self._expiry(now, ttl))
        await self._write(reg, now)
        self.metrics.registrations += 1
        return reg

    async def update(
        self,
        identity: str,
        changes: Mapping[str, Scalar | None] | None = None,
        *,
        replace: bool = False,
        ttl: float | None = _KEEP,
    ) -> Registration:
        """Change a live identity's metadata: ``changes`` are merged (a ``None`` value removes
        the field) or, with ``replace``, become the metadata. ``ttl`` refreshes the expiry from
        now (``None``: never expires); left out, the expiry is kept. Raises
        :class:`IdentityNotFound` when the identity is not registered or has expired."""
        self.ensure_running("update")
        try:
            check_identity(identity)
            if changes is not None and not isinstance(changes, Mapping):
                raise InvalidMetadata("(root)", f"expected a mapping, got {type(changes).__name__}")
            changes = dict(changes or {})
            removed = [name for name, value in changes.items() if value is None and not replace]
            kept = {name: value for name, value in changes.items() if name not in removed}
            check_metadata(kept, self.config.max_metadata_bytes)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None
        now = self.clock()
        expires = _KEEP if ttl is _KEEP else self._expiry(now, ttl) if ttl is not None else None
        current = await self._read(identity)
        if current is None or not current.live(now):
            raise self._rejected(IdentityNotFound(identity))
        if replace:
            metadata: dict[str, Scalar] = dict(kept)  # type: ignore[arg-type]
        else:
            metadata = {k: v for k, v in current.metadata.items() if k not in removed}
            metadata.update(kept)  # type: ignore[arg-type]
        try:
            clean = check_metadata(metadata, self.config.max_metadata_bytes)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None
        reg = Registration(
            identity, clean, current.registered_at, now, current.expires_at if expires is _KEEP else expires
        )
        await self._write(reg, now)
        self.metrics.updates += 1
        return reg

    async def refresh(self, identity: str, ttl: float | None = None) -> Registration:
        """A heartbeat: extend a live identity's expiry to ``ttl`` (default ``default_ttl``)
        seconds from now, keeping its metadata."""
        return await self.update(identity, ttl=ttl if ttl is not None else self.config.default_ttl)

    async def deregister(self, identity: str) -> bool:
        """Remove ``identity``; whether a live registration was removed."""
        self.ensure_running("deregister")
        try:
            check_identity(identity)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None
        current = await self._read(identity)
        existed = await self.kv.delete(self.key(identity))
        self.metrics.deregistrations += 1
        return existed and current is not None and current.live(self.clock())

    async def _read(self, identity: str) -> Registration | None:
        raw = await self.kv.get(self.key(identity))
        if raw is None:
            return None
        reg = _decode(raw, identity)
        if reg is None:
            self.metrics.corrupt_records += 1
        return reg

    async def get(self, identity: str) -> Registration | None:
        """The live registration of ``identity``; ``None`` when absent or expired."""
        self.ensure_running("get")
        try:
            check_identity(identity)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None
        reg = await self._read(identity)
        return reg if reg is not None and reg.live(self.clock()) else None

    async def enumerate(
        self, where: Filter | Mapping[str, Any] | None = None, *, at: float | None = None
    ) -> list[Registration]:
        """Every identity live at ``at`` (default: now) whose metadata matches, by identity."""
        self.ensure_running("enumerate")
        return await self._enumerate(self._filter(where), self.clock() if at is None else at)

    def _filter(self, where: Filter | Mapping[str, Any] | None) -> Filter:
        try:
            return Filter.parse(where)
        except MulticastRegistryError as exc:
            raise self._rejected(exc) from None

    async def _enumerate(self, where: Filter, now: float) -> list[Registration]:
        prefix = self.config.key_prefix
        keys = [key async for key in self.kv.scan(prefix)]
        identities = sorted({key[len(prefix) :] for key in keys if key.startswith(prefix)})
        found: list[Registration] = []
        live = 0
        gate = asyncio.Semaphore(_READ_CONCURRENCY)

        async def read(identity: str) -> Registration | None:
            if not _IDENTITY.match(identity):
                self.metrics.corrupt_records += 1
                return None
            async with gate:
                return await self._read(identity)

        for reg in await asyncio.gather(*(read(i) for i in identities)):
            if reg is None:
                continue  # gone since the scan, or not a registration
            if not reg.live(now):
                self.metrics.expired_skipped += 1
                continue
            live += 1
            if where.matches(reg.metadata):
                found.append(reg)
        if not where.conditions:
            self.metrics.live_identities = live
        return found

    # -- multicast --------------------------------------------------------------------------

    async def multicast(self, message: Message, where: Filter | Mapping[str, Any] | None = None) -> MulticastResult:
        """Send ``message`` to every identity live when this call began whose metadata matches
        ``where``; one :class:`DeliveryOutcome` per recipient."""
        self.ensure_running("multicast")
        if not isinstance(message, Message):
            raise self._rejected(MulticastRegistryError(f"expected a Message, got {type(message).__name__}"))
        condition = self._filter(where)
        started_at = self.clock()
        began = clocks.monotonic()
        flight = _InFlight(clocks.fresh_uuid().hex)
        self._inflight[flight.multicast_id] = flight
        self._idle.clear()
        self.metrics.multicasts += 1
        self.metrics.multicasts_in_flight = len(self._inflight)
        try:
            recipients = await self._enumerate(condition, started_at)
            outcomes: dict[str, DeliveryOutcome] = {}
            if self._forced:
                for reg in recipients:
                    outcomes[reg.identity] = DeliveryOutcome(reg.identity, "failed", "stopped before delivery", 0)
            else:
                gate = asyncio.Semaphore(self.config.max_concurrency)
                for reg in recipients:
                    send = flight.sends[reg.identity] = _Send(reg.identity)
                    flight.tasks[reg.identity] = asyncio.create_task(self._deliver(flight, send, message, gate))
                try:
                    if flight.tasks:
                        await asyncio.wait(list(flight.tasks.values()))
                finally:
                    for task in flight.tasks.values():
                        task.cancel()
                for identity, task in flight.tasks.items():
                    outcomes[identity] = self._outcome(flight.sends[identity], task)
            for outcome in outcomes.values():
                if outcome.delivered:
                    self.metrics.deliveries += 1
                else:
                    self.metrics.delivery_failures += 1
            elapsed = clocks.monotonic() - began
            self.metrics.last_multicast_seconds = elapsed
            return MulticastResult(flight.multicast_id, started_at, outcomes, elapsed)
        finally:
            del self._inflight[flight.multicast_id]
            self.metrics.multicasts_in_flight = len(self._inflight)
            if not self._inflight:
                self._idle.set()

    @staticmethod
    def _outcome(send: _Send, task: asyncio.Task[DeliveryOutcome]) -> DeliveryOutcome:
        if task.cancelled():
            return DeliveryOutcome(
                send.identity,
                "failed",
                "stopped: the send was cancelled by a forced stop"
                if send.sending
                else "stopped before delivery: a forced stop came first",
                send.attempts,
                definite=not send.sending,
            )
        error = task.exception()
        if error is not None:  # not raised by _deliver's own handling: a bug, reported as such
            return DeliveryOutcome(send.identity, "failed", f"{type(error).__name__}: {error}", send.attempts, False)
        return task.result()

    async def _deliver(
        self, flight: _InFlight, send: _Send, message: Message, gate: asyncio.Semaphore
    ) -> DeliveryOutcome:
        copy = message.with_headers(
            **{
                MULTICAST_ID_HEADER: flight.multicast_id,
                IDENTITY_HEADER: send.identity,
                MESSAGE_ID_HEADER: f"{flight.multicast_id}:{send.identity}",
            }
        )
        destination = self.destination(send.identity)
        backoff = self.config.retry_backoff
        definite = True
        async with gate:
            while True:
                send.attempts += 1
                send.sending = True
                try:
                    if self._queue is not None:
                        await self._queue.send(destination, copy)
                    else:
                        assert self._pubsub is not None
                        await self._pubsub.publish(destination, copy)
                except Exception as exc:
                    send.sending = False
                    send.last_error = exc
                    final = isinstance(exc, PayloadTooLarge | NotSupported | ValueError | TypeError)
                    definite = definite and final
                    if final or send.attempts >= self.config.attempts:
                        flight.done += 1
                        return DeliveryOutcome(
                            send.identity, "failed", f"{type(exc).__name__}: {exc}", send.attempts, definite
                        )
                    self.metrics.delivery_retries += 1
                    await asyncio.sleep(backoff)
                    backoff *= 2
                    continue
                send.sending = False
                flight.done += 1
                return DeliveryOutcome(send.identity, "delivered", None, send.attempts)

    # -- lifecycle hooks --------------------------------------------------------------------

    async def _check_health(self) -> Health:
        in_flight = float(len(self._inflight))
        figures = {
            "multicasts_in_flight": in_flight,
            "delivery_failures": float(self.metrics.delivery_failures),
            "live_identities": float(self.metrics.live_identities),
        }
        try:
            await self.kv.get(self.config.key_prefix + "~health")
        except Exception as exc:
            return Health(
                HealthStatus.UNHEALTHY, self.state, f"registry unreachable: {type(exc).__name__}: {exc}", figures
            )
        return Health(HealthStatus.HEALTHY, self.state, f"{len(self._inflight)} multicast(s) in flight", figures)

    async def _drain(self) -> None:
        await self._idle.wait()

    async def _force_stop(self) -> Sequence[str]:
        self._forced = True
        left = []
        for flight in list(self._inflight.values()):
            pending = [i for i, t in flight.tasks.items() if not t.done()]
            for identity in pending:
                flight.tasks[identity].cancel()
            total = len(flight.tasks)
            left.append(
                f"multicast {flight.multicast_id}: {len(pending)} of {total} deliveries unfinished"
                if flight.tasks
                else f"multicast {flight.multicast_id}: stopped while reading its recipients"
            )
        # Let the cancelled multicasts record their outcomes before the stop reports.
        if self._inflight:
            try:
                async with asyncio.timeout(self.force_timeout):
                    await self._idle.wait()
            except TimeoutError:
                pass
        return left

    async def stop(self, within: float | None = None) -> StopReport:
        """Refuse new operations, let in-flight multicasts finish for at most ``within``
        seconds (default ``config.graceful_timeout``), then cancel their remaining sends."""
        return await super().stop(within)


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
