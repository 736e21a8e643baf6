"""A mutation and the log record it is: the headers every WAL record carries, and the hook that
may rewrite a mutation before it is applied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from prism_testkit.interfaces import Message, Record

from .errors import WalCorruptEntry

HEADER_OP = "wal-op"
HEADER_KEY = "wal-key"
HEADER_MUTATION_ID = "wal-mutation-id"
HEADER_CREATED_AT = "wal-created-at"
HEADER_ERROR = "wal-error"  # dead-letter records: why the last attempt failed
HEADER_ATTEMPTS = "wal-attempts"
HEADER_SOURCE_OFFSET = "wal-source-offset"  # dead-letter and compacted records: offset in the WAL

Op = Literal["put", "delete"]


@dataclass(frozen=True)
class Mutation:
    op: Op
    key: str
    value: bytes | None  # None for a delete
    mutation_id: str = ""
    created_at: float = 0.0

    def message(self) -> Message:
        headers = {
            HEADER_OP: self.op,
            HEADER_KEY: self.key,
            HEADER_MUTATION_ID: self.mutation_id,
            HEADER_CREATED_AT: repr(self.created_at),
        }
        return Message(self.value or b"", headers, key=self.key)

    @classmethod
    def decode(cls, record: Record) -> Mutation:
        headers = record.message.headers
        op, key = headers.get(HEADER_OP), headers.get(HEADER_KEY)
        if op not in ("put", "delete") or not key:
            raise WalCorruptEntry(f"record at offset {record.offset} is not a WAL mutation (op={op!r}, key={key!r})")
        try:
            created = float(headers.get(HEADER_CREATED_AT, "0"))
        except ValueError:
            created = 0.0
        kind: Op = "put" if op == "put" else "delete"
        value = bytes(record.message.payload) if kind == "put" else None
        return cls(kind, key, value, headers.get(HEADER_MUTATION_ID, ""), created)


Transform = Callable[[Mutation], Mutation | Awaitable[Mutation]]
