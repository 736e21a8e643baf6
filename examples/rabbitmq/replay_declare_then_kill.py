"""Replay of a RabbitMQ finding (docs/findings.md): a durable queue declared just before a
SIGKILL can be gone after the restart, with every confirmed persistent message in it.

Each trial declares a new durable queue, publishes five persistent messages with publisher
confirms, SIGKILLs the node at once, restarts it and asks for the queue (a passive declare).
``--sync`` adds what the driver does after a declaration (a binding added and removed).
The loss needs load: run two CPU burners beside it, e.g.

    stress-ng --cpu 2 --timeout 900 & python examples/rabbitmq/replay_declare_then_kill.py --trials 60
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import uuid
from pathlib import Path

import aio_pika
from prism_rabbitmq.driver import SYNC_EXCHANGE
from prism_rabbitmq.provision import RabbitMQProvisioner

from prism_testkit import Endpoint, ProvisionContext

MESSAGES = 5


async def trial(endpoint: Endpoint, queue: str, sync: bool) -> int | None:
    """Messages the queue holds after the kill and restart; None when the queue is gone."""
    control = endpoint.control
    assert control is not None
    connection = await aio_pika.connect(endpoint.url)
    admin = await connection.channel()
    confirm = await connection.channel(publisher_confirms=True)
    declared = await admin.declare_queue(queue, durable=True)
    if sync:
        key = uuid.uuid4().hex
        await declared.bind(SYNC_EXCHANGE, routing_key=key)
        await declared.unbind(SYNC_EXCHANGE, routing_key=key)
    for _ in range(MESSAGES):
        message = aio_pika.Message(b"m", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await confirm.default_exchange.publish(message, routing_key=queue)
    await asyncio.to_thread(control.kill)
    await asyncio.to_thread(control.start)
    after = await aio_pika.connect(endpoint.url)
    try:
        channel = await after.channel()
        found = await channel.declare_queue(queue, passive=True)
        return found.declaration_result.message_count
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        await after.close()


async def replay(trials: int, sync: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="rabbitmq-replay-") as root:
        ctx = ProvisionContext(backend="rabbitmq", url=None, workdir=Path(root), worker_id="replay", run_id="replay")
        provisioner = RabbitMQProvisioner()
        binary = provisioner.binary()
        if binary is None:
            raise SystemExit("no rabbitmq-server installed")
        endpoint = provisioner.start_private(ctx, binary)
        gone = 0
        try:
            for n in range(trials):
                held = await trial(endpoint, f"replay-{n}", sync)
                gone += held is None
                print(f"trial {n}: " + ("QUEUE GONE" if held is None else f"kept, {held} of {MESSAGES} messages"))
        finally:
            provisioner.stop(endpoint)
    print(f"{gone} of {trials} queues gone after SIGKILL ({'with' if sync else 'without'} the driver's sync)")
    return gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--sync", action="store_true", help="bind and unbind after the declare, as the driver does")
    args = parser.parse_args()
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # every kill resets the trial's connection
    raise SystemExit(1 if asyncio.run(replay(args.trials, args.sync)) else 0)


if __name__ == "__main__":
    main()
