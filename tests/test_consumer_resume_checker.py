"""The stateful consumer suite's ``consumer-resume`` checker on hand-made runs: what each
consumer instance resumed from and handled, against its saves and the log as it ended."""

from __future__ import annotations

from prism_testkit.stateful.checkers.failover import LOST_IN_FAILOVER, tolerate_failover_losses
from prism_testkit.stateful.history import History
from prism_testkit.suites.test_stateful_consumer import Instance, Save, judge_resumes

LOG = {10: 0, 11: 1, 12: 2}  # value -> offset: three records in the log at the end


def instance(number: int, resumed: int, *handled: int) -> Instance:
    return Instance(number, resumed=resumed, handled=list(handled))


def test_every_record_handled_once_from_the_saved_positions_is_valid() -> None:
    verdict = judge_resumes([instance(0, 0, 10, 11), instance(1, 2, 12)], [Save(0, 2, "ok")], LOG)
    assert verdict.valid, verdict.anomalies


def test_a_record_left_out_after_a_resume_is_a_skip() -> None:
    verdict = judge_resumes([instance(0, 0, 10), instance(1, 2, 12)], [Save(0, 2, "ok")], LOG)
    assert set(verdict.anomalies) == {"skip", "lost"}  # offset 1: never handled, and resumed past


def failed_over(backend: str, appended: tuple[int, ...] = (10, 11), after: tuple[int, ...] = ()) -> History:
    """Appends of ``appended`` acknowledged, the Sentinels fail ``backend`` over, then ``after``."""
    history = History()
    for value in appended:
        history.invoke("producer", "append", "log", value).ok()
    history.invoke("nemesis", "failover-by-cluster", backend, {"from": 1}).ok(value={"to": 2})
    for value in after:
        history.invoke("producer", "append", "log", value).ok()
    return history


def test_records_handled_then_gone_from_the_log_are_lost_not_skipped() -> None:
    """The main job under load (redis-sentinel-wait): appends on a primary cut off from its
    replicas were handled by a consumer, then the Sentinels failed over to a replica that never
    had them, and the log ended empty. The records are lost (what a failover without the promise
    may do: tolerated), not skipped by the consumer, which handled them in order."""
    run = [instance(0, 0), instance(1, 0, 10, 11)]
    verdict = judge_resumes(run, [Save(1, 2, "info")], {})
    assert set(verdict.anomalies) == {"lost"}
    assert verdict.anomalies["lost"][0].data["values"] == [10, 11]
    [excused] = tolerate_failover_losses([verdict], failed_over("redis-sentinel-wait"), ["redis-sentinel-wait"])
    assert excused.valid
    assert set(excused.tolerated) == {LOST_IN_FAILOVER}


def test_records_appended_after_the_failover_then_gone_stay_lost() -> None:
    """The new primary acknowledged 11: its loss is no failover's to excuse."""
    verdict = judge_resumes([instance(0, 0), instance(1, 0, 10, 11)], [Save(1, 2, "info")], {})
    [judged] = tolerate_failover_losses(
        [verdict], failed_over("redis-sentinel-wait", (10,), (11,)), ["redis-sentinel-wait"]
    )
    assert set(judged.anomalies) == {"lost"}, judged.explain()


def test_records_gone_without_a_failover_that_excuses_it_stay_lost() -> None:
    verdict = judge_resumes([instance(0, 0, 10, 11, 12)], [], {10: 0})
    [judged] = tolerate_failover_losses([verdict], failed_over("redis-sentinel-wait"), [])
    assert not judged.valid
    assert set(judged.anomalies) == {"lost"}
