"""nats: core NATS pub/sub plus JetStream queues, logs, key-value and objects.

Registration only: the driver (:mod:`.driver`, imports nats-py) is loaded when the backend is
first connected; the provisioner (:mod:`.provision`) starts a private nats-server without it.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.hookspecs import hookimpl
from prism_testkit.registry import BackendSpec

from .provision import NatsProvisioner

# Largest message payload we promise on every interface. The private server runs with
# max_payload 8 MiB; the rest is room for our headers and the API's base64 framing.
MAX_PAYLOAD = 4 << 20

CAPABILITIES: frozenset[Capability] = frozenset(
    {
        Capability.KEYVALUE,
        Capability.KEYVALUE_SCAN,
        Capability.KEYVALUE_CAS,
        Capability.PUBSUB,
        Capability.QUEUE,
        Capability.QUEUE_DEDUP,  # Nats-Msg-Id within the stream's 2-minute duplicate window
        Capability.LOG,
        Capability.OBJECTS,
    }
)


def _properties(*, durable: bool, survives_power_loss: bool) -> BackendProperties:
    return BackendProperties(
        durable=durable,
        survives_power_loss=survives_power_loss,
        ordering=Ordering.TOTAL,
        pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,  # core NATS: no storage, no redelivery
        queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
        max_payload=MAX_PAYLOAD,
    )


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="nats",
            capabilities=CAPABILITIES,
            # JetStream fsyncs every 2 minutes by default (Debian's 2.9 has no sync_interval:
            # always), so an acknowledged write is not guaranteed to be on disk.
            # Jepsen 2025: ~14 % of acknowledged writes lost in a power cut with the default interval.
            properties=_properties(durable=False, survives_power_loss=False),
            provisioner=NatsProvisioner(),
            driver="prism_testkit.backends.nats.driver:NatsDriver",
            requires=("nats",),
            extra="nats",
            embedded=False,
            description="NATS: core pub/sub; JetStream queue, log, key-value (cas, scan) and object store; "
            "not durable (no fsync per write)",
        ),
        BackendSpec(
            name="jetstream",
            capabilities=CAPABILITIES,
            # sync_interval: always: every acknowledged JetStream write was fsynced first (the
            # restart suite proves the claim by SIGKILL; the WAL accepts it as a durable log).
            # Not power loss: every write is fsynced, but the directories JetStream creates for an
            # account and a stream are never fsynced into their parent, so a power cut takes the
            # whole new stream (the power_loss suite lost 81 of 81 acknowledged writes, all synced).
            properties=_properties(durable=True, survives_power_loss=False),
            provisioner=NatsProvisioner(sync_always=True),
            driver="prism_testkit.backends.nats.driver:NatsDriver",
            requires=("nats",),
            extra="nats",
            embedded=False,
            description="NATS with JetStream sync_interval: always (nats-server >= 2.10): durable",
        ),
    ]
