"""Mutant: a send cut short by a forced stop is reported ``delivered``.

Loaded with ``-p tests.mutants.multicast_registry_failed_send_reported_delivered``.
"""

from __future__ import annotations

import asyncio

from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry.registry import _Send

_outcome = mr.MulticastRegistry._outcome


def outcome(send: _Send, task: asyncio.Task[mr.DeliveryOutcome]) -> mr.DeliveryOutcome:
    if task.cancelled():
        return mr.DeliveryOutcome(send.identity, "delivered", None, send.attempts)  # the bug
    return _outcome(send, task)


mr.MulticastRegistry._outcome = staticmethod(outcome)  # type: ignore[method-assign]
