"""What every checker returns and the rules all of them share: :class:`Verdict` and
:class:`Anomaly`, what a delivery guarantee tolerates (:func:`tolerated`), how a loss is named
(:func:`loss_id`, :func:`follows` and the ``data`` keys :data:`FOLLOWS`, :data:`ACKED`,
:data:`SLOTS`), an empty history (:data:`EMPTY`), and :func:`suite_verdict` for a check that
lives beside its suite. ``_Findings`` collects a running checker's anomalies and splits them by
the guarantee."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.history import History, Pair

LOSS = frozenset({"lost", "lost-write", "unseen"})
# An anomaly's ``data[FOLLOWS]``: the losses, as :func:`loss_id`, it is wholly a consequence of
# (a copy count, an offset reused, a replica or read model short of them). Where every one of
# them is tolerated, it is that loss again, not a second finding (one event, one verdict: see
# :func:`prism_testkit.stateful.checkers.failover.tolerate_failover_losses`).
FOLLOWS = "follows"
# A loss anomaly's ``data[ACKED]``: the history index from which what it says is gone was held
# (the latest acknowledgement among the lost writes; of a write whose outcome is unknown but
# proven, its invoke). A failover excuses the loss only if that came before the failover ended.
# Without it, the write is looked up by the loss's ``key`` and ``value`` facts in its witness.
ACKED = "acked"
# A loss anomaly's ``data[SLOTS]``: the suite slots whose backends held the lost write (absent:
# any of the test's slots). A failover excuses the loss only if it failed one of them over.
SLOTS = "slots"
LossId = tuple[Hashable, Hashable]  # (key, value) of a loss; value None: the key's latest value
DUPLICATION = frozenset({"duplicated", "duplicate"})
# Jepsen allows it by default too: one transaction's appends may interleave with others'.
INFORMATIONAL = frozenset({"int-send-skip"})
EMPTY = "empty-history"


def judged_nothing(verdicts: Sequence[Verdict]) -> bool:
    """Every verdict says only that its history wrote and read nothing (:data:`EMPTY`)."""
    return bool(verdicts) and all(set(v.anomalies) == {EMPTY} for v in verdicts)


def tolerated(name: str, guarantee: DeliveryGuarantee | None) -> bool:
    """Whether ``guarantee`` allows anomaly ``name`` (such anomalies do not invalidate)."""
    if name in INFORMATIONAL:
        return True
    if name in LOSS:
        return guarantee is DeliveryGuarantee.AT_MOST_ONCE
    if name in DUPLICATION:
        return guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    return False


@dataclass(frozen=True)
class Anomaly:
    name: str  # Jepsen's name: lost, duplicated, lost-write, poll-skip...
    message: str  # one line, for humans
    witness: History  # the smallest sub-history that shows it
    data: dict[str, Any] = field(default_factory=dict)  # the facts: key, value, offsets...


def loss_id(anomaly: Anomaly) -> LossId:
    """What a loss anomaly says is gone: its ``key`` and ``value`` facts."""
    return (anomaly.data.get("key"), anomaly.data.get("value"))


def follows(anomaly: Anomaly) -> frozenset[LossId]:
    """The losses ``anomaly`` is wholly a consequence of (empty: a finding of its own)."""
    return frozenset(anomaly.data.get(FOLLOWS, ()))


@dataclass(frozen=True)
class Verdict:
    """A checker's judgement. ``anomalies`` holds what the guarantee forbids (non-empty means
    invalid); ``tolerated`` what was found but is allowed; ``counts`` the numbers (attempts,
    acknowledgements, and one entry per anomaly name found); ``notes`` values worth listing
    that are not anomalies (e.g. ``recovered``)."""

    checker: str
    guarantee: DeliveryGuarantee | None
    anomalies: dict[str, list[Anomaly]]
    tolerated: dict[str, list[Anomaly]]
    counts: dict[str, int]
    notes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.anomalies

    @property
    def witness(self) -> History | None:
        """The smallest witness of any invalidating anomaly (``None`` when valid)."""
        found = [a for group in self.anomalies.values() for a in group]
        return min(found, key=lambda a: len(a.witness)).witness if found else None

    def witnesses(self) -> dict[str, History]:
        """The smallest witness per invalidating anomaly name."""
        return {name: min(group, key=lambda a: len(a.witness)).witness for name, group in self.anomalies.items()}

    def explain(self, per_anomaly: int = 3) -> str:
        """A readable report: the verdict, the counts, and up to ``per_anomaly`` witnesses of each anomaly."""
        title = self.checker + (f" ({self.guarantee.value})" if self.guarantee else "")
        if self.valid:
            lines = [f"{title}: valid"]
        else:
            summary = ", ".join(f"{len(group)} {name}" for name, group in self.anomalies.items())
            lines = [f"{title}: INVALID: {summary}"]
        lines.append("counts: " + " ".join(f"{name}={n}" for name, n in self.counts.items()))
        for name, values in self.notes.items():
            lines.append(f"{name}: {_listing(values)}")
        allowed = f" (allowed by {self.guarantee.value})" if self.guarantee else " (allowed)"
        for groups in (self.anomalies, self.tolerated):
            for name, group in groups.items():
                heading = "" if groups is self.anomalies else " (reported only)" if name in INFORMATIONAL else allowed
                lines.append(f"{name}{heading}: {len(group)}")
                for anomaly in group[:per_anomaly]:
                    lines.append(f"  - {anomaly.message}")
                    lines.extend("      " + line for line in anomaly.witness.render().splitlines())
                if len(group) > per_anomaly:
                    lines.append(f"  ... and {len(group) - per_anomaly} more")
        return "\n".join(lines)

    def assert_valid(self) -> None:
        """Raise ``AssertionError`` with :meth:`explain` when invalid."""
        if not self.valid:
            raise AssertionError(self.explain())


class _Findings:
    """Collects anomalies while a checker runs, then splits them by the guarantee."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.found: dict[str, list[Anomaly]] = {}

    def add(self, name: str, message: str, witness: Iterable[Pair | None], **data: Any) -> None:
        pairs = [p for p in witness if p is not None]
        anomaly = Anomaly(name, message, self.history.subhistory(pairs), data)
        self.found.setdefault(name, []).append(anomaly)

    def verdict(
        self,
        checker: str,
        guarantee: DeliveryGuarantee | None,
        counts: dict[str, int],
        notes: dict[str, list[Any]] | None = None,
    ) -> Verdict:
        bad = {n: g for n, g in self.found.items() if not tolerated(n, guarantee)}
        allowed = {n: g for n, g in self.found.items() if tolerated(n, guarantee)}
        counts = counts | {name: len(group) for name, group in self.found.items()}
        return Verdict(checker, guarantee, bad, allowed, counts, {k: v for k, v in (notes or {}).items() if v})


def _judged_nothing(findings: _Findings, what: str) -> None:
    findings.add(EMPTY, f"nothing was {what}: the history checks nothing", [])


def _listing(values: list[Any], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def _ops(*pairs: Pair) -> str:
    return ", ".join(dict.fromkeys(str(p.invoke.index) for p in pairs))


# A queue or topic element: (queue or topic key, value).
Ident = tuple[str | None, Hashable]  # (queue, value)


def suite_verdict(checker: str, found: dict[str, list[Anomaly]], counts: dict[str, int]) -> Verdict:
    """The verdict of a workload-specific check that lives beside its suite (as Jepsen keeps
    workload checkers beside their workload): every non-empty group of ``found`` invalidates."""
    anomalies = {name: group for name, group in found.items() if group}
    return Verdict(checker, None, anomalies, {}, counts | {n: len(g) for n, g in anomalies.items()})
