"""prism_testkit.stateful.checkers.fan_out (pub/sub) on hand-made histories, one per anomaly and guarantee."""

from __future__ import annotations

from typing import Any

import pytest

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers import EMPTY, Verdict, fan_out
from prism_testkit.stateful.history import History

ALO, EO, AMO = DeliveryGuarantee.AT_LEAST_ONCE, DeliveryGuarantee.EXACTLY_ONCE, DeliveryGuarantee.AT_MOST_ONCE
T = "topic"


def op(h: History, process: str, f: str, value: Any = None, outcome: str = "ok", **done: Any) -> None:
    handle = h.invoke(process, f, T, value)
    if outcome == "ok":
        handle.ok(**done)
    else:
        getattr(handle, outcome)("injected")


def names(verdict: Verdict) -> tuple[set[str], set[str]]:
    return set(verdict.anomalies), set(verdict.tolerated)


def subscribed_then_published(h: History, *values: int, process: str = "s1") -> None:
    op(h, process, "subscribe")
    for value in values:
        op(h, "pub", "publish", value)


@pytest.mark.parametrize("guarantee", [ALO, EO, AMO])
def test_every_message_once_is_valid_under_every_guarantee(guarantee: DeliveryGuarantee) -> None:
    h = History()
    subscribed_then_published(h, 0, 1)
    op(h, "s1", "receive", value=0)
    op(h, "s1", "drain", value=(1,))
    verdict = fan_out(h, guarantee)
    assert verdict.valid, verdict.explain()
    assert not verdict.tolerated, verdict.explain()
    assert verdict.counts["owed"] == 2


@pytest.mark.parametrize(("guarantee", "invalid"), [(AMO, True), (EO, True), (ALO, False)])
def test_a_message_delivered_twice_to_one_subscriber_is_duplicated(guarantee: DeliveryGuarantee, invalid: bool) -> None:
    h = History()
    subscribed_then_published(h, 0)
    op(h, "s1", "receive", value=0)
    op(h, "s1", "drain", value=(0,))
    bad, allowed = names(fan_out(h, guarantee))
    assert ("duplicated" in bad) is invalid
    assert ("duplicated" in allowed) is not invalid


def test_one_message_to_two_subscribers_is_no_duplicate() -> None:
    h = History()
    op(h, "s1", "subscribe")
    op(h, "s2", "subscribe")
    op(h, "pub", "publish", 0)
    op(h, "s1", "drain", value=(0,))
    op(h, "s2", "drain", value=(0,))
    assert fan_out(h, AMO).valid


@pytest.mark.parametrize(("guarantee", "invalid"), [(AMO, False), (EO, True), (ALO, True)])
def test_an_acknowledged_publish_a_drained_subscriber_never_got_is_lost(
    guarantee: DeliveryGuarantee, invalid: bool
) -> None:
    h = History()
    subscribed_then_published(h, 0, 1)
    op(h, "s1", "drain", value=(1,))
    verdict = fan_out(h, guarantee)
    bad, allowed = names(verdict)
    assert ("lost" in bad) is invalid
    assert ("lost" in allowed) is not invalid
    lost = (verdict.anomalies or verdict.tolerated)["lost"][0]
    assert lost.data["value"] == 0
    assert [o.f for o in lost.witness] == ["subscribe", "subscribe", "publish", "publish", "drain", "drain"]


def test_nothing_is_owed_before_the_subscription_was_established() -> None:
    h = History()
    op(h, "pub", "publish", 0)
    subscribing = h.invoke("s1", "subscribe", T)
    op(h, "pub", "publish", 1)  # overlaps the subscribe: not yet owed
    subscribing.ok()
    op(h, "pub", "publish", 2)
    op(h, "s1", "drain", value=(2,))
    verdict = fan_out(h, ALO)
    assert verdict.valid, verdict.explain()
    assert verdict.counts["owed"] == 1


@pytest.mark.parametrize("end", ["close", "drain-info"])
def test_a_subscriber_closed_or_whose_drain_is_unknown_is_owed_nothing(end: str) -> None:
    h = History()
    subscribed_then_published(h, 0)
    if end == "close":
        op(h, "s1", "close")
    else:
        op(h, "s1", "drain", outcome="info")
    assert fan_out(h, EO).valid


@pytest.mark.parametrize("publish", ["never", "failed"])
def test_a_delivery_nobody_published_is_unexpected_under_every_guarantee(publish: str) -> None:
    h = History()
    op(h, "s1", "subscribe")
    if publish == "failed":
        op(h, "pub", "publish", 7, outcome="fail")
    op(h, "s1", "receive", value=7)
    for guarantee in (ALO, EO, AMO):
        assert "unexpected" in fan_out(h, guarantee).anomalies


def test_an_unknown_publish_may_be_delivered_and_is_not_owed() -> None:
    h = History()
    op(h, "s1", "subscribe")
    op(h, "pub", "publish", 0, outcome="info")
    op(h, "pub", "publish", 1, outcome="info")
    op(h, "s1", "drain", value=(0,))
    assert fan_out(h, EO).valid


def test_an_empty_history_judges_nothing() -> None:
    h = History()
    op(h, "s1", "subscribe")
    assert set(fan_out(h, AMO).anomalies) == {EMPTY}
