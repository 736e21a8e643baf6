"""The queue machine's recording, step by step (issue 66 item 2): the history it writes is what
the total-queue checker judges, so a consumer that nacks, or holds a delivery it never settles,
must be recorded as not having processed the message (a failed dequeue). Recorded as
processed, a queue that drops such messages is never judged lost."""

from __future__ import annotations

import pytest

from prism_testkit import PrismEnv, Slot, patience, prism_suite
from prism_testkit.stateful.history import OpType
from prism_testkit.stateful.runner import StatefulRun
from prism_testkit.suites._queue_machine import QueueMachine

pytestmark = prism_suite("queue_machine_recording", backend=Slot.needs("queue"))


def _holding(prism_env: PrismEnv, request: pytest.FixtureRequest) -> tuple[StatefulRun, QueueMachine]:
    run = StatefulRun(prism_env, request)
    machine = QueueMachine(run)
    machine.enqueue()
    patience.repeat_until(machine.receive, lambda: bool(machine.held), what="the message sent to be delivered")
    return run, machine


def _failed_dequeues(machine: QueueMachine) -> list[str]:
    return [str(op.value) for op in machine.history if op.f == "dequeue" and op.type is OpType.FAIL]


def test_a_nack_is_recorded_as_not_processed(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    run, machine = _holding(prism_env, request)
    machine.nack(0)
    assert len(_failed_dequeues(machine)) == 1, "the nacked delivery was recorded as processed"
    machine.teardown()
    assert run.judged == 1


def test_a_delivery_never_settled_is_recorded_as_not_processed(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run, machine = _holding(prism_env, request)
    machine.teardown()  # the check abandons what is still held
    assert len(_failed_dequeues(machine)) == 1, "the delivery never settled was recorded as processed"
    assert run.judged == 1


def test_a_crash_holding_a_delivery_is_recorded_as_not_processed(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run, machine = _holding(prism_env, request)
    machine.crash_consumer(0)
    assert len(_failed_dequeues(machine)) == 1, "the crashed consumer's delivery was recorded as processed"
    machine.teardown()
    assert run.judged == 1
