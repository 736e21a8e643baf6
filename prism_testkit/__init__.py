"""prism-testkit: a pytest plugin and acceptance-test harness for layered data-access patterns.

The names below are imported on first use (PEP 562): the pytest plugin loads this package in
every pytest run of an environment where it is installed, and must not pay for pydantic or
Hypothesis there unless the run uses prism-testkit.

Old import paths of modules that moved into a package keep working for one release, with a
DeprecationWarning (:mod:`prism_testkit._moved`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from prism_testkit import _moved

_moved.install()

_EXPORTS = {
    "BackendProperties": "prism_testkit.capabilities",
    "Capability": "prism_testkit.capabilities",
    "DeliveryGuarantee": "prism_testkit.capabilities",
    "Ordering": "prism_testkit.capabilities",
    "Combination": "prism_testkit.registry.combinations",
    "Slot": "prism_testkit.registry.combinations",
    "Driver": "prism_testkit.driver",
    "PrismEnv": "prism_testkit.runtime.env",
    "NotSupported": "prism_testkit.errors",
    "PrismError": "prism_testkit.errors",
    "ENTRY_POINT_GROUP": "prism_testkit.registry.hookspecs",
    "hookimpl": "prism_testkit.registry.hookspecs",
    "ChangeFeed": "prism_testkit.interfaces",
    "ChangeSet": "prism_testkit.interfaces",
    "KeyChange": "prism_testkit.interfaces",
    "KeyValue": "prism_testkit.interfaces",
    "Log": "prism_testkit.interfaces",
    "Message": "prism_testkit.interfaces",
    "ObjectInfo": "prism_testkit.interfaces",
    "ObjectStore": "prism_testkit.interfaces",
    "PubSub": "prism_testkit.interfaces",
    "Queue": "prism_testkit.interfaces",
    "QueueDelivery": "prism_testkit.interfaces",
    "Record": "prism_testkit.interfaces",
    "Subscription": "prism_testkit.interfaces",
    "Transaction": "prism_testkit.interfaces",
    "Transactions": "prism_testkit.interfaces",
    "Availability": "prism_testkit.provision.base",
    "EmbeddedProvisioner": "prism_testkit.provision.base",
    "Endpoint": "prism_testkit.provision.base",
    "ProvisionContext": "prism_testkit.provision.base",
    "Provisioner": "prism_testkit.provision.base",
    "Via": "prism_testkit.provision.base",
    "BackendSpec": "prism_testkit.registry.backends",
    "ServerProcess": "prism_testkit.provision.processes",
    "free_port": "prism_testkit.provision.processes",
    "ServerProvisioner": "prism_testkit.provision.servers",
    "DataDir": "prism_testkit.provision.servers",
    "find_binary": "prism_testkit.provision.servers",
    "private_endpoint": "prism_testkit.provision.servers",
    "PatternSlot": "prism_testkit.registry.patterns",
    "PatternSpec": "prism_testkit.registry.patterns",
    "prism_suite": "prism_testkit.suite",
}

__all__ = [
    "Availability",
    "BackendProperties",
    "BackendSpec",
    "Capability",
    "ChangeFeed",
    "ChangeSet",
    "Combination",
    "DataDir",
    "DeliveryGuarantee",
    "Driver",
    "ENTRY_POINT_GROUP",
    "EmbeddedProvisioner",
    "Endpoint",
    "KeyChange",
    "KeyValue",
    "Log",
    "Message",
    "NotSupported",
    "ObjectInfo",
    "ObjectStore",
    "Ordering",
    "PatternSlot",
    "PatternSpec",
    "PrismEnv",
    "PrismError",
    "ProvisionContext",
    "Provisioner",
    "PubSub",
    "Queue",
    "QueueDelivery",
    "Record",
    "ServerProcess",
    "ServerProvisioner",
    "Slot",
    "Subscription",
    "Transaction",
    "Transactions",
    "Via",
    "find_binary",
    "free_port",
    "hookimpl",
    "prism_suite",
    "private_endpoint",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prism_testkit' has no attribute {name!r}")
    # Not cached here: the module in sys.modules is the truth (pytester's in-process runs
    # drop and re-import modules, and a cached class would then be a stale twin).
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
    from prism_testkit.driver import Driver
    from prism_testkit.errors import NotSupported, PrismError
    from prism_testkit.interfaces import (
        ChangeFeed,
        ChangeSet,
        KeyChange,
        KeyValue,
        Log,
        Message,
        ObjectInfo,
        ObjectStore,
        PubSub,
        Queue,
        QueueDelivery,
        Record,
        Subscription,
        Transaction,
        Transactions,
    )
    from prism_testkit.provision.base import (
        Availability,
        EmbeddedProvisioner,
        Endpoint,
        ProvisionContext,
        Provisioner,
        Via,
    )
    from prism_testkit.provision.processes import ServerProcess, free_port
    from prism_testkit.provision.servers import DataDir, ServerProvisioner, find_binary, private_endpoint
    from prism_testkit.registry.backends import BackendSpec
    from prism_testkit.registry.combinations import Combination, Slot
    from prism_testkit.registry.hookspecs import ENTRY_POINT_GROUP, hookimpl
    from prism_testkit.registry.patterns import PatternSlot, PatternSpec
    from prism_testkit.runtime.env import PrismEnv
    from prism_testkit.suite import prism_suite
