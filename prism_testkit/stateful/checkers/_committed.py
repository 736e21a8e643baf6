"""Jepsen's *must have committed* rule, shared by the queue and log checkers: when any value of
a transaction whose outcome is unknown was read, the transaction committed, so its other values
are held to the same rules as acknowledged ones."""

from __future__ import annotations

from typing import Any

from prism_testkit.stateful.history import OpType, Pair


def _committed_by_reads(
    attempts: dict[Any, list[Pair]], reads: dict[Any, list[Pair]] | dict[Any, Pair]
) -> dict[str, Pair]:
    """Transactions proven committed by a read: txn -> the first read of any of its values.
    (A read of a value whose write failed is judged on its own, as an unexpected read.)"""
    proof: dict[str, Pair] = {}
    for ident, tries in attempts.items():
        seen = reads.get(ident)
        if not seen:
            continue
        reader = seen[0] if isinstance(seen, list) else seen
        for attempt in tries:
            if attempt.txn is not None and attempt.type is not OpType.FAIL:
                proof.setdefault(attempt.txn, reader)
    return proof


def _proven(tries: list[Pair], proof: dict[str, Pair]) -> tuple[Pair, Pair] | None:
    """The unknown-outcome attempt whose transaction a read proved committed, with that read."""
    for attempt in tries:
        if attempt.type is OpType.INFO and attempt.txn in proof:
            return attempt, proof[attempt.txn]
    return None
