"""The durable queue under faults (see :mod:`suites._queue_machine` for the model): every
acknowledged message is delivered, and processed at least once, whatever the nemesis does."""

from __future__ import annotations

import time

import pytest

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.jepsen.runner import StatefulRun

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
    machine.receive()
    assert machine.held, "the message sent was not received"
    time.sleep(VISIBILITY * 1.2)
    machine.ack(0)
    machine.teardown()
    assert run.judged == 1
