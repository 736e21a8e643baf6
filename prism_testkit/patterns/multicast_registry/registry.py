"""The :class:`MulticastRegistry` process: register, update, expire and enumerate identities, and
multicast to the live ones a filter selects."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import ConfigurationError, NotSupported, PayloadTooLarge
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, Message, PubSub, Queue
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import Health, HealthStatus, PatternProcess, StopReport, validated_slots

from .config import MulticastRegistryConfig
from .errors import IdentityNotFound, InvalidMetadata, MulticastRegistryError
from .filters import Filter
from .metrics import MulticastRegistryMetrics
from .records import _decode, _encode
from .validation import _IDENTITY, Scalar, check_identity, check_metadata
from .values import DeliveryOutcome, MulticastResult, Registration

log = logging.getLogger(__name__)

MULTICAST_ID_HEADER = "prism-multicast-id"
IDENTITY_HEADER = "prism-multicast-identity"

Clock = Callable[[], float]

_READ_CONCURRENCY = 32  # records fetched at once while enumerating
_KEEP: Any = object()  # update(): keep the current expiry


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
