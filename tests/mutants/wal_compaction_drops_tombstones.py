"""Mutant: keep-latest compaction drops deletes (keeps only puts), so replaying the compacted
log over an older copy of the state resurrects deleted keys.

Loaded with ``-p tests.mutants.wal_compaction_drops_tombstones``.
"""

from __future__ import annotations

from prism_testkit.interfaces import Log, Record
from prism_testkit.patterns import wal
from prism_testkit.patterns.wal import compaction
from prism_testkit.patterns.wal.codec import HEADER_SOURCE_OFFSET, Mutation
from prism_testkit.patterns.wal.compaction import CompactionResult
from prism_testkit.patterns.wal.errors import WalCorruptEntry


async def _compact(
    log: Log, source: str, output: str, *, upto: int | None = None, page: int = 1000
) -> CompactionResult:
    end = await log.end_offset(source) if upto is None else upto
    latest: dict[str, Record] = {}
    corrupt: list[int] = []
    offset, read = 0, 0
    while offset < end:
        records = [r for r in await log.read(source, offset, limit=min(page, end - offset)) if r.offset < end]
        if not records:
            break
        for record in records:
            read += 1
            try:
                latest[Mutation.decode(record).key] = record
            except WalCorruptEntry:
                corrupt.append(record.offset)
        offset = records[-1].offset + 1
    kept = sorted(latest.values(), key=lambda r: r.offset)
    written = 0
    for record in kept:
        if Mutation.decode(record).op == "delete":
            continue  # the bug: a tombstone is "nothing to keep"
        await log.append(output, record.message.with_headers(**{HEADER_SOURCE_OFFSET: str(record.offset)}))
        written += 1
    return CompactionResult(read, len(kept), end, corrupt)


# The package's name is bound at its import, apart from the submodule's: suites call that one.
compaction.compact_keep_latest = _compact
wal.compact_keep_latest = _compact
