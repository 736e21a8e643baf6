"""Seeded misbehaviour within the contract (FoundationDB's BUGGIFY), for simulated examples.

A simulable backend asks :func:`fires` at the points where its contract leaves room: a real
server may answer late, may lose its answer after the effect happened (an unknown outcome),
and may see an ack arrive exactly at the visibility deadline, when the message is due again.
Which kinds are on is a Hypothesis choice of the example (a set, so it shrinks to the kinds a
failure needs), within what ``--prism-buggify`` allows; whether one fires at a given point is
drawn from the example's schedule seed. Outside a simulated example nothing fires.

A compare-and-set that fails although it would have succeeded is not among them: the
key-value contract says a CAS fails only when the value differs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

LATE = "late"  # an answer takes up to LATE_MAX virtual seconds longer
UNKNOWN = "unknown-outcome"  # the effect happened, the answer is lost (TimeoutError)
AT_DEADLINE = "ack-at-deadline"  # an ack or nack lands exactly at its delivery's visibility deadline
KINDS = (LATE, UNKNOWN, AT_DEADLINE)
# Of firing, at each point where a kind that is on may: a settle at the deadline needs a
# settle to happen at all, so it gets the larger share.
CHANCE = {LATE: 0.2, UNKNOWN: 0.1, AT_DEADLINE: 0.5}
LATE_MAX = 0.3  # s


class Buggify:
    def __init__(self, kinds: frozenset[str], seed: int) -> None:
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.fired: dict[str, int] = {}

    def fires(self, kind: str) -> bool:
        if kind not in self.kinds or self.rng.random() >= CHANCE[kind]:
            return False
        self.fired[kind] = self.fired.get(kind, 0) + 1
        return True


_active: Buggify | None = None


def fires(kind: str) -> bool:
    """Whether the backend misbehaves this way here (never outside a simulated example)."""
    return _active is not None and _active.fires(kind)


def heal() -> None:
    """No more misbehaviour in this example (its drain and check run on a healed backend, as
    after every fault); what fired stays counted."""
    if _active is not None:
        _active.kinds = frozenset()


def late_by() -> float:
    """How much later a late answer comes (virtual seconds)."""
    return 0.0 if _active is None else _active.rng.uniform(0.0, LATE_MAX)


def unknown_outcomes() -> int:
    """How many unknown outcomes were injected in this example: the harness treats its client
    errors as unknown outcomes from the first one on, as after any fault."""
    return 0 if _active is None else _active.fired.get(UNKNOWN, 0)


def parse(value: str | None) -> frozenset[str]:
    """``--prism-buggify``: ``all``, ``none`` (the default) or a comma list of kinds."""
    text = (value or "none").strip()
    if text == "all":
        return frozenset(KINDS)
    if text == "none":
        return frozenset()
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        named = ", ".join(map(repr, unknown))  # repr: a value with a newline stays one line
        raise ValueError(f"unknown misbehaviour {named}: give all, none or some of {', '.join(KINDS)}")
    return kinds


@contextmanager
def misbehaving(kinds: frozenset[str], seed: int) -> Iterator[Buggify]:
    global _active
    _active = Buggify(kinds, seed)
    try:
        yield _active
    finally:
        _active = None
