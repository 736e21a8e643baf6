"""Rows a replicated registration leaves to its single-node twin.

A replicated registration (``BackendSpec.twin`` names its single-node twin, such as
``jetstream-r3`` -> ``jetstream``) runs the twin's driver code. Its rows prove something of
their own only where replication can change the outcome:

* the suites of :func:`replication_can_change`: every stateful fault suite (``stateful_*``),
  failover, restart (crash durability), power loss and capabilities;
* per interface, the contract suite's round trip (:data:`ROUND_TRIPS`): the first test that
  writes the interface's data (a value, a message, a record, an object, a transaction's
  writes, a change) and reads it back, which proves the client reaches the cluster through its
  own connection path (multi-host URL, Sentinel discovery, cluster URLs).

In the other suites a replicated backend is *covered* in a slot when its twin is selected and
available in this run and fits that slot. The rows that run are then the covering set of the
slots' candidates without the covered backends (so every other backend still appears in every
slot it fits, next to backends that run: none loses coverage because it shared a row with a
cluster), and the rows of the full covering set that hold a covered backend are collected and
skipped as "covered by <twin>". A replicated backend whose twin is not selected, unavailable or
not fitting keeps its rows. ``--prism-twins=run`` (or ``--prism-combinations=all``) runs every
row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from prism_testkit.registry.backend_spec import BackendSpec
from prism_testkit.registry.combinations import Combination, Expansion, NoCombination, expand
from prism_testkit.registry.slots import Slot

# Suites whose outcome replication can change, besides the stateful fault suites.
REPLICATION_SUITES = frozenset(
    {
        "failover",
        "restart",
        "power_loss",
        "capabilities",
        "replica_lag",
        "leader_change",
        "damaged_leader",
        "node_power_cut",
        "snapshot_corruption",
    }
)
STATEFUL_PREFIX = "stateful_"

# Per interface contract suite (named after its interface), its round trip.
ROUND_TRIPS: dict[str, str] = {
    "keyvalue": "test_put_then_get",
    "queue": "test_send_then_receive_preserves_the_message",
    "log": "test_offsets_start_at_zero_and_are_consecutive",
    "pubsub": "test_subscriber_receives_published_message",
    "objects": "test_put_get_info_exists",
    "transactions": "test_commit_makes_every_write_visible",
    "changefeed": "test_changes_arrive_whole_in_commit_order_with_before_images",
}


def replication_can_change(suite: str) -> bool:
    return suite.startswith(STATEFUL_PREFIX) or suite in REPLICATION_SUITES


def runs_everywhere(suite: str, test: str) -> bool:
    """Whether test function ``test`` of ``suite`` runs on replicated backends too."""
    return replication_can_change(suite) or ROUND_TRIPS.get(suite) == test


def backends_covered_by_twins(slots: Mapping[str, Slot], available: Sequence[BackendSpec]) -> dict[str, dict[str, str]]:
    """Per slot, the replicated backends (-> their twin) whose rows in it the twin covers: the
    twin is selected and available in this run and fits the slot. Any other replicated backend
    (twin not selected, unavailable, or not fitting) keeps its rows."""
    by_name = {spec.name: spec for spec in available}
    found: dict[str, dict[str, str]] = {}
    for name, slot in slots.items():
        for spec in available:
            twin = by_name.get(spec.twin) if spec.twin is not None else None
            if twin is not None and slot.fits(spec) and slot.fits(twin):
                found.setdefault(name, {})[spec.name] = twin.name
    return found


def expand_with_twins(
    suite: str, slots: Mapping[str, Slot], available: Sequence[BackendSpec], how: Expansion
) -> list[Combination] | NoCombination:
    """The rows of ``suite``, with its covered rows marked (``covered_by``).

    The rows that run are the covering set of the slots' candidates without the covered
    replicated backends, so every other backend still appears in every slot it fits (and each
    twin does, in the slots of the backends it covers). The expansion's rows that hold a covered
    backend follow, marked: they are collected and skipped, so the run says what it left out.
    Deterministic: every xdist worker derives the same rows."""
    full = expand(suite, slots, available, how)
    left_out = backends_covered_by_twins(slots, available)
    if isinstance(full, NoCombination) or not left_out:
        return full
    running = expand(suite, slots, available, how, leave_out=left_out)
    if isinstance(running, NoCombination):  # cannot happen (a twin fits each slot it covers): be safe
        return full
    covered = []
    for combo in full:
        twins = {b: left_out[slot][b] for slot, b in combo.assignment if b in left_out.get(slot, {})}
        if twins:
            covered.append(replace(combo, covered_by=tuple(sorted(twins.items()))))
    return [*running, *covered]


def reason(covered_by: Sequence[tuple[str, str]]) -> str:
    """The skip reason of a covered row's test: what covers it and how to run it anyway."""
    twins = ", ".join(dict.fromkeys(twin for _, twin in covered_by))
    replicated = ", ".join(backend for backend, _ in covered_by)
    return (
        f"covered by {twins} (the single-node twin of {replicated}, run in this run; "
        f"--prism-twins=run runs this row too)"
    )
