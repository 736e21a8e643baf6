"""The SQL shared by the relational backends (postgres, sqlite): one table layout, one way to
match a name prefix, one purge, one leftovers inventory, one keyset scan and one poll loop.

Each backend supplies a :class:`SqlDialect` (placeholders, schema, the clock an expiry is
compared with) and runs the statements built here on its own connections, as SQLAlchemy keeps
a dialect's SQL apart from its driver. Both databases compare ``COLLATE "C"`` / default TEXT by
code point, which is what :func:`upper_bound` relies on.
"""

from __future__ import annotations

import asyncio
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

SCAN_BATCH = 256  # keys per keyset-pagination round trip

# (table, name column) pairs purge clears. Group offsets go when either their log or their
# group name carries the prefix.
NAMED: tuple[tuple[str, str], ...] = (
    ("kv", "key"),
    ("queue_messages", "queue"),
    ("log_records", "log"),
    ("log_heads", "log"),
    ("log_groups", "log"),
    ("log_groups", "grp"),
)


def upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (in code point
    order), or ``None`` when there is none (empty prefix, or only maximal code points).

    ``prefix <= name < upper`` is an index-friendly "starts with" that needs no LIKE escaping.
    """
    stripped = prefix.rstrip(chr(sys.maxunicode))
    if not stripped:
        return None
    nxt = ord(stripped[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded; skip to the next real one
        nxt = 0xE000
    return stripped[:-1] + chr(nxt)


@dataclass(frozen=True)
class Inventory:
    """One leftovers query: ``label`` names each row it returns (e.g. ``queue:<name>``)."""

    sql: str
    params: list[Any]
    label: Callable[[Sequence[Any]], str]


class SqlDialect(ABC):
    """What differs in the SQL text of the relational backends."""

    schema: str = ""  # qualifies every table name, e.g. "prism."

    @abstractmethod
    def placeholder(self, n: int) -> str:
        """The ``n``-th (1-based) bound parameter."""

    @abstractmethod
    def live(self, first: int) -> tuple[str, list[Any]]:
        """A clause true for a kv row that has not expired, and its parameters from ``first``."""

    def check_name(self, value: str, what: str) -> str:
        """Refuse a name the database cannot store (PostgreSQL text cannot hold NUL)."""
        return value

    def table(self, name: str) -> str:
        return f"{self.schema}{name}"

    def prefix_clause(self, column: str, prefix: str, first: int = 1) -> tuple[str, list[Any]]:
        """``column`` starts with ``prefix``, as a range, with parameters numbered from ``first``."""
        self.check_name(prefix, "prefix")
        upper = upper_bound(prefix)
        if upper is None:
            return f"{column} >= {self.placeholder(first)}", [prefix]
        return f"({column} >= {self.placeholder(first)} AND {column} < {self.placeholder(first + 1)})", [prefix, upper]

    def scan_batch(self, prefix: str, after: str | None) -> tuple[str, list[Any]]:
        """The next :data:`SCAN_BATCH` live keys under ``prefix`` after ``after``, in key order
        (keyset pagination: each batch resumes after the last key seen)."""
        where, params = self.prefix_clause("key", prefix)
        if after is not None:
            params.append(after)
            where += f" AND key > {self.placeholder(len(params))}"
        live, live_params = self.live(len(params) + 1)
        sql = f"SELECT key FROM {self.table('kv')} WHERE {where} AND {live} ORDER BY key LIMIT {SCAN_BATCH}"
        return sql, [*params, *live_params]

    def purge(self, prefix: str) -> list[tuple[str, list[Any]]]:
        """DELETE statements that remove everything named with ``prefix``, run in one transaction."""
        statements = []
        for table, column in NAMED:
            clause, params = self.prefix_clause(column, prefix)
            statements.append((f"DELETE FROM {self.table(table)} WHERE {clause}", params))
        return statements

    def leftovers(self, prefix: str) -> list[Inventory]:
        """Queries that list what is still stored under ``prefix`` (run them in one snapshot)."""
        key, key_params = self.prefix_clause("key", prefix)
        live, live_params = self.live(len(key_params) + 1)
        queue, queue_params = self.prefix_clause("queue", prefix)
        log, log_params = self.prefix_clause("log", prefix)
        grp, grp_params = self.prefix_clause("grp", prefix, 1 + len(log_params))
        return [
            Inventory(
                f"SELECT key FROM {self.table('kv')} WHERE {key} AND {live}",
                [*key_params, *live_params],
                lambda row: f"kv:{row[0]}",
            ),
            Inventory(
                f"SELECT DISTINCT queue FROM {self.table('queue_messages')} WHERE {queue}",
                queue_params,
                lambda row: f"queue:{row[0]}",
            ),
            Inventory(
                f"SELECT DISTINCT log FROM {self.table('log_records')} WHERE {log}",
                log_params,
                lambda row: f"log:{row[0]}",
            ),
            Inventory(
                f"SELECT log FROM {self.table('log_heads')} WHERE {log}",
                log_params,
                lambda row: f"log-head:{row[0]}",
            ),
            Inventory(
                f"SELECT log, grp FROM {self.table('log_groups')} WHERE {log} OR {grp}",
                [*log_params, *grp_params],
                lambda row: f"group:{row[0]}/{row[1]}",
            ),
        ]


async def poll(attempt: Callable[[], Awaitable[T]], wait: float, interval: float) -> T:
    """``await attempt()`` until it returns something truthy or ``wait`` seconds have passed
    (receives and reads that wait for data: no LISTEN/NOTIFY connection to keep alive)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(wait, 0.0)
    while True:
        result = await attempt()
        remaining = deadline - loop.time()
        if result or remaining <= 0:
            return result
        await asyncio.sleep(min(interval, remaining))
