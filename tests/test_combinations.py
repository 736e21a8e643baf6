"""Slot matching and the covering / cross-product expansion."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner, Slot
from prism_testkit.registry.combinations import Expansion, NoCombination, expand
from tests.outoftree.bagstore import BagDriver


def backend(name: str, *caps: str, durable: bool = False, exclusive: bool = False) -> BackendSpec:
    # BagDriver implements only keyvalue; the registry check is not involved here.
    return BackendSpec(
        name=name,
        capabilities=frozenset(Capability(c) for c in caps),
        properties=BackendProperties(durable=durable),
        provisioner=EmbeddedProvisioner(),
        driver=BagDriver,
        exclusive=exclusive,
    )


def test_slot_fits_all_of_and_any_of() -> None:
    queue_only = backend("q", "queue")
    objects_only = backend("o", "objects")
    messaging = Slot.one_of("queue", "log", "pubsub")
    assert messaging.fits(queue_only)
    assert not messaging.fits(objects_only)
    assert Slot.needs("objects").fits(objects_only)
    assert not Slot.needs("objects", "objects.ttl").fits(objects_only)
    assert Slot().fits(objects_only)


def test_durable_slot_rejects_non_durable_instances() -> None:
    assert not Slot.needs("log", durable=True).fits(backend("mem", "log"))
    assert Slot.needs("log", durable=True).fits(backend("disk", "log", durable=True))


def test_sub_capability_implies_its_interface() -> None:
    assert Slot.needs("keyvalue.ttl").all_of == {Capability.KEYVALUE, Capability.KEYVALUE_TTL}


def test_no_combination_names_the_empty_slot_and_what_was_offered() -> None:
    result = expand("claim_check", {"objects": Slot.needs("objects")}, [backend("q", "queue")], Expansion.COVERING)
    assert isinstance(result, NoCombination)
    assert "slot 'objects' needs objects" in result.reason
    assert "selected and available: q" in result.reason


pools = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True)


@given(first=pools, second=pools, exclusive=st.sets(st.sampled_from(["a", "b", "c", "d", "e"])))
def test_covering_puts_every_candidate_in_every_slot(first: list[str], second: list[str], exclusive: set[str]) -> None:
    names = sorted(set(first) | set(second))
    specs = [
        backend(n, *(["queue"] if n in first else []), *(["objects"] if n in second else []), exclusive=n in exclusive)
        for n in names
    ]
    slots = {"messaging": Slot.needs("queue"), "objects": Slot.needs("objects")}
    combos = expand("s", slots, specs, Expansion.COVERING)
    assert not isinstance(combos, NoCombination)
    assert {c["messaging"] for c in combos} == set(first)
    assert {c["objects"] for c in combos} == set(second)
    assert len(combos) == max(len(first), len(second))
    full = expand("s", slots, specs, Expansion.ALL)
    assert not isinstance(full, NoCombination)
    assert {tuple(c.slots.values()) for c in full} == set(itertools.product(first, second))


def test_covering_pairs_different_backends_when_slots_share_candidates() -> None:
    specs = [backend("a", "keyvalue"), backend("b", "keyvalue")]
    combos = expand("pair", {"x": Slot.needs("keyvalue"), "y": Slot.needs("keyvalue")}, specs, Expansion.COVERING)
    assert not isinstance(combos, NoCombination)
    assert [c.id for c in combos] == ["x=a-y=b", "x=b-y=a"]


def test_covering_keeps_exclusive_backends_apart_where_the_rows_allow() -> None:
    """One xdist worker runs an exclusive backend's rows (a cluster's): a row holding two makes
    that worker start the other as well. Rotation alone pairs x1 with x2 here."""
    specs = [backend(n, "keyvalue", exclusive=n.startswith("x")) for n in ("x1", "x2", "a", "b")]
    slots = {"x": Slot.needs("keyvalue"), "y": Slot.needs("keyvalue")}
    plain = expand("pair", slots, [backend(s.name, "keyvalue") for s in specs], Expansion.COVERING)
    combos = expand("pair", slots, specs, Expansion.COVERING)
    assert not isinstance(combos, NoCombination)
    assert not isinstance(plain, NoCombination)
    assert any({"x1", "x2"} <= set(c.slots.values()) for c in plain)  # what the test guards against
    assert not any({"x1", "x2"} <= set(c.slots.values()) for c in combos)
    assert all(c["x"] != c["y"] for c in combos)  # and no backend in two slots of a row
    assert {c["x"] for c in combos} == {c["y"] for c in combos} == {"x1", "x2", "a", "b"}
    again = expand("pair", slots, specs, Expansion.COVERING)
    assert not isinstance(again, NoCombination)
    assert [c.id for c in again] == [c.id for c in combos]  # every worker derives the same rows


@pytest.mark.parametrize("bad", ["teleport", "keyvalue.teleport"])
def test_unknown_capability_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown capability"):
        Slot.needs(bad)
