"""A decoder of PostgreSQL's built-in ``pgoutput`` logical replication messages (protocol
version 1, text-format columns) into :class:`ChangeSet` values of the ``prism.kv`` table.

Only what the change feed needs: Begin, Commit, Relation, Insert, Update, Delete and logical
decoding Messages (the marks). Columns are found by name through the Relation message, so a
column added to the table later does not shift them. A row whose ``expires_at`` is
``-infinity`` is the driver's never-live lock placeholder, and a row already expired at commit
time was absent for every reader: both count as "no row".
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prism_testkit.interfaces import ChangeSet, KeyChange

PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 in unix milliseconds: pgoutput timestamps count from it
TABLE = ("prism", "kv")


class DecodeError(ValueError):
    """A pgoutput message this decoder cannot read (a protocol it does not know)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise DecodeError("pgoutput message ended early")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def byte(self) -> bytes:
        return self.take(1)

    def int8(self) -> int:
        return int(struct.unpack("!b", self.take(1))[0])

    def int16(self) -> int:
        return int(struct.unpack("!h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!i", self.take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack("!q", self.take(8))[0])

    def cstring(self) -> str:
        end = self.data.index(b"\x00", self.pos)
        text = self.data[self.pos : end].decode()
        self.pos = end + 1
        return text


Row = dict[str, str | None]


def _tuple(reader: _Reader, columns: list[str], old: Row | None = None) -> Row:
    row: Row = {}
    for index in range(reader.int16()):
        kind = reader.byte()
        name = columns[index] if index < len(columns) else f"#{index}"
        if kind == b"n":
            row[name] = None
        elif kind == b"u":  # unchanged TOASTed value: the old image has it (REPLICA IDENTITY FULL)
            row[name] = None if old is None else old.get(name)
        elif kind == b"t":
            row[name] = reader.take(reader.int32()).decode()
        else:
            raise DecodeError(f"unknown tuple column kind {kind!r}")
    return row


def _bytea(text: str) -> bytes:
    if not text.startswith("\\x"):
        raise DecodeError("bytea must arrive in hex format (bytea_output = hex)")
    return bytes.fromhex(text[2:])


def _timestamp_ms(text: str) -> float:
    value = text.replace(" ", "T", 1)
    if value.endswith(("+00", "-00")):
        value += ":00"
    return datetime.fromisoformat(value).astimezone(UTC).timestamp() * 1000


def live_value(row: Row | None, commit_ts_ms: int) -> bytes | None:
    """The value readers saw in ``row`` at commit time (None: no row, placeholder or expired)."""
    if row is None or row.get("value") is None:
        return None
    expires = row.get("expires_at")
    if expires == "-infinity":
        return None
    if expires is not None and expires != "infinity" and _timestamp_ms(expires) <= commit_ts_ms:
        return None
    return _bytea(str(row["value"]))


@dataclass
class _Open:
    xid: int
    commit_ts_ms: int
    changes: list[KeyChange] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)


@dataclass
class Decoder:
    """Feed it the ``data`` of each row of ``pg_logical_slot_peek_binary_changes`` in order;
    :attr:`done` collects every complete transaction that has changes or marks for ``mark_prefix``."""

    mark_prefix: str
    relations: dict[int, tuple[tuple[str, str], list[str]]] = field(default_factory=dict)
    done: list[ChangeSet] = field(default_factory=list)
    _open: _Open | None = None

    def feed_all(self, messages: Iterable[bytes]) -> list[ChangeSet]:
        for message in messages:
            self.feed(bytes(message))
        return self.done

    def feed(self, message: bytes) -> None:
        reader = _Reader(message)
        kind = reader.byte()
        if kind == b"B":
            reader.int64()  # final LSN; the commit carries the end position we confirm
            ts_ms = reader.int64() // 1000 + PG_EPOCH_MS
            self._open = _Open(reader.int32(), ts_ms)
        elif kind == b"C":
            reader.int8()
            reader.int64()  # commit LSN
            end_lsn = reader.int64()
            tx, self._open = self._require_open(), None
            if tx.changes or tx.marks:
                self.done.append(ChangeSet(end_lsn, str(tx.xid), tx.commit_ts_ms, tuple(tx.changes), tuple(tx.marks)))
        elif kind == b"R":
            relid = reader.int32()
            schema, name = reader.cstring(), reader.cstring()
            reader.int8()  # replica identity setting
            columns = []
            for _ in range(reader.int16()):
                reader.int8()
                columns.append(reader.cstring())
                reader.int32()
                reader.int32()
            self.relations[relid] = ((schema, name), columns)
        elif kind in (b"I", b"U", b"D"):
            self._row_change(kind, reader)
        elif kind == b"M":
            transactional = reader.int8() & 1
            reader.int64()
            prefix = reader.cstring()
            content = reader.take(reader.int32()).decode()
            if transactional and prefix == self.mark_prefix:
                self._require_open().marks.append(content)
        elif kind in (b"O", b"Y", b"T"):
            pass  # origin, type and truncate messages: the driver never truncates prism.kv
        else:
            raise DecodeError(f"unknown pgoutput message {kind!r}")

    def _require_open(self) -> _Open:
        if self._open is None:
            raise DecodeError("pgoutput change outside a transaction")
        return self._open

    def _row_change(self, kind: bytes, reader: _Reader) -> None:
        tx = self._require_open()
        relation = self.relations.get(reader.int32())
        if relation is None:
            raise DecodeError("pgoutput change of a relation that was never described")
        table, columns = relation
        old: Row | None = None
        new: Row | None = None
        marker = reader.byte()
        if marker in (b"K", b"O"):
            old = _tuple(reader, columns)
            if kind == b"U":
                marker = reader.byte()
        if marker == b"N":
            new = _tuple(reader, columns, old)
        if table != TABLE:
            return
        row = new if new is not None else old
        key = None if row is None else row.get("key")
        if key is None:
            raise DecodeError("prism.kv change without its key (is REPLICA IDENTITY FULL set?)")
        before = live_value(old, tx.commit_ts_ms)
        after = live_value(new, tx.commit_ts_ms)
        if before is None and after is None:
            return  # a lock placeholder written or removed: no reader ever saw it
        tx.changes.append(KeyChange(key, before, after))
