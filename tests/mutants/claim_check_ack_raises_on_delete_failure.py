"""Mutant: after an ack, a failed delete of the claimed object is raised to the caller, so an
ack that happened looks failed (the caller may retry or nack it).

Loaded with ``-p tests.mutants.claim_check_ack_raises_on_delete_failure``.
"""

from __future__ import annotations

from prism_testkit.patterns.claim_check import ClaimCheck, ClaimReference


async def _release_loudly(self: ClaimCheck, ref: ClaimReference | None) -> None:
    if ref is not None:
        await self.release(ref)  # the bug: the error escapes after the ack


ClaimCheck._release_quietly = _release_loudly  # type: ignore[method-assign]
