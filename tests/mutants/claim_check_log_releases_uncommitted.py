"""Mutant: ``ClaimCheckLog.commit`` releases the claim of the record *at* the committed offset
too (``>`` instead of ``>=``), deleting the object of a record the group has not consumed yet.

Loaded with ``-p tests.mutants.claim_check_log_releases_uncommitted``.
"""

from __future__ import annotations

from prism_testkit.interfaces import Record
from prism_testkit.patterns.claim_check import ClaimCheckLog, InvalidClaimReference


async def _commit(self: ClaimCheckLog, log: str, group: str, offset: int, records: list[Record] | None = None) -> None:
    await self.inner.commit(log, group, offset)
    for record in records or ():
        if record.offset > offset:  # the bug: the record at ``offset`` is not committed
            continue
        ref = self._claims.pop((log, record.offset), None)
        if ref is None:
            try:
                ref = self.claim_check.reference(record.message)
            except InvalidClaimReference:
                ref = None
        await self.claim_check._release_quietly(ref)


ClaimCheckLog.commit = _commit  # type: ignore[method-assign]
