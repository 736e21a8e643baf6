"""The durable queue under faults (see :mod:`suites._queue_machine` for the model): every
acknowledged message is delivered, and processed at least once, whatever the nemesis does."""

from __future__ import annotations

import pytest

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.jepsen.runner import StatefulRun

from ._queue_machine import QueueMachine

pytestmark = prism_suite("stateful_queue", backend=Slot.needs("queue"))


def test_queue_delivers_every_acknowledged_message_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: QueueMachine(run))
