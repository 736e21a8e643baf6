"""rabbitmq: a RabbitMQ backend for prism-testkit, registered from its own distribution.

Registration only. The driver (:mod:`.driver`, imports aio-pika) is named by a string and
imported when the backend is first connected; the provisioner (:mod:`.provision`) starts a
private ``rabbitmq-server`` without any client library.
"""

from __future__ import annotations

import string

from prism_testkit import BackendProperties, BackendSpec, Capability, DeliveryGuarantee, Ordering, hookimpl

from .provision import MAX_PAYLOAD, NAME_PUNCTUATION, RabbitMQProvisioner

CAPABILITIES: frozenset[Capability] = frozenset({Capability.QUEUE, Capability.PUBSUB})

PROPERTIES = BackendProperties(
    # Classic durable queues, persistent messages, publisher confirms: a send returns once the
    # broker has written the message to disk. The restart suite kills the server (SIGKILL) and
    # finds every acknowledged send again (see README.md for what an ack does not promise).
    durable=True,
    # Not claimed: nothing here proves that RabbitMQ fsyncs queue metadata and the queue index
    # before it confirms, and the power-loss suite would need FUSE to prove it.
    survives_power_loss=False,
    ordering=Ordering.TOTAL,  # one queue / topic, one consumer: sending order
    queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
    pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,  # a subscriber's queue lives with its connection
    survives_pause=True,
    max_payload=MAX_PAYLOAD,
    # queue names are AMQP's (the driver refuses others with ValueError); topics are routing
    # keys and take anything, but one declaration covers every name
    name_characters=string.ascii_uppercase + NAME_PUNCTUATION.replace("-", ""),
)


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="rabbitmq",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=RabbitMQProvisioner(),
            driver="prism_rabbitmq.driver:RabbitMQDriver",
            requires=("aio_pika",),  # no `extra`: the hint names the module to install
            embedded=False,
            description="RabbitMQ: durable queue (classic queues, confirms) and pub/sub (direct exchange)",
        )
    ]
