"""nats: core NATS pub/sub plus JetStream queues, logs, key-value and objects.

Registration only: the driver (:mod:`.driver` and the modules it is made of, which import
nats-py) is loaded when the backend is first connected; the provisioner (:mod:`.provision`)
starts a private nats-server without it.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .cluster import NatsClusterProvisioner
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


def _properties(*, durable: bool, survives_power_loss: bool, fsyncs: bool) -> BackendProperties:
    return BackendProperties(
        durable=durable,
        survives_power_loss=survives_power_loss,
        fsyncs_before_ack=fsyncs,
        ordering=Ordering.TOTAL,
        pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,  # core NATS: no storage, no redelivery
        queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
        max_payload=MAX_PAYLOAD,
    )


def _spec(
    name: str,
    provisioner: NatsProvisioner,
    *,
    durable: bool,
    description: str,
    cluster: bool = False,
    opt_in: bool = False,
) -> BackendSpec:
    """One registration of the shared driver: instances differ in provisioning and durability."""
    return BackendSpec(
        name=name,
        capabilities=CAPABILITIES,
        # sync_interval: always is documented to fsync every write before its acknowledgement
        properties=_properties(durable=durable, survives_power_loss=False, fsyncs=provisioner.sync_always),
        provisioner=provisioner,
        driver="prism_testkit.backends.nats.driver:NatsDriver",
        requires=("nats",),
        extra="nats",
        embedded=False,
        description=description,
        opt_in=opt_in,
        exclusive=cluster,  # one worker starts a cluster: six nats-servers per worker would starve 2 cores
        stateful_examples=CLUSTER_EXAMPLES if cluster else None,
        # a cluster runs the single server's driver code: its rows replication cannot change are
        # left to "jetstream" (durable like every cluster here, so it fits each of their slots)
        twin="jetstream" if cluster else None,
    )


# A cluster's stateful example costs ~11 s (every kill of a node that leads a stream or consumer
# waits out raft's 4-9 s election: benchmarks/cluster_faults.py): its tests draw this many, not 12.
CLUSTER_EXAMPLES = 2


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    # None survives a power cut: every write may be fsynced, but the directories JetStream
    # creates for an account and a stream are never fsynced into their parent, so a cut takes
    # the whole new stream (the power_loss suite lost 81 of 81 acknowledged writes on each).
    return [
        # JetStream on its default interval, fsynced every 2 minutes (Debian's 2.9, if chosen,
        # has no sync_interval: always), so an acknowledged write is not guaranteed to be on disk.
        # Jepsen 2025: ~14 % of acknowledged writes lost in a power cut with the default interval.
        _spec(
            "nats",
            NatsProvisioner(),
            durable=False,
            description="NATS: core pub/sub; JetStream queue, log, key-value (cas, scan) and object store; "
            "not durable (no fsync per write)",
        ),
        # sync_interval: always: every acknowledged JetStream write was fsynced first (the
        # restart suite proves the claim by SIGKILL; the WAL accepts it as a durable log).
        _spec(
            "jetstream",
            NatsProvisioner(sync_always=True),
            durable=True,
            description="NATS with JetStream sync_interval: always (nats-server >= 2.10): durable",
        ),
        # Three nodes in their own network namespaces, every stream on all three.
        _spec(
            "jetstream-r3",
            NatsClusterProvisioner(nodes=3, sync_always=True),
            durable=True,
            description="JetStream cluster of 3 nodes (R3 streams, sync_interval: always), a network namespace "
            "each (or link proxies)",
            cluster=True,
        ),
        # nats-server's default: acknowledged once a majority has it in memory, synced every two
        # minutes; a SIGKILL of every node keeps what the page cache holds (durable).
        _spec(
            "jetstream-r3-lazy-sync",
            NatsClusterProvisioner(nodes=3, sync_always=False),
            durable=True,
            description="JetStream cluster of 3 nodes (R3 streams) with the default two-minute sync interval",
            cluster=True,
        ),
        # Five nodes, as Jepsen runs them: a minority of two can be cut off. Named to run (not
        # in all): its rows would cost what the 3-node ones do once more, on a third worker.
        _spec(
            "jetstream-r5",
            NatsClusterProvisioner(nodes=5, sync_always=True),
            durable=True,
            description="JetStream cluster of 5 nodes (R5 streams, sync_interval: always), a network namespace "
            "each (or link proxies)",
            cluster=True,
            opt_in=True,
        ),
    ]
