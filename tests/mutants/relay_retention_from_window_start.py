"""Mutant: with ``cleanup='delete'`` the relay counts a window of batches as published when the
window *opened* (its first batch) instead of at its last batch, so records published later in
the same window are truncated before ``retention`` has passed since they were published.

Loaded with ``-p tests.mutants.relay_retention_from_window_start``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "_cleanup",
    "expired = [end for end, _, last in windows if last <= cutoff]",
    "expired = [end for end, opened, _ in windows if opened <= cutoff]",
)
