"""Mutant: the CDC snapshot's next chunk starts *at* the last key of the previous one
(``>=`` for ``>``), so the boundary row of every chunk is published twice as an ``r`` event
(under two event ids: consumers cannot tell it is a duplicate).

Loaded with ``-p tests.mutants.cdc_snapshot_chunk_repeats_boundary_row``; the CDC suite must
report a row snapshotted more than once.
"""

from __future__ import annotations

from prism_testkit.patterns.cdc import CdcConnector


async def _chunk_keys(self: CdcConnector, after: str | None, size: int | None) -> list[str]:
    keys = sorted([k async for k in self.kv.scan(self.config.prefix)])
    if after is not None:
        keys = [k for k in keys if k >= after]  # the bug: >= for >
    return keys if size is None else keys[:size]


CdcConnector._chunk_keys = _chunk_keys  # type: ignore[method-assign]
