"""Mutant: the claim check log adapter keeps the claims it read by offset alone, forgetting which
log they came from. Every log's first record is at offset 0, so one adapter reading two logs
keeps only the last one's claim there: committing the first log releases the object of the
second log's record, not yet consumed, and leaves its own behind.

Loaded with ``-p tests.mutants.claim_check_log_claims_by_offset``; the claim check suite's
two-log test must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.claim_check import ClaimCheckLog
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ClaimCheckLog,
    "read",
    "self._claims[(log, record.offset)] = ref",
    'self._claims[("", record.offset)] = ref  # the bug: the offset alone names a record',
)
rewrite_line(
    ClaimCheckLog,
    "commit",
    "ref = self._claims.pop((log, record.offset), None)",
    'ref = self._claims.pop(("", record.offset), None)  # the bug: the offset alone names a record',
)
