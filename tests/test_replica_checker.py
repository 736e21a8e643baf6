"""The per-node checker: each replica's copy against the acknowledged writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit.stateful.checkers.replicas import check_replicas, describe_divergence, diverged, present_sequences

WRITTEN = list(range(1, 11))


@pytest.mark.parametrize(
    ("copy", "where", "runs"),
    [
        (WRITTEN, "", ()),
        (WRITTEN[3:], "prefix", ((0, 2),)),
        (WRITTEN[:4] + WRITTEN[6:], "middle", ((4, 5),)),
        (WRITTEN[:-1], "suffix", ((9, 9),)),
        ([], "all", ((0, 9),)),
        (WRITTEN[1:5] + WRITTEN[6:9], "scattered", ((0, 0), (5, 5), (9, 9))),
    ],
)
def test_a_loss_is_placed_in_the_acknowledged_order(copy: list[int], where: str, runs: tuple) -> None:
    (judged,) = check_replicas(WRITTEN, WRITTEN, {"n1": copy}).copies
    assert judged.where == where
    assert judged.lost_runs == runs
    assert judged.lost == tuple(v for v in WRITTEN if v not in copy)


def test_a_node_that_cannot_be_read_lost_everything_and_says_why() -> None:
    verdict = check_replicas(WRITTEN, WRITTEN, {"n0": WRITTEN, "n2": None})
    assert not verdict.valid
    assert verdict.nodes_missing_data == ("n2",)
    assert "n2: its copy could not be read, lost 10 of 10 (all: 1-10)" in verdict.explain()
    assert verdict.lost_everywhere == ()


def test_unexpected_and_duplicated_values_are_named_and_writes_of_unknown_outcome_are_allowed() -> None:
    attempted = [*WRITTEN, 11]  # 11: failed or of unknown outcome, so a copy may hold it
    verdict = check_replicas(WRITTEN, attempted, {"n0": [*WRITTEN, 11, 3, 99]})
    (judged,) = verdict.copies
    assert judged.unexpected == (99,)
    assert judged.duplicated == (3,)
    assert judged.lost == ()
    assert not verdict.valid


def test_what_every_node_lost_is_lost_from_the_cluster() -> None:
    """Jepsen's corrupt-majority case, as measured on nats-server 2.15.1: every node lacks the
    newest acknowledged message."""
    copies = {"n0": WRITTEN[:-1], "n1": WRITTEN[:-1], "n2": WRITTEN[:-2]}
    verdict = check_replicas(WRITTEN, WRITTEN, copies)
    assert verdict.lost_everywhere == (10,)
    assert verdict.nodes_missing_data == ("n0", "n1", "n2")
    assert [c.where for c in verdict.copies] == ["suffix", "suffix", "suffix"]
    assert "lost on every node: 1" in verdict.explain()


@given(
    written=st.lists(st.integers(), unique=True, max_size=40),
    kept=st.data(),
)
def test_a_copy_loses_exactly_what_it_lacks_and_its_runs_cover_it(written: list[int], kept: st.DataObject) -> None:
    held = [v for v in written if kept.draw(st.booleans())]
    (judged,) = check_replicas(written, written, {"n": held}).copies
    lost = [v for v in written if v not in held]
    assert list(judged.lost) == lost
    covered = [written[i] for first, last in judged.lost_runs for i in range(first, last + 1)]
    assert covered == lost
    assert judged.intact == (not lost)
    assert all(b + 1 < c for (_, b), (c, _) in zip(judged.lost_runs, judged.lost_runs[1:], strict=False)), "runs merge"


def test_a_replica_state_reads_as_the_sequences_it_holds() -> None:
    assert present_sequences(1, 5, deleted=[3]) == [1, 2, 4, 5]
    assert present_sequences(6, 5) == []  # an empty (or purged) stream


def test_streams_whose_node_copies_differ_are_diverged_with_every_nodes_state() -> None:
    same = {"n0": {"a": (1, 5, 5)}, "n1": {"a": (1, 5, 5)}}
    assert diverged(same) == {}
    assert diverged({}) == {}
    behind = {"n0": {"a": (1, 5, 5), "b": (1, 2, 2)}, "n1": {"a": (1, 4, 4), "b": (1, 2, 2)}, "n2": {"b": (1, 2, 2)}}
    assert diverged(behind) == {"a": {"n0": (1, 5, 5), "n1": (1, 4, 4), "n2": None}}
    assert describe_divergence(diverged(behind)) == "a: n0: 1-5 (5 held), n1: 1-4 (4 held), n2: none"


def test_a_node_that_does_not_answer_holds_nothing_anyone_can_read() -> None:
    silent = {"n0": {"a": (1, 5, 5)}, "n1": None}
    assert diverged(silent) == {"a": {"n0": (1, 5, 5), "n1": None}}
