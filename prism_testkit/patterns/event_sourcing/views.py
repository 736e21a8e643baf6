"""Where projections keep their views and tracking positions, with exactly-once effect.

Two ways, one contract (:class:`ViewStore`): a batch of events is applied so that after any
crash, restarting from :meth:`ViewStore.position` neither applies an event twice nor skips one.

* :class:`TransactionalViews` (a backend with transactions): the view writes of a whole batch
  and the new tracking position commit in one transaction. A crash mid-batch commits nothing.
* :class:`KeyValueViews` (a key-value with compare-and-set, e.g. Redis): every view value
  carries the notification offset that last wrote it, and is written with compare-and-set; a
  replayed event finds its own offset (or a later one) and changes nothing. The tracking
  position is only where replay starts, so it may be written after the views. The limit: a
  handler whose write to one key depends on *another* key it reads sees, on replay, that key
  already updated; keep such handlers on :class:`TransactionalViews`.

Values are JSON. Keys are relative to the store's ``prefix`` (one per projection).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from prism_testkit.interfaces import KeyValue, Transaction, Transactions

from .errors import CorruptStream, ProjectionConflict


class ViewWriter(Protocol):
    """What a projection's handler sees while it applies one event."""

    async def get(self, key: str) -> Any: ...
    async def put(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...


# Applies one event (by notification offset) through the writer it is given.
ApplyOne = Callable[[ViewWriter, int], Awaitable[None]]


class ViewStore(Protocol):
    prefix: str

    async def position(self) -> int:
        """The notification offset below which every event has been applied."""
        ...

    async def apply_batch(self, start: int, offsets: Iterable[int], apply: ApplyOne) -> None:
        """Apply the events at ``offsets`` (consecutive, from ``start``) and move the position
        past them, with exactly-once effect."""
        ...

    async def get(self, key: str) -> Any: ...


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _load(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


class _Keys:
    def __init__(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("a view store needs a non-empty prefix")
        self.prefix = prefix

    @property
    def tracking(self) -> str:
        return f"{self.prefix}/tracking"

    def view(self, key: str) -> str:
        return f"{self.prefix}/view/{key}"


# --- transactional -------------------------------------------------------------------------


class _TxWriter:
    def __init__(self, keys: _Keys, tx: Transaction) -> None:
        self._keys, self._tx = keys, tx

    async def get(self, key: str) -> Any:
        return _load(await self._tx.get(self._keys.view(key)))

    async def put(self, key: str, value: Any) -> None:
        await self._tx.put(self._keys.view(key), _dump(value))

    async def delete(self, key: str) -> None:
        await self._tx.delete(self._keys.view(key))


class TransactionalViews(_Keys):
    """Views and tracking position in one backend with transactions."""

    def __init__(self, transactions: Transactions, kv: KeyValue, prefix: str) -> None:
        super().__init__(prefix)
        self.transactions, self.kv = transactions, kv

    async def position(self) -> int:
        return int(_load(await self.kv.get(self.tracking)) or 0)

    async def apply_batch(self, start: int, offsets: Iterable[int], apply: ApplyOne) -> None:
        async with self.transactions.transaction() as tx:
            # Read in the transaction: a second runner that applied this batch meanwhile makes
            # the commit abort, and one that already moved on is caught here.
            if int(_load(await tx.get(self.tracking)) or 0) != start:
                raise ProjectionConflict(f"projection {self.prefix!r} moved past {start} meanwhile")
            writer = _TxWriter(self, tx)
            end = start
            for offset in offsets:
                await apply(writer, offset)
                end = offset + 1
            await tx.put(self.tracking, _dump(end))

    async def get(self, key: str) -> Any:
        return _load(await self.kv.get(self.view(key)))


# --- key-value with per-key high-water marks -----------------------------------------------


class _StampedWriter:
    """Writes of one event, each stamped with its notification offset and written with CAS."""

    def __init__(self, views: KeyValueViews, offset: int) -> None:
        self._views, self._offset = views, offset
        self._seen: dict[str, bytes | None] = {}  # raw value read, for compare-and-set
        self._done: set[str] = set()  # keys this event already changed in an earlier attempt

    async def _read(self, key: str) -> bytes | None:
        if key not in self._seen:
            raw = await self._views.kv.get(self._views.view(key))
            self._seen[key] = raw
            if raw is not None and _stamp(raw)[0] >= self._offset:
                self._done.add(key)
        return self._seen[key]

    async def get(self, key: str) -> Any:
        raw = await self._read(key)
        return None if raw is None else _stamp(raw)[1]

    async def put(self, key: str, value: Any) -> None:
        await self._write(key, {"at": self._offset, "value": value})

    async def delete(self, key: str) -> None:
        await self._write(key, {"at": self._offset, "value": None})  # a tombstone keeps the mark

    async def _write(self, key: str, stamped: dict[str, Any]) -> None:
        raw = await self._read(key)
        if key in self._done:
            return  # this event's effect on the key is already there
        new = _dump(stamped)
        if not await self._views.kv.compare_and_set(self._views.view(key), raw, new):
            raise ProjectionConflict(f"view key {key!r} of {self._views.prefix!r} changed while it was written")
        self._seen[key] = new


def _stamp(raw: bytes) -> tuple[int, Any]:
    try:
        body = json.loads(raw)
        return int(body["at"]), body["value"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStream(f"a view value has no offset stamp: {exc!r}") from None


class KeyValueViews(_Keys):
    """Views in a key-value store with compare-and-set and no transactions."""

    def __init__(self, kv: KeyValue, prefix: str) -> None:
        super().__init__(prefix)
        self.kv = kv

    async def position(self) -> int:
        return int(_load(await self.kv.get(self.tracking)) or 0)

    async def apply_batch(self, start: int, offsets: Iterable[int], apply: ApplyOne) -> None:
        raw = await self.kv.get(self.tracking)
        if int(_load(raw) or 0) != start:
            raise ProjectionConflict(f"projection {self.prefix!r} moved past {start} meanwhile")
        end = start
        for offset in offsets:
            await apply(_StampedWriter(self, offset), offset)
            end = offset + 1
        if end > start and not await self.kv.compare_and_set(self.tracking, raw, _dump(end)):
            raise ProjectionConflict(f"projection {self.prefix!r} tracking position moved meanwhile")

    async def get(self, key: str) -> Any:
        raw = await self.kv.get(self.view(key))
        return None if raw is None else _stamp(raw)[1]
