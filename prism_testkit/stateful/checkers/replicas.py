"""Each replica's own copy against what the clients were told: the per-node half of a queue checker.

The client view (:mod:`.queue`, :mod:`.log`) says whether a reader got every acknowledged write. A
replicated store can pass it and still hold a damaged copy on one node, which the next failover
serves. So, like Jepsen's NATS analysis, each node's copy is read on its own and judged: what it
lost (acknowledged, absent), what it holds that no client ever wrote (``unexpected``), what it
holds twice, and where the loss lies in the acknowledged order: a ``prefix``, the ``middle``, a
``suffix``, ``all`` of it, or ``scattered`` runs. A node whose copy cannot be read at all (it does
not report the stream) has lost everything.

The values are whatever identifies a write in the copy: payloads, or stream sequence numbers
when the acknowledgement carried one.

Where only each node's summary of a stream can be read (its first and last sequence and its
message count, as a JetStream node's monitoring endpoint gives them), :func:`diverged` says
which streams the nodes disagree on once every fault is healed: replicas that stay apart have
lost or invented data on some node, whichever copy a client is served next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

PREFIX, MIDDLE, SUFFIX, ALL, SCATTERED = "prefix", "middle", "suffix", "all", "scattered"


@dataclass(frozen=True)
class ReplicaCopy:
    """One node's copy, judged. ``lost_runs`` are (first, last) positions, inclusive, in the
    acknowledged order, so "97-99 of 200" reads as the three writes before the last."""

    node: str
    acknowledged: int
    lost: tuple[Hashable, ...]
    unexpected: tuple[Hashable, ...]
    duplicated: tuple[Hashable, ...]
    lost_runs: tuple[tuple[int, int], ...]
    readable: bool = True

    @property
    def where(self) -> str:
        """Where the loss lies: "" (none), prefix, middle, suffix, all or scattered."""
        if not self.lost_runs:
            return ""
        if len(self.lost_runs) > 1:
            return SCATTERED
        first, last = self.lost_runs[0]
        at_start, at_end = first == 0, last == self.acknowledged - 1
        return ALL if at_start and at_end else PREFIX if at_start else SUFFIX if at_end else MIDDLE

    @property
    def intact(self) -> bool:
        return not (self.lost or self.unexpected or self.duplicated)

    def describe(self) -> str:
        if self.intact:
            return f"{self.node}: intact ({self.acknowledged} acknowledged)"
        parts = []
        if not self.readable:
            parts.append("its copy could not be read")
        if self.lost:
            runs = ", ".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in self.lost_runs)
            parts.append(f"lost {len(self.lost)} of {self.acknowledged} ({self.where}: {runs})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected")
        if self.duplicated:
            parts.append(f"{len(self.duplicated)} duplicated")
        return f"{self.node}: " + ", ".join(parts)


@dataclass(frozen=True)
class ReplicaVerdict:
    copies: tuple[ReplicaCopy, ...]

    @property
    def valid(self) -> bool:
        return all(copy.intact for copy in self.copies)

    @property
    def nodes_missing_data(self) -> tuple[str, ...]:
        return tuple(copy.node for copy in self.copies if copy.lost)

    @property
    def lost_everywhere(self) -> tuple[Hashable, ...]:
        """Acknowledged writes no node holds: gone from the cluster, not merely from a replica."""
        if not self.copies:
            return ()
        missing = set(self.copies[0].lost).intersection(*(set(copy.lost) for copy in self.copies[1:]))
        return tuple(value for value in self.copies[0].lost if value in missing)

    def explain(self) -> str:
        lines = [copy.describe() for copy in self.copies]
        if everywhere := self.lost_everywhere:
            lines.append(f"lost on every node: {len(everywhere)}")
        return "\n".join(lines)


def check_replicas(
    acknowledged: Sequence[Hashable],
    attempted: Iterable[Hashable],
    copies: Mapping[str, Sequence[Hashable] | None],
) -> ReplicaVerdict:
    """Judge each node's copy (``None``: unreadable) against the ``acknowledged`` writes, in the
    order they were acknowledged, and every write ``attempted`` (acknowledged, failed or of
    unknown outcome: a copy may hold those, but nothing else)."""
    order = list(dict.fromkeys(acknowledged))
    allowed = set(order).union(attempted)
    judged = []
    for node, copy in copies.items():
        held = Counter(copy or ())
        missing = [i for i, value in enumerate(order) if value not in held]
        judged.append(
            ReplicaCopy(
                node=node,
                acknowledged=len(order),
                lost=tuple(order[i] for i in missing),
                unexpected=tuple(value for value in held if value not in allowed),
                duplicated=tuple(value for value, n in held.items() if n > 1),
                lost_runs=_runs(missing),
                readable=copy is not None,
            )
        )
    return ReplicaVerdict(tuple(judged))


def _runs(positions: list[int]) -> tuple[tuple[int, int], ...]:
    """Consecutive positions as (first, last) pairs: [0, 1, 5] -> ((0, 1), (5, 5))."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and runs[-1][1] == position - 1:
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    return tuple(runs)


def present_sequences(first: int, last: int, deleted: Iterable[int] = ()) -> list[int]:
    """The sequence numbers a stream replica holds, from its state: ``first`` to ``last``
    (an empty stream reports first = last + 1) without the ``deleted`` ones."""
    gone = set(deleted)
    return [seq for seq in range(first, last + 1) if seq not in gone]


StreamState = tuple[int, int, int]  # first sequence, last sequence, messages held


def diverged(states: Mapping[str, Mapping[str, StreamState] | None]) -> dict[str, dict[str, StreamState | None]]:
    """The streams whose copies differ between the nodes of ``states`` (node -> stream -> its
    state; ``None``: the node did not answer), each with every node's state (``None``: the node
    does not hold it). A node that did not answer holds nothing anyone can read."""
    streams = sorted({name for held in states.values() if held for name in held})
    found: dict[str, dict[str, StreamState | None]] = {}
    for stream in streams:
        copies = {node: (held or {}).get(stream) for node, held in states.items()}
        if len(set(copies.values())) > 1:
            found[stream] = copies
    return found


def describe_divergence(found: Mapping[str, Mapping[str, StreamState | None]]) -> str:
    """One line per stream: each node's first-last sequence and count, or that it lacks it."""
    lines = []
    for stream, copies in found.items():
        each = ", ".join(
            f"{node}: none" if state is None else f"{node}: {state[0]}-{state[1]} ({state[2]} held)"
            for node, state in copies.items()
        )
        lines.append(f"{stream}: {each}")
    return "\n".join(lines)
