"""One event, one verdict (issue 64, item 4): a loss a checker tolerates is not counted again.

Each checker that can see one loss twice (the loss itself, then what it left behind: a live key
without its copy, an offset given again, a target or replica or read model holding what the log
or store lost) is given a hand-built history in which one acknowledged write is lost inside a
declared window (a failover of a backend that does not declare ``survives_failover``). Exactly
one verdict must name it, tolerated, and nothing may be red. The converse holds every time: the
same loss outside a window (the backend declares ``survives_failover``, or nothing failed over)
stays red, so the tolerance is never widened. ``tests/mutants`` breaks each rule (see
``CHECKER_MUTANTS`` in ``tests/test_mutants.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prism_testkit import DeliveryGuarantee, Message
from prism_testkit.patterns.cdc import ChangeEvent, encode
from prism_testkit.patterns.multicast_registry import MulticastResult
from prism_testkit.stateful.checkers import ACKED, FOLLOWS, SLOTS, Anomaly, Verdict, log_anomalies, suite_verdict
from prism_testkit.stateful.checkers.failover import ECHOES, LOST_IN_FAILOVER, tolerate_failover_losses
from prism_testkit.stateful.checkers.wal import LoggedMutation, check_wal
from prism_testkit.stateful.history import History
from prism_testkit.suites._bank import read_model_divergence
from prism_testkit.suites._cdc_checker import Ledger, check, value_of
from prism_testkit.suites._tiered import MISSING, lost_where, missing_copies, read_again, read_anomaly
from prism_testkit.suites.test_stateful_multicast_registry import Multicast, judge_multicasts

ASYNC = "redis-sentinel"  # declares no survives_failover: its failover's losses are tolerated
SYNC = "postgres-ha"  # declares survives_failover: nothing it loses is


def failed_over(history: History, backend: str | None = ASYNC) -> History:
    """``history`` with a failover of ``backend`` by the nemesis, as the runner sees one (None:
    none). A scenario fails over after the write it loses: a failover excuses only the loss of
    what was acknowledged before it ended."""
    if backend is not None:
        history.invoke("nemesis", "failover", backend, {"from": 0}).ok({"to": 1})
    return history


def judged(verdict: Verdict, history: History) -> Verdict:
    """The verdict as the runner judges it, where ``redis-sentinel`` does not promise to
    survive a failover (in the window, or not, when ``history`` failed nothing or ``SYNC`` over)."""
    (runner,) = tolerate_failover_losses([verdict], history, {ASYNC})
    return runner


def names(verdict: Verdict) -> dict[str, int]:
    return {name: len(found) for name, found in verdict.anomalies.items()}


def tolerated_once(verdict: Verdict, what: str) -> None:
    """Nothing red, and exactly one tolerated finding, naming ``what``."""
    assert verdict.valid, verdict.explain()
    found = [a for group in verdict.tolerated.values() for a in group]
    assert len(found) == 1, verdict.explain()
    assert what in found[0].message, verdict.explain()
    assert list(verdict.tolerated) == [LOST_IN_FAILOVER], verdict.explain()


def outside_the_window(make: Any, *reds: str) -> None:
    """The same loss with ``SYNC`` failed over, with no failover at all, and with ``ASYNC``
    failed over before the write (the new primary acknowledged it): ``reds`` are red."""
    for history, fault in ((History(), SYNC), (History(), None), (failed_over(History()), None)):
        verdict, story = make(history, fault)
        runner = judged(verdict, story)
        assert not runner.valid, runner.explain()
        assert set(reds) <= set(runner.anomalies), runner.explain()
        assert not runner.tolerated, runner.explain()


# --- the rule itself -----------------------------------------------------------------------


def _loss_and_echo(
    history: History, fault: str | None = ASYNC, *, also: Sequence[tuple[str, Any]] = ()
) -> tuple[Verdict, History]:
    history.invoke("client", "put", "a", "a:0").ok()
    failed_over(history, fault)
    lost = Anomaly("lost", "key 'a' read None", History(), {"key": "a"})
    echo = Anomaly("missing-copy", "a live key without its copy", History(), {"key": "*", FOLLOWS: (("a", None),)})
    other = [Anomaly("missing-copy", "another", History(), {"key": "*", FOLLOWS: tuple(also)})] if also else []
    return suite_verdict("t", {"lost": [lost], "missing-copy": [echo, *other]}, {"reads": 1}), history


def test_a_finding_that_only_follows_a_tolerated_loss_is_that_loss_again() -> None:
    verdict = judged(*_loss_and_echo(History()))
    tolerated_once(verdict, "key 'a'")
    assert verdict.notes[ECHOES] == ["missing-copy: a live key without its copy"]
    assert "missing-copy" not in verdict.counts, "the count says what was found, once"
    assert verdict.counts["reads"] == 1


def test_a_finding_that_follows_anything_more_stays() -> None:
    """A finding that follows a loss no verdict judged is a finding of its own."""
    verdict = judged(*_loss_and_echo(History(), also=[("a", None), ("b", None)]))
    assert names(verdict) == {"missing-copy": 1}, verdict.explain()
    assert verdict.anomalies["missing-copy"][0].message == "another"


def test_outside_a_declared_window_the_loss_and_what_follows_stay_red() -> None:
    outside_the_window(_loss_and_echo, "lost", "missing-copy")


# --- tiered storage: the red the user saw -------------------------------------------------


def _tiered(
    history: History, fault: str | None = ASYNC, *, copies: int = 0, also_gone: int = 0, read_before: bool = False
) -> tuple[Verdict, History]:
    """Key ``a`` promoted to hot on a Sentinel primary (hot copy written, reference switched,
    cold copy removed), then the primary isolated, killed and failed over from: the reference
    names a cold copy that is gone. The final read finds it missing (``read_before``: so did a
    read before it, nothing written between), after GC one live key and ``copies`` copies
    (``also_gone``: more live keys read fine yet hold no copy)."""
    history.invoke("client", "put", "a", "a:0").ok()
    failed_over(history, fault)
    got, allowed = MISSING, {"a:0"}
    name = read_anomaly(got, allowed, ["a:0"])
    assert name == "lost"
    last_lost: dict[str, str | None] = {}
    found: dict[str, list[Anomaly]] = {name: []}
    for read in ("a read", "the final read")[0 if read_before else 1 :]:
        facts = read_again(last_lost, "a", got)
        last_lost["a"] = got
        found[name].append(Anomaly(name, f"{read}: key 'a' read {got!r}", History(), {"key": "a", **facts}))
    missing = missing_copies(1 + also_gone, {"hot": copies, "cold": 0}, set(), {"a"})
    if missing is not None:
        message, facts = missing
        found["missing-copy"] = [Anomaly("missing-copy", message, History(), {"key": "*", **facts})]
    return suite_verdict("tiered-storage", found, {"reads": 1}), history


def test_tiered_a_key_lost_in_a_failover_is_not_counted_again_as_a_missing_copy() -> None:
    """Issue 64: ``lost-in-failover (allowed): 1`` then ``INVALID (1 missing-copy)`` for key a."""
    verdict, history = _tiered(History())
    assert names(verdict) == {"lost": 1, "missing-copy": 1}, "the checker sees the loss twice before the runner"
    runner = judged(verdict, history)
    tolerated_once(runner, "key 'a'")


def test_tiered_a_loss_read_twice_is_one_loss() -> None:
    verdict, history = _tiered(History(), read_before=True)
    assert names(verdict) == {"lost": 2, "missing-copy": 1}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, "a read: key 'a'")
    assert read_again({"a": None}, "a", MISSING) == {}, "another answer is another finding"


def test_tiered_a_copy_missing_beyond_the_lost_key_stays_red() -> None:
    """The lost key explains one missing copy, not two: the other live key's is a finding."""
    verdict, history = _tiered(History(), also_gone=1)
    runner = judged(verdict, history)
    assert names(runner) == {"missing-copy": 1}, runner.explain()
    assert len(runner.tolerated[LOST_IN_FAILOVER]) == 1


def test_tiered_a_lost_key_that_still_holds_a_copy_is_no_echo() -> None:
    verdict, history = _tiered(History(), copies=2)
    runner = judged(verdict, history)
    assert names(runner) == {"missing-copy": 1}, runner.explain()


def test_tiered_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_tiered, "lost", "missing-copy")
    assert missing_copies(2, {"hot": 1}, {"b"}, set()) is None, "a copy lost on purpose is owed nothing"


# --- the log checker: an offset given again ------------------------------------------------


def _offset_reused(history: History, fault: str | None = ASYNC, *, read_first: bool = False) -> tuple[Verdict, History]:
    """``v`` acknowledged at offset 0 of a Sentinel log, lost in the failover; the writer's next
    append ``w`` is given offset 0 again, and a drain reads it there."""
    history.invoke("w", "append", "l", "v").ok(offset=0)
    if read_first:
        history.invoke("c", "poll", "l").ok(value=((0, "v"),))
    failed_over(history, fault)
    history.invoke("w", "append", "l", "w").ok(offset=0)
    history.invoke("d", "drain", "l").ok(value=((0, "w"),))
    return log_anomalies(history, DeliveryGuarantee.AT_LEAST_ONCE), history


def test_log_an_offset_given_again_after_a_loss_is_that_loss_again() -> None:
    verdict, history = _offset_reused(History())
    assert names(verdict) == {"inconsistent-offsets": 1, "nonmonotonic-send": 1, "lost-write": 1}
    runner = judged(verdict, history)
    tolerated_once(runner, "'v'")
    assert len(runner.notes[ECHOES]) == 2, runner.explain()


def test_log_an_offset_holding_a_value_that_was_read_is_no_echo() -> None:
    """``v`` was read at offset 0 before it went: no loss is judged, so the inconsistency is
    the finding (whatever a failover excuses, it never excuses two values at one offset)."""
    verdict, history = _offset_reused(History(), read_first=True)
    runner = judged(verdict, history)
    assert "inconsistent-offsets" in runner.anomalies, runner.explain()
    assert "nonmonotonic-send" in runner.anomalies, runner.explain()


def test_log_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_offset_reused, "lost-write", "inconsistent-offsets", "nonmonotonic-send")


# --- the WAL checker: the target holds what the log lost -------------------------------------


def _wal(history: History, fault: str | None = ASYNC, *, reused: bool = False) -> tuple[Verdict, History]:
    """``a:0`` acknowledged at offset 0 of a Sentinel log and applied to the target; the
    failover loses it from the log. With ``reused``, the next write ``b:1`` is given offset 0
    again and the applier, already past it, never applies it."""
    history.invoke("writer", "write", "a", "a:0").ok(offset=0)
    failed_over(history, fault)
    logged: dict[int, LoggedMutation] = {}
    final: dict[str, str | None] = {"a": "a:0"}
    if reused:
        history.invoke("writer", "write", "b", "b:1").ok(offset=0)
        logged[0] = LoggedMutation("b", "b:1")
        final["b"] = None
    return check_wal(history, logged, [(0, "a")], set(), final), history


def test_wal_a_lost_write_the_target_holds_is_that_loss_again() -> None:
    verdict, history = _wal(History())
    assert names(verdict) == {"lost": 1, "phantom": 1}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, "a:0")


def test_wal_an_offset_given_again_and_passed_over_is_that_loss_again() -> None:
    verdict, history = _wal(History(), reused=True)
    assert names(verdict) == {"lost": 2, "phantom": 1}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, "a:0")
    assert len(runner.notes[ECHOES]) == 2, runner.explain()


def test_wal_a_phantom_without_its_apply_stays_red() -> None:
    """The target holds a:0 though no applier applied it: not the loss's doing."""
    history = History()
    history.invoke("writer", "write", "a", "a:0").ok(offset=0)
    failed_over(history)
    runner = judged(check_wal(history, {}, [], set(), {"a": "a:0"}), history)
    assert names(runner) == {"phantom": 1}, runner.explain()


def test_wal_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_wal, "lost", "phantom")


# --- the CDC checker: the replica short of what was never delivered -------------------------

ROW = "data/users/a"


def _event(tag: str, key: str) -> Message:
    event = ChangeEvent(f"cap:{tag}:{key}", "c", "users", key, None, value_of(tag, key), 1, tag, 1, 1, 0, 0)
    return encode(event, "cap")


def _cdc(history: History, fault: str | None = ASYNC, *, stray: bool = False) -> tuple[Verdict, History]:
    """``t0`` committed a row; its change event was published to a Sentinel queue and lost
    there in the failover. ``stray``: the replica also differs on a row no loss explains."""
    ledger = Ledger()
    ledger.commit("t0", [(ROW, b"put")], acked=history.invoke("writer", "txn", "t0", 1).ok().index)
    failed_over(history, fault)
    source = {ROW: value_of("t0", ROW)}
    delivered = []
    if stray:
        ledger.commit("t1", [("data/users/b", b"put")])
        source["data/users/b"] = b"changed behind the capture's back"
        delivered.append(_event("t1", "data/users/b"))
    return check(ledger, delivered, source), history


def test_cdc_a_replica_short_of_a_lost_event_is_that_loss_again() -> None:
    verdict, history = _cdc(History())
    assert names(verdict) == {"lost": 1, "diverged": 1}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, ROW)


def test_cdc_a_divergence_beyond_the_lost_event_stays_red() -> None:
    verdict, history = _cdc(History(), stray=True)
    runner = judged(verdict, history)
    assert names(runner) == {"diverged": 1}, runner.explain()


def test_cdc_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_cdc, "lost", "diverged")


# --- event sourcing: the read model holding what the store lost ------------------------------


def _read_model(history: History, fault: str | None = ASYNC, *, more: int = 0) -> tuple[Verdict, History]:
    """Account a opened with 10, then a deposit of 5 acknowledged on a store that fails over
    and loses it, after the projection applied it (view a = 15, total 15, position 3; the store
    holds 2 events). ``more``: the view holds that much more again, which no loss explains."""
    acked = history.invoke("client-a:2", "deposit", "a", ("a:2", 5)).ok().index
    failed_over(history, fault)
    lost = [("a:2", "a", "Deposited", 5)]
    facts = {"key": "a", "value": "a:2", ACKED: acked, SLOTS: ("store",)}  # as the machine's Sent.held
    found: dict[str, list[Anomaly]] = {
        "lost": [Anomaly("lost", "acknowledged deposit a:2 is not in the stream", History(), facts)]
    }
    for message, facts in read_model_divergence({"a": 15 + more}, 15 + more, 3, 2, {"a": 10}, lost):
        found.setdefault("read-model-diverged", []).append(Anomaly("read-model-diverged", message, History(), facts))
    return suite_verdict("event-sourcing", found, {"commands": 3}), history


def test_event_sourcing_a_read_model_holding_a_lost_event_is_that_loss_again() -> None:
    verdict, history = _read_model(History())
    assert names(verdict) == {"lost": 1, "read-model-diverged": 3}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, "a:2")


def test_event_sourcing_a_read_model_beyond_the_lost_events_stays_red() -> None:
    verdict, history = _read_model(History(), more=1)
    runner = judged(verdict, history)
    assert names(runner) == {"read-model-diverged": 3}, runner.explain()


def test_event_sourcing_a_projection_further_ahead_than_the_lost_events_stays_red() -> None:
    found = read_model_divergence({"a": 15}, 15, 4, 2, {"a": 10}, [("a:2", "a", "Deposited", 5)])
    position = [facts for message, facts in found if message.startswith("projection")]
    assert position == [{}], "two events ahead, one lost: the position is a finding of its own"


def test_event_sourcing_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_read_model, "lost", "read-model-diverged")


# --- the multicast registry: one lost registration, many multicasts it misled ---------------


def _registration_lost(
    history: History, fault: str | None = ASYNC, *, restarted: bool = False
) -> tuple[Verdict, History]:
    """i0 registered on a Sentinel registry that then loses the registration; two multicasts
    after it leave i0 out. ``restarted``: a kill of a registry not declared durable instead."""
    history.invoke("client", "register", "i0", None).ok()
    failed_over(history, fault)
    if restarted:
        history.invoke("nemesis", "kill", "redis", {"node": 0}).ok()
    made = []
    for seq in (1, 2):
        handle = history.invoke("client", "multicast", None, seq)
        made.append(Multicast(handle, seq, MulticastResult(f"m{seq}", 0.0, {})))
        handle.ok()
    verdict = judge_multicasts(history, made, {}, registry_may_lose=restarted, queue_may_lose=False)
    return verdict, history


def test_multicast_a_lost_registration_is_judged_once_however_many_multicasts_it_misled() -> None:
    verdict, history = _registration_lost(History())
    assert names(verdict) == {"member-lost": 2}, verdict.explain()
    runner = judged(verdict, history)
    tolerated_once(runner, "multicast 1 missed registered i0")


def test_multicast_a_registration_a_restart_may_lose_is_tolerated_once() -> None:
    """The checker's own window (a restart of a registry not declared durable): once too."""
    verdict, _ = _registration_lost(History(), None, restarted=True)
    assert verdict.valid, verdict.explain()
    assert [a.message for a in verdict.tolerated["member-lost"]] == ["multicast 1 missed registered i0"]


def test_multicast_the_same_loss_outside_a_window_stays_red() -> None:
    outside_the_window(_registration_lost, "member-lost")


# --- tiered storage: which slot lost it (issue 66) -------------------------------------------

TIERS = {"hot": ASYNC, "cold": SYNC, "reference": SYNC}  # hot on Sentinel, the rest promise


def _read_lost(got: str | None, tier: str | None) -> tuple[Verdict, History]:
    """Key ``a`` written, then the hot tier's Sentinel failed over; the final read returns
    ``got`` (:data:`MISSING`: the reference names a copy in ``tier`` that is gone)."""
    history = History()
    history.invoke("client", "put", "a", "a:0").ok()
    failed_over(history, ASYNC)
    name = read_anomaly(got, {"a:0"}, ["a:0"])
    assert name == "lost"
    facts = {"key": "a", **read_again({}, "a", got), **lost_where(got, tier)}
    anomaly = Anomaly(name, f"key 'a' read {got!r}", history.filter(lambda op: op.key == "a"), facts)
    return suite_verdict("tiered-storage", {name: [anomaly]}, {"reads": 1}), history


def test_tiered_a_copy_lost_from_the_failed_over_tier_is_tolerated() -> None:
    verdict, history = _read_lost(MISSING, "hot")
    (runner,) = tolerate_failover_losses([verdict], history, {ASYNC}, TIERS)
    assert runner.valid, runner.explain()


def test_tiered_a_loss_on_the_tiers_that_promise_stays_red() -> None:
    """The copy gone from the cold tier, or the reference gone from the reference store: both
    backends promise to survive a failover, and neither failed over."""
    for got, tier in ((MISSING, "cold"), (None, None)):
        verdict, history = _read_lost(got, tier)
        (runner,) = tolerate_failover_losses([verdict], history, {ASYNC}, TIERS)
        assert names(runner) == {"lost": 1}, runner.explain()
        assert not runner.tolerated, runner.explain()


def test_tiered_a_missing_copy_of_unknown_tier_concerns_every_slot() -> None:
    assert lost_where(MISSING, None) == {}
    assert lost_where("a:0", "hot") == {}
