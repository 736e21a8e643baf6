"""The producer under faults (issue #40's stateful suite): the queue machine of
:mod:`suites._queue_machine`, with every enqueue handed to a :class:`Producer` (retries with
backoff, one message id over all attempts) instead of sent directly. The total-queue checker then
judges the producer: every publish it reported published is consumed, nothing it was never handed
comes out, and duplicates appear only where the queue's declared delivery allows them.

The faults its guarantee speaks of, and the rules that inject them:

- a send that fails or whose answer is lost (proxy faults: ``latency``, ``reset_connections``,
  ``partition``, ``heal``, where the backend is networked): the producer retries, so a publish may
  land twice with one id (at-least-once) and is never reported published when it did not land;
- a server kill or pause of the queue's server (``kill_and_restart``, ``pause`` / ``resume``, from
  the nemesis, where the backend is a durable server the harness controls);
- consumer crashes, nacks and slow consumers (the queue machine's rules): the consumed side.

A publish whose retries ran out (``PublishFailed``) or that outlived the client's bound is an
unknown outcome (an attempt may have landed), never a definite failure. The producer's own stop
runs before the final drain, so every message it still held is published or abandoned by then.
Not injected: a clock jump (the producer's window needs its state slot, which this machine leaves
out; the producer suite moves the dedup clock by hand).
"""

from __future__ import annotations

import pytest
from prism_testkit.patterns.producer import Producer, ProducerConfig

from prism_testkit import Message, PrismEnv, Queue, Slot, patience, prism_suite
from prism_testkit.interfaces import QueueDelivery
from prism_testkit.jepsen.runner import StatefulRun

from ._queue_machine import QueueMachine

pytestmark = prism_suite("stateful_producer", backend=Slot.needs("queue"))


class _CurrentQueue:
    """The producer's sink: whichever queue client the machine set last (a restart or a proxy
    replaces it; the machine looks it up outside the loop, before each operation)."""

    def __init__(self, queue: Queue) -> None:
        self.current = queue

    async def send(self, queue: str, message: Message) -> str:
        return await self.current.send(queue, message)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        return await self.current.receive(queue, wait=wait, visibility_timeout=visibility_timeout)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.current.ack(queue, delivery)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.current.nack(queue, delivery)


class ProducerMachine(QueueMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run)
        self.sink = _CurrentQueue(self.settled_queue())
        self.producer = Producer(
            self.sink,
            ProducerConfig(destination=self.name, max_retries=3, retry_backoff=0.02, retry_backoff_max=0.1),
        )
        self.loop(self.producer.start())
        self.published = 0

    def send(self, encode: object) -> None:
        value, self.next_value = self.next_value, self.next_value + 1
        message = Message(str(value).encode(), {"stateful": "producer"})
        self.sink.current = self.queue()
        outcome = self.attempt(
            "producer", "enqueue", lambda: self.producer.publish(message), key=self.name, value=value
        )
        if outcome.completed:
            assert outcome.result.published, outcome.result
            outcome.handle.ok()
            self.acknowledged.add(value)
            self.published += 1

    def check(self) -> tuple[list, str]:  # type: ignore[type-arg]
        self.sink.current = self.settled_queue()  # healed: what the producer still holds goes out
        self.loop(self.producer.stop(within=patience.bound("stall")))
        verdicts, what = super().check()
        return verdicts, f"producer over {what}"


def test_every_publish_reported_published_is_consumed_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: ProducerMachine(run))


def test_a_publish_goes_through_the_producer(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    """Step by step: an enqueue is a producer publish (its metrics count it) and is consumed by
    the end. Fails if the machine bypasses the producer."""
    run = StatefulRun(prism_env, request)
    machine = ProducerMachine(run)
    machine.enqueue()
    machine.enqueue()
    assert machine.producer.metrics.published == 2
    assert machine.published == 2
    machine.teardown()
    assert run.judged == 1
