"""Mutant: sqlite runs with ``synchronous=OFF`` (SQLite never fsyncs) yet keeps declaring
``survives_power_loss=True``: a lying registration.

Loaded with ``-p tests.mutants.sqlite_claims_power_loss_without_fsync``; the power-loss suite
must report the acknowledged writes a power cut took.
"""

from __future__ import annotations

from prism_testkit.backends.sqlite import _Database

_open = _Database._open


def _open_without_fsync(self: _Database) -> None:
    _open(self)
    assert self._conn is not None
    self._conn.execute("PRAGMA synchronous=OFF")


_Database._open = _open_without_fsync  # type: ignore[method-assign]
