"""Mutant: a batch process's graceful stop does not wait for the batch in flight (the drain
returns at once, so the stop cancels the loop in the middle of its batch and reports a clean
drain).

Loaded with ``-p tests.mutants.lifecycle_stop_skips_batch``.
"""

from __future__ import annotations

from prism_testkit.pattern_sdk.lifecycle import BatchProcess


async def _drain(self: BatchProcess) -> None:
    return None  # the bug


BatchProcess._drain = _drain  # type: ignore[method-assign]
