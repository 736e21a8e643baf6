"""Keep-latest compaction of a WAL into another log, and replay of a log onto a fresh target."""

from __future__ import annotations

from dataclasses import dataclass, field

from prism_testkit.interfaces import KeyValue, Log, Record

from .codec import HEADER_SOURCE_OFFSET, Mutation
from .errors import WalCorruptEntry


@dataclass(frozen=True)
class CompactionResult:
    read: int  # records of the source below ``upto``
    kept: int  # records written to the output
    upto: int  # source offset the compaction covered (exclusive)
    dropped_corrupt: list[int] = field(default_factory=list)


async def compact_keep_latest(
    log: Log, source: str, output: str, *, upto: int | None = None, page: int = 1000
) -> CompactionResult:
    """Write the latest mutation of every key of ``source`` below ``upto`` (default: its end now)
    to ``output``, in source order, each tagged with its source offset. Deletes stay as
    tombstones so the output also replays correctly over an older copy of the state. Records
    appended during compaction are left for the next run."""
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
                latest[Mutation.decode(record).key] = record  # later offsets replace earlier ones
            except WalCorruptEntry:
                corrupt.append(record.offset)
        offset = records[-1].offset + 1
    kept = sorted(latest.values(), key=lambda r: r.offset)
    for record in kept:
        await log.append(output, record.message.with_headers(**{HEADER_SOURCE_OFFSET: str(record.offset)}))
    return CompactionResult(read, len(kept), end, corrupt)


async def replay(log: Log, source: str, target: KeyValue, *, start: int = 0, page: int = 1000) -> int:
    """Apply every mutation of ``source`` from ``start`` to ``target`` in order (no guard: for
    rebuilding a fresh target, e.g. a migration or checking a compaction). Returns the count."""
    applied, offset = 0, start
    while True:
        records = await log.read(source, offset, limit=page)
        if not records:
            return applied
        for record in records:
            mutation = Mutation.decode(record)
            if mutation.op == "put":
                assert mutation.value is not None
                await target.put(mutation.key, mutation.value)
            else:
                await target.delete(mutation.key)
            applied += 1
        offset = records[-1].offset + 1
