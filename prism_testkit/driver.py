"""The base class every backend driver extends.

A driver is one connection (or pool) to one provisioned backend instance. It hands out one
facet per interface it implements; the base class answers every accessor with
:class:`NotSupported`, so an interface a driver does not override is undeclared by construction
and the registry can check at start-up that every declared interface is really overridden.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

from prism_testkit.capabilities import Capability
from prism_testkit.errors import NotSupported

if TYPE_CHECKING:
    from prism_testkit.interfaces import ChangeFeed, KeyValue, Log, ObjectStore, PubSub, Queue, Transactions
    from prism_testkit.provision.base import Endpoint

T = TypeVar("T")

# The accessor method of Driver that hands out each interface's facet.
ACCESSORS: dict[Capability, str] = {
    Capability.KEYVALUE: "keyvalue",
    Capability.PUBSUB: "pubsub",
    Capability.QUEUE: "queue",
    Capability.LOG: "log",
    Capability.OBJECTS: "objects",
    Capability.TRANSACTIONS: "transactions",
    Capability.CHANGEFEED: "changefeed",
}


class Driver(ABC):
    """Connected backend. Subclasses override the accessors of the interfaces they implement."""

    backend_name: ClassVar[str] = "?"
    # The server's version as it reports it, set by ``connect`` where the server tells (the
    # report names it beside how the backend was provisioned); None: in-process or untold.
    server_version: str | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Every accessor a subclass overrides first checks the declaration, so a driver class
        # shared by several registrations (or a forgetful one) cannot hand out an undeclared
        # interface: honesty by construction rather than by each backend's discipline.
        super().__init_subclass__(**kwargs)
        for capability, attr in ACCESSORS.items():
            method = cls.__dict__.get(attr)
            if method is not None and not hasattr(method, "__prism_guarded__"):
                setattr(cls, attr, _guarded(capability, method))

    def __init__(self, name: str, capabilities: frozenset[Capability]) -> None:
        self.name = name
        self.capabilities = capabilities
        # declared by the registration but missing on this instance (a server given by URL
        # without logical decoding...), with the reason NotSupported reports
        self.withheld: dict[Capability, str] = {}

    def withhold(self, capability: Capability, reason: str) -> None:
        """This instance lacks ``capability`` (and its sub-capabilities) although the backend
        declares it: it is no longer supported here, and using it says why."""
        lost = {c for c in self.capabilities if c.interface is capability or c is capability}
        self.capabilities = self.capabilities - lost
        self.withheld.update(dict.fromkeys(lost, reason))

    @classmethod
    @abstractmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        """Open a connection to the provisioned instance described by ``endpoint``."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the data stays on the server."""

    @abstractmethod
    async def purge(self, prefix: str) -> None:
        """Delete everything this driver can see whose name starts with ``prefix``
        (keys, queues, logs, topics, buckets, group offsets). Used for per-test cleanup."""

    @abstractmethod
    async def leftovers(self, prefix: str) -> list[str]:
        """Names of things still stored under ``prefix``: empty after a clean test."""

    # --- capability checks -----------------------------------------------------------------

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability, detail: str = "") -> None:
        """Raise :class:`NotSupported` unless ``capability`` is declared for this backend."""
        if capability not in self.capabilities:
            reason = self.withheld.get(capability)
            if reason is not None:
                detail = f"{detail}: {reason}" if detail else f"not on this instance: {reason}"
            raise NotSupported(self.name, capability.value, detail)

    # --- interface accessors: undeclared unless overridden ---------------------------------

    def keyvalue(self) -> KeyValue:
        raise NotSupported(self.name, Capability.KEYVALUE.value)

    def pubsub(self) -> PubSub:
        raise NotSupported(self.name, Capability.PUBSUB.value)

    def queue(self) -> Queue:
        raise NotSupported(self.name, Capability.QUEUE.value)

    def log(self) -> Log:
        raise NotSupported(self.name, Capability.LOG.value)

    def objects(self) -> ObjectStore:
        raise NotSupported(self.name, Capability.OBJECTS.value)

    def transactions(self) -> Transactions:
        raise NotSupported(self.name, Capability.TRANSACTIONS.value)

    def changefeed(self) -> ChangeFeed:
        raise NotSupported(self.name, Capability.CHANGEFEED.value)

    def facet(self, interface: Capability) -> object:
        """The facet for ``interface`` (an interface capability, not a sub-capability)."""
        if interface not in self.capabilities:
            self.require(interface)
        return getattr(self, ACCESSORS[interface])()


def _guarded(capability: Capability, accessor: Callable[[Driver], T]) -> Callable[[Driver], T]:
    @functools.wraps(accessor)
    def checked(self: Driver) -> T:
        self.require(capability)
        return accessor(self)

    checked.__prism_guarded__ = True  # type: ignore[attr-defined]
    return checked


def implemented_interfaces(driver_cls: type[Driver]) -> frozenset[Capability]:
    """Interfaces whose accessor ``driver_cls`` overrides (what it can possibly provide)."""
    return frozenset(cap for cap, attr in ACCESSORS.items() if getattr(driver_cls, attr) is not getattr(Driver, attr))
