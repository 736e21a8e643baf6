"""Mutant: a claimed object that is missing reads as an empty payload instead of raising
``ClaimNotFound``, so the consumer processes a message with no content and acks it, and nobody
learns that the payload was lost.

Loaded with ``-p tests.mutants.claim_check_reads_missing_object_as_empty``.
"""

from __future__ import annotations

from prism_testkit.patterns.claim_check import ClaimCheck, ClaimNotFound, ClaimReference

_restore = ClaimCheck._restore


async def _restore_or_empty(self: ClaimCheck, ref: ClaimReference) -> bytes:
    try:
        return await _restore(self, ref)
    except ClaimNotFound:
        return b""  # the bug: a missing object passes for an empty payload


ClaimCheck._restore = _restore_or_empty  # type: ignore[method-assign]
