"""One lease holder at a time: lease writes recorded in a history, and the checker that judges them.

A lease fenced by an epoch (the outbox relay's, a leader's) promises that while a holder holds
epoch ``e``, nobody else holds ``e`` or an older epoch: a takeover takes a later epoch, and the
holder it replaced can never write its own again. Clocks may disagree (a successor whose clock
runs ahead takes over while the old holder still believes it holds: that overlap is with a later
epoch and allowed; the epoch fences it); what may never happen is a write of the lease by one
holder while another holds the same or a later epoch.

Each write of the lease that landed (a compare-and-set that succeeded, a plain put) is recorded
as a :data:`LEASE` op of process ``lease-<holder>``, its value ``(holder, epoch, start, until)``:
the epoch written, and the interval the writer believes it holds it for, on one clock all
writers share (the test's own time: each writer's skew taken off), its key the lease written
(None: the test's one lease). :func:`one_lease_holder` reports ``lease-overlap`` for every write
that began inside another holder's interval of the same lease and the same or a later epoch,
witnessed by the two writes: two leases (two outboxes' relays) are held at once by design.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import EMPTY, Anomaly, Verdict
from prism_testkit.stateful.history import History, Op, Pair

LEASE = "lease"  # the op name of a lease write that landed
OVERLAP = "lease-overlap"


def record_lease(history: History, holder: str, epoch: int, start: float, until: float, key: str | None = None) -> Op:
    """Record a write of the lease that landed: ``holder`` wrote ``epoch``, believing it holds it
    from ``start`` to ``until`` (on the clock all writers share; ``until <= start``: a release)."""
    return history.invoke(f"lease-{holder}", LEASE, key, (holder, epoch, start, until)).ok()


def one_lease_holder(history: History, lease: str = LEASE) -> Verdict:
    """The ``one-lease-holder`` verdict over the lease writes of ``history`` (see the module
    docstring): ``lease-overlap`` where one holder wrote the lease inside another holder's
    interval of the same or a later epoch; :data:`EMPTY` when nothing wrote the lease."""
    writes = [pair for pair in history.pairs() if pair.f == lease and pair.ok]
    found: dict[str, list[Anomaly]] = {}
    if not writes:
        found[EMPTY] = [Anomaly(EMPTY, "no lease was written: the history checks nothing", History())]
    for position, later in enumerate(writes):
        holder, epoch, start, _ = later.value
        held = _held_then([pair for pair in writes[:position] if pair.key == later.key], holder, epoch, start)
        if held is None:
            continue
        other, other_epoch, since, until = held.value
        which = "the lease" if later.key is None else f"lease {later.key!r}"
        message = (
            f"{holder} wrote {which} of epoch {epoch} at {start:g} (op {later.invoke.index}) while {other} held "
            f"epoch {other_epoch} from {since:g} until {until:g} (op {held.invoke.index})"
        )
        facts = {"lease": later.key, "holders": (other, holder), "epochs": (other_epoch, epoch), "at": start}
        found.setdefault(OVERLAP, []).append(Anomaly(OVERLAP, message, history.subhistory([held, later]), facts))
    holders = {pair.value[0] for pair in writes}
    counts = {"writes": len(writes), "leases": len({pair.key for pair in writes}), "holders": len(holders)}
    counts["epochs"] = len({(pair.key, pair.value[1]) for pair in writes})
    counts |= {name: len(group) for name, group in found.items()}
    return Verdict("one-lease-holder", None, found, {}, counts)


def _held_then(earlier: list[Pair], holder: str, epoch: int, start: float) -> Pair | None:
    """The latest of ``earlier`` writes by another holder, of ``epoch`` or a later one, whose
    interval ``start`` falls in (None: nobody else held such an epoch then)."""
    for pair in reversed(earlier):
        other, other_epoch, since, until = pair.value
        if other != holder and other_epoch >= epoch and since <= start < until:
            return pair
    return None
