"""The CDC checker across epochs (issue #38): a transaction cut short in an epoch that a later
truncate voided, and superseded by that epoch's snapshot, is no partial transaction; every
other partial transaction still is (the final epoch's, an unvoided epoch's, one the writers'
ledger did not supersede). Transaction ids are per epoch: a promoted standby may reuse them."""

from __future__ import annotations

from prism_testkit import Message
from prism_testkit.patterns.cdc import ChangeEvent, encode
from prism_testkit.suites._cdc_checker import Ledger, check, value_of

PREFIX = "data/"
A, B = f"{PREFIX}users/a", f"{PREFIX}users/b"


def change(key: str, tag: str, txid: str, order: int, total: int, *, epoch: int = 0, position: int = 10) -> Message:
    event = ChangeEvent(
        event_id=f"cap@{epoch}:{position}:{order}",
        op="c",
        table="users",
        key=key,
        before=None,
        after=value_of(tag, key),
        position=position,
        txid=txid,
        total_order=order,
        total=total,
        commit_ts_ms=0,
        ts_ms=0,
        epoch=epoch,
    )
    return encode(event, "cap")


def truncate(epoch: int, position: int = 1) -> Message:
    event = ChangeEvent(f"cap@{epoch}:{position}:t-users", "t", "users", "", None, None, position, f"truncate-{epoch}",
                        0, 0, 0, 0, snapshot=True, epoch=epoch)  # fmt: skip
    return encode(event, "cap")


def row(key: str, tag: str, order: int, total: int, *, epoch: int = 1, position: int = 2) -> Message:
    event = ChangeEvent(f"cap@{epoch}:{position}:{order}", "r", "users", key, None, value_of(tag, key), position,
                        "snapshot-1", order, total, 0, 0, snapshot=True, epoch=epoch)  # fmt: skip
    return encode(event, "cap")


def two_rows(tag: str = "t0") -> tuple[Ledger, dict[str, bytes]]:
    ledger = Ledger()
    ledger.commit(tag, [(A, b"put"), (B, b"put")])
    return ledger, {A: value_of(tag, A), B: value_of(tag, B)}


def cut_short_then_resnapshotted(*, cut_in: int = 0) -> list[Message]:
    """The first of a two-row transaction's events in epoch ``cut_in``, then epoch 1's truncate
    and snapshot of both rows."""
    return [change(A, "t0", "729", 1, 2, epoch=cut_in), truncate(1), row(A, "t0", 1, 2), row(B, "t0", 2, 2)]


def test_a_superseded_transaction_cut_short_in_a_voided_epoch_is_valid() -> None:
    ledger, source = two_rows()
    ledger.superseded({"t0"})
    verdict = check(ledger, cut_short_then_resnapshotted(), source)
    assert verdict.valid, verdict.anomalies
    assert verdict.counts["voided-partial"] == 1


def test_one_cut_short_but_not_superseded_is_still_partial() -> None:
    ledger, source = two_rows()
    verdict = check(ledger, cut_short_then_resnapshotted(), source)
    assert set(verdict.anomalies) == {"partial-transaction", "lost"}
    message = verdict.anomalies["partial-transaction"][0].message
    assert message == "transaction 729 (epoch 0, voided, but not superseded): 1 of 2 events delivered"


def test_one_cut_short_in_the_last_epoch_is_still_partial() -> None:
    ledger, source = two_rows()
    ledger.superseded({"t0"})
    delivered = [truncate(1), row(A, "t0", 1, 2), row(B, "t0", 2, 2), change(A, "t0", "729", 1, 2, epoch=1)]
    verdict = check(ledger, delivered, source)
    assert set(verdict.anomalies) == {"partial-transaction"}
    message = verdict.anomalies["partial-transaction"][0].message
    assert message == "transaction 729 (epoch 1): 1 of 2 events delivered"


def test_one_cut_short_without_a_truncate_after_it_is_still_partial() -> None:
    ledger, source = two_rows()
    ledger.superseded({"t0"})
    delivered = [change(A, "t0", "729", 1, 2), change(B, "t0", "730", 1, 1, position=11)]
    verdict = check(ledger, delivered, source)
    assert "partial-transaction" in verdict.anomalies


def test_a_transaction_id_reused_by_the_new_epoch_is_another_transaction() -> None:
    ledger = Ledger()
    ledger.commit("t0", [(A, b"put")])
    ledger.commit("t1", [(A, b"put"), (B, b"put")])
    delivered = [
        change(A, "t0", "729", 1, 1),
        truncate(1),
        change(A, "t1", "729", 1, 2, epoch=1, position=5),
        change(B, "t1", "729", 2, 2, epoch=1, position=5),
    ]
    verdict = check(ledger, delivered, {A: value_of("t1", A), B: value_of("t1", B)})
    assert verdict.valid, verdict.anomalies
