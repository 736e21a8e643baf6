"""Mutant: a claimed send that certainly failed leaves its uploaded object behind: an orphan no
message references, left for the TTL (or forever without one).

Loaded with ``-p tests.mutants.claim_check_keeps_orphan_on_failed_send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from prism_testkit.interfaces import Message
from prism_testkit.patterns.claim_check import ClaimCheck
from prism_testkit.patterns.claim_check import adapters as claim_check_module

_T = TypeVar("_T")


async def _send_claimed(claim_check: ClaimCheck, message: Message, send: Callable[[Message], Awaitable[_T]]) -> _T:
    claimed = await claim_check.outgoing(message)
    return await send(claimed)  # the bug: nothing is cleaned up when the send fails


claim_check_module._send_claimed = _send_claimed
