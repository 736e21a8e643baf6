"""prism-testkit: a pytest plugin and acceptance-test harness for layered data-access patterns."""

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.combinations import Combination, Slot
from prism_testkit.driver import Driver
from prism_testkit.env import PrismEnv
from prism_testkit.errors import NotSupported, PrismError
from prism_testkit.hookspecs import ENTRY_POINT_GROUP, hookimpl
from prism_testkit.interfaces import (
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
from prism_testkit.provisioning import (
    Availability,
    EmbeddedProvisioner,
    Endpoint,
    ProvisionContext,
    Provisioner,
    Via,
)
from prism_testkit.registry import BackendSpec
from prism_testkit.suite import prism_suite

__all__ = [
    "ENTRY_POINT_GROUP",
    "Availability",
    "BackendProperties",
    "BackendSpec",
    "Capability",
    "Combination",
    "DeliveryGuarantee",
    "Driver",
    "EmbeddedProvisioner",
    "Endpoint",
    "KeyValue",
    "Log",
    "Message",
    "NotSupported",
    "ObjectInfo",
    "ObjectStore",
    "Ordering",
    "PrismEnv",
    "PrismError",
    "ProvisionContext",
    "Provisioner",
    "PubSub",
    "Queue",
    "QueueDelivery",
    "Record",
    "Slot",
    "Subscription",
    "Transaction",
    "Transactions",
    "Via",
    "hookimpl",
    "prism_suite",
]
