"""Mutant: a claimed send that failed with an unknown outcome (the connection was lost, so the
message may have been delivered) deletes the claimed object anyway, leaving a delivered message
whose claim dangles.

Loaded with ``-p tests.mutants.claim_check_discards_on_unknown_outcome``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from prism_testkit.errors import PrismError
from prism_testkit.interfaces import Message
from prism_testkit.patterns.claim_check import ClaimCheck
from prism_testkit.patterns.claim_check import adapters as claim_check_module

_T = TypeVar("_T")


async def _send_claimed(claim_check: ClaimCheck, message: Message, send: Callable[[Message], Awaitable[_T]]) -> _T:
    claimed = await claim_check.outgoing(message)
    try:
        return await send(claimed)
    except PrismError:
        ref = claim_check.reference(claimed) if claimed is not message else None
        if ref is not None:  # the bug: ConnectionLost is treated as a certain failure
            await claim_check._discard(ref.bucket, ref.key)
        raise


claim_check_module._send_claimed = _send_claimed
