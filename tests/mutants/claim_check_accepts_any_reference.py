"""Mutant: a claim reference is not checked against the configured bucket and key prefix, so a
forged message makes the consumer read (and, on release, delete) any object.

Loaded with ``-p tests.mutants.claim_check_accepts_any_reference``.
"""

from __future__ import annotations

from prism_testkit.patterns.claim_check import ClaimCheck, ClaimReference


def _in_scope(self: ClaimCheck, ref: ClaimReference, header: str | None = None) -> ClaimReference:
    return ref  # the bug: no scope check


ClaimCheck._in_scope = _in_scope  # type: ignore[method-assign]
