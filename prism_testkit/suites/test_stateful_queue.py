"""The durable queue under faults (see :mod:`suites._queue_machine` for the model): every
acknowledged message is delivered, and processed at least once, whatever the nemesis does.

The faults its guarantee speaks of, and the rules that inject them:

- a consumer crash holding a delivery, and a nack (``crash_consumer``, ``nack``): the message
  must come back;
- a slow or stuck consumer: a delivery held across steps past its visibility timeout, then
  acked or nacked (every step lets real time pass; ``ack`` / ``nack`` of an old delivery);
- a server kill (or power cut, on a lazy mount) or pause of the queue's server (``kill_and_restart``,
  ``pause`` / ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the
  backend is a durable server the harness controls);
- proxy faults on its connections (``latency``, ``reset_connections``, ``partition``, ``heal``, where
  the backend is networked): operations of unknown outcome;

Not injected: a clock jump (visibility timeouts run on the server's own clock, which the
harness does not move), and a target write failure or a lost object (a queue has no second
store; the claim check machine adds one).
"""

from __future__ import annotations

import asyncio

import pytest

from prism_testkit import PrismEnv, Slot, patience, prism_suite
from prism_testkit.stateful.history import OpType
from prism_testkit.stateful.runner import StatefulRun

from ._queue_machine import VISIBILITY, QueueMachine

pytestmark = prism_suite("stateful_queue", backend=Slot.needs("queue"))


def test_queue_delivers_every_acknowledged_message_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: QueueMachine(run))


def test_a_settle_after_the_visibility_timeout_is_a_redelivery_not_an_error(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """The time model, step by step: a consumer holds a delivery past its visibility timeout,
    then acks it. Refused or accepted, the machine must not call it a bug, and the message must
    still be consumed by the end (the checker judges the run as after any example)."""
    run = StatefulRun(prism_env, request)
    machine = QueueMachine(run)
    machine.enqueue()
    patience.repeat_until(machine.receive, lambda: bool(machine.held), what="the message sent to be delivered")
    machine.loop(asyncio.sleep(VISIBILITY * 1.2))  # on the loop's clock: virtual when simulated
    machine.ack(0)
    machine.teardown()
    assert run.judged == 1


def test_a_consumer_crash_holding_a_delivery_is_a_redelivery(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``crash_consumer``, step by step: the consumer dies holding a delivery, its dequeue fails,
    and the message must come back by the end. Fails if the crash never happens."""
    run = StatefulRun(prism_env, request)
    machine = QueueMachine(run)
    machine.enqueue()
    patience.repeat_until(machine.receive, lambda: bool(machine.held), what="the message sent to be delivered")
    machine.crash_consumer(0)
    assert not machine.held
    crashed = [op for op in machine.history if op.f == "dequeue" and op.type is OpType.FAIL]
    assert len(crashed) == 1, "no consumer crashed holding the delivery"
    machine.teardown()
    assert run.judged == 1
