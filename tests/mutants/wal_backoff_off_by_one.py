"""Mutant: the WAL retry backoff starts one doubling too late (``2 ** attempts`` instead of
``2 ** (attempts - 1)``): the second attempt waits twice ``backoff_initial``.

Loaded with ``-p tests.mutants.wal_backoff_off_by_one``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.config import WalConfig


def _backoff(self: WalConfig, attempts: int) -> float:
    return float(min(self.backoff_max, self.backoff_initial * 2**attempts))  # the bug: off by one


WalConfig.backoff = _backoff  # type: ignore[method-assign]
