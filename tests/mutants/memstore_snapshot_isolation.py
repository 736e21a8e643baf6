"""Mutant: memstore's transactions run at snapshot isolation while it declares
``transactions`` (serializable): each reads the state as it was when it began, and its commit
aborts only when a key it *writes* changed since (first committer wins). Lost updates are
still refused; write skew commits both sides.

Loaded with ``-p tests.mutants.memstore_snapshot_isolation``; the isolation suite must name
write skew (G2-item).
"""

from __future__ import annotations

from prism_testkit.backends.memstore import _MemTransaction, _Store

_init = _MemTransaction.__init__
_commit = _MemTransaction.commit


def _snapshot_init(self: _MemTransaction, store: _Store) -> None:
    _init(self, store)
    # Entries are replaced, never changed in place, on every write: a copy of the dict is a snapshot.
    self._snapshot = dict(store.kv._entries)  # type: ignore[attr-defined]


async def _snapshot_get(self: _MemTransaction, key: str) -> bytes | None:
    self._check_open()
    self._numbering.touch(key)
    if key in self._writes:
        return self._writes[key]
    entry = self._snapshot.get(key)  # type: ignore[attr-defined]
    return None if entry is None else entry.value


def _first_committer_wins(self: _MemTransaction) -> None:
    snapshot = self._snapshot  # type: ignore[attr-defined]
    # only the written keys are validated, against the snapshot's versions
    self._read_versions = {key: (snapshot[key].version if key in snapshot else 0) for key in self._writes}
    _commit(self)


_MemTransaction.__init__ = _snapshot_init  # type: ignore[method-assign]
_MemTransaction.get = _snapshot_get  # type: ignore[method-assign]
_MemTransaction.commit = _first_committer_wins  # type: ignore[method-assign]
