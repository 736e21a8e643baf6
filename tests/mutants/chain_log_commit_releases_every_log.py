"""Mutant: a chained log's commit releases the stages of every record read below the committed
offset, whichever log it came from, so committing one log deletes the claimed object of another
log's record that has not been consumed yet.

Loaded with ``-p tests.mutants.chain_log_commit_releases_every_log``; the claim check suite's
two-log test through the chain must fail.
"""

from __future__ import annotations

from prism_testkit.pattern_sdk.chain import ChainedLog
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ChainedLog,
    "commit",
    "done = [key for key in self._receipts if key[0] == log and key[1] < offset]",
    "done = [key for key in self._receipts if key[1] < offset]  # the bug: every log's records",
)
