"""prism_testkit.stateful.history: recording, pairing, sub-histories, JSON lines and rendering."""

from __future__ import annotations

import asyncio
import io
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_testkit.errors import (
    ConnectionLost,
    DeliveryNotFound,
    NotSupported,
    PayloadTooLarge,
    TransactionAborted,
)
from prism_testkit.stateful.history import History, Op, OpType, Pair, freeze


def ticking_history() -> History:
    clock = itertools.count(1000, 10)
    return History(clock=lambda: next(clock))


# --- recorder --------------------------------------------------------------------------------


def test_invoke_and_completions_record_ops_with_increasing_index_and_time() -> None:
    h = ticking_history()
    enq = h.invoke(1, "enqueue", key="q", value=7)
    deq = h.invoke(2, "dequeue", key="q")
    enq.ok()
    deq.ok(value=7)
    assert [(op.index, op.process, op.type, op.f, op.key, op.value) for op in h] == [
        (0, 1, OpType.INVOKE, "enqueue", "q", 7),
        (1, 2, OpType.INVOKE, "dequeue", "q", None),
        (2, 1, OpType.OK, "enqueue", "q", 7),  # completion inherits the invoke's value
        (3, 2, OpType.OK, "dequeue", "q", 7),
    ]
    assert [op.time for op in h] == [1000, 1010, 1020, 1030]


def test_completions_carry_offset_and_error_descriptions() -> None:
    h = History()
    assert h.invoke("p", "append", "log", "a").ok(offset=4).offset == 4
    failed = h.invoke("p", "put", "k", 1).fail(PayloadTooLarge(10, 5))
    assert failed.type is OpType.FAIL
    assert failed.error == "PayloadTooLarge: payload of 10 bytes exceeds the maximum of 5 bytes"
    unknown = h.invoke("p", "get", "k").info(TimeoutError())
    assert (unknown.type, unknown.error) == (OpType.INFO, "TimeoutError")


def test_error_descriptions_are_redacted() -> None:
    h = History()
    op = h.invoke("p", "get", "k").info(ConnectionLost("lost redis://user:hunter2@host:6379"))
    assert "hunter2" not in (op.error or "")
    assert "redis://user:***@host" in (op.error or "")


def test_a_process_has_one_operation_in_flight() -> None:
    h = History()
    h.invoke("c1", "dequeue", "q")
    with pytest.raises(ValueError, match="already has operation 0"):
        h.invoke("c1", "dequeue", "q")
    h.invoke("c2", "dequeue", "q")  # another process may overlap


def test_a_process_is_free_again_after_any_completion() -> None:
    h = History()
    h.invoke("c", "get", "k").info("timeout")
    h.invoke("c", "get", "k").fail("nope")
    h.invoke("c", "get", "k").ok(value=1)
    assert len(h) == 6


def test_completing_twice_is_an_error() -> None:
    h = History()
    handle = h.invoke("p", "put", "k", 1)
    handle.ok()
    with pytest.raises(RuntimeError, match="already completed"):
        handle.fail()


def test_lists_are_stored_as_tuples() -> None:
    h = History()
    op = h.invoke("p", "drain", "q").ok(value=[1, [2, 3]])
    assert op.value == (1, (2, 3))
    assert freeze([[0, "a"]]) == ((0, "a"),)


# --- record() context manager -------------------------------------------------------------


async def _record(h: History, error: BaseException | None, **kwargs: object) -> None:
    async with h.record("p", "put", key="k", value=1, **kwargs):  # type: ignore[arg-type]
        if error is not None:
            raise error


def test_record_writes_ok_when_the_block_ends_normally() -> None:
    h = History()
    asyncio.run(_record(h, None))
    assert [op.type for op in h] == [OpType.INVOKE, OpType.OK]


@pytest.mark.parametrize(
    "error",
    [
        NotSupported("mem", "keyvalue.ttl"),
        ValueError("negative offset"),
        DeliveryNotFound("gone"),
        PayloadTooLarge(2, 1),
        TransactionAborted("conflict"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_record_writes_fail_for_errors_that_mean_it_did_not_happen(error: Exception) -> None:
    h = History()
    with pytest.raises(type(error)):
        asyncio.run(_record(h, error))
    assert h[-1].type is OpType.FAIL
    assert (h[-1].error or "").startswith(type(error).__name__)


@pytest.mark.parametrize(
    "error",
    [TimeoutError(), ConnectionLost("reset"), OSError("broken pipe"), RuntimeError("bug")],
    ids=lambda e: type(e).__name__,
)
def test_record_writes_info_for_errors_with_unknown_outcome(error: Exception) -> None:
    h = History()
    with pytest.raises(type(error)):
        asyncio.run(_record(h, error))
    assert h[-1].type is OpType.INFO


def test_record_writes_info_when_cancelled() -> None:
    h = History()

    async def main() -> None:
        async def slow() -> None:
            async with h.record("p", "dequeue", "q"):
                await asyncio.sleep(10)

        task = asyncio.create_task(slow())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert h[-1].type is OpType.INFO
    assert h[-1].error == "CancelledError"


def test_record_failure_classes_are_configurable() -> None:
    h = History(definite_failures=(KeyError,))
    with pytest.raises(KeyError):
        asyncio.run(_record(h, KeyError("k")))
    with pytest.raises(ValueError):
        asyncio.run(_record(h, ValueError("now unknown")))
    with pytest.raises(TimeoutError):
        asyncio.run(_record(h, TimeoutError(), definite_failures=(TimeoutError,)))
    assert [op.type for op in h if op.type is not OpType.INVOKE] == [OpType.FAIL, OpType.INFO, OpType.FAIL]


def test_record_uses_the_value_set_in_the_block() -> None:
    h = History()

    async def main() -> None:
        async with h.record("c", "dequeue", key="q") as op:
            op.set(value=42)
        async with h.record("p", "append", key="l", value="a") as op:
            op.set(offset=3)

    asyncio.run(main())
    assert (h[1].value, h[3].value, h[3].offset) == (42, "a", 3)


def test_record_keeps_what_the_block_set_when_it_then_raises() -> None:
    """Issue #53: a poll whose records came back before its transaction aborted, and an append
    given an offset before its commit timed out, keep what they were told (Jepsen's Kafka
    analysis reads both); an explicit value still wins, and nothing set leaves the invoke's."""
    h = History()

    async def aborted_poll() -> None:
        async with h.record("c", "poll", key="l") as op:
            op.set(value=[(3, "c"), (4, "d")])
            raise TransactionAborted("aborted")

    async def append_whose_commit_timed_out() -> None:
        async with h.record("p", "append", key="l", value="e") as op:
            op.set(offset=5)
            raise TimeoutError("commit")

    async def append_told_nothing() -> None:
        async with h.record("q", "append", key="l", value="f"):
            raise TimeoutError("send")

    with pytest.raises(TransactionAborted):
        asyncio.run(aborted_poll())
    with pytest.raises(TimeoutError):
        asyncio.run(append_whose_commit_timed_out())
    with pytest.raises(TimeoutError):
        asyncio.run(append_told_nothing())
    handle = h.invoke("r", "poll", "l")
    handle.set(value=[(6, "g")])
    handle.info("lost", value=[(7, "h")])
    poll, append, plain, explicit = (op for op in h if op.type is not OpType.INVOKE)
    assert (poll.type, poll.value, poll.offset) == (OpType.FAIL, ((3, "c"), (4, "d")), None)
    assert (append.type, append.value, append.offset) == (OpType.INFO, "e", 5)
    assert (plain.value, plain.offset) == ("f", None)
    assert explicit.value == ((7, "h"),)
    assert History.from_jsonl(io.StringIO(h.to_jsonl_text())) == h


def test_record_keeps_an_explicit_completion_made_in_the_block() -> None:
    h = History()

    def explicit_then_error() -> None:
        with h.record("c", "get", "k") as op:
            op.ok(value=5)
            raise OSError("after the fact")

    with pytest.raises(OSError):
        explicit_then_error()
    assert [op.type for op in h] == [OpType.INVOKE, OpType.OK]


# --- pairs and sub-histories ---------------------------------------------------------------


def test_pairs_match_interleaved_processes_and_leave_open_invokes_unknown() -> None:
    h = History()
    a = h.invoke("a", "enqueue", "q", 1)
    b = h.invoke("b", "enqueue", "q", 2)
    h.invoke("c", "dequeue", "q")  # never completes: the client crashed
    b.fail("full")
    a.ok()
    pairs = h.pairs()
    assert [(p.process, p.type, p.value) for p in pairs] == [
        ("a", OpType.OK, 1),
        ("b", OpType.FAIL, 2),
        ("c", OpType.INFO, None),
    ]
    assert pairs[2].completion is None
    assert [op.index for op in pairs[0].ops] == [0, 4]
    assert pairs[1].completed_before(pairs[0]) is False
    assert pairs[0].ok
    assert not pairs[1].ok


def test_pairs_reject_malformed_histories() -> None:
    orphan = History([Op(0, "p", OpType.OK, "get")])
    with pytest.raises(ValueError, match="completes nothing"):
        orphan.pairs()
    mismatch = History([Op(0, "p", OpType.INVOKE, "get"), Op(1, "p", OpType.OK, "put")])
    with pytest.raises(ValueError, match="completes 'put'"):
        mismatch.pairs()
    overlap = History([Op(0, "p", OpType.INVOKE, "get"), Op(1, "p", OpType.INVOKE, "get")])
    with pytest.raises(ValueError, match="in flight"):
        overlap.pairs()


def test_subhistory_keeps_original_indices_and_order() -> None:
    h = History()
    for v in range(4):
        h.invoke("p", "enqueue", "q", v).ok()
    pairs = h.pairs()
    sub = h.subhistory([pairs[3], pairs[1], h[0], 1])  # pairs, ops and indices mix
    assert [op.index for op in sub] == [0, 1, 2, 3, 6, 7]
    assert [p.value for p in sub.pairs()] == [0, 1, 3]


def test_indices_must_increase_and_reindexed_renumbers() -> None:
    ops = [Op(5, "p", OpType.INVOKE, "get"), Op(2, "p", OpType.OK, "get")]
    with pytest.raises(ValueError, match="must increase"):
        History(ops)
    assert [op.index for op in History.reindexed(ops)] == [0, 1]


def test_filter_selects_ops() -> None:
    h = History()
    h.invoke("a", "put", "k", 1).ok()
    h.invoke("b", "get", "k").ok(value=1)
    assert {op.process for op in h.filter(lambda op: op.f == "get")} == {"b"}


# --- JSON lines and rendering --------------------------------------------------------------


def sample() -> History:
    h = ticking_history()
    h.invoke(0, "enqueue", "q", "x").ok()
    h.invoke("c-1", "drain", "q").ok(value=["x"])
    h.invoke(0, "poll", "log").ok(value=[[0, "a"], [1, "b"]])
    h.invoke(0, "append", "log", 9).info(TimeoutError("slow"))
    h.invoke(1, "put", "k", 3)
    return h


def test_jsonl_round_trip_through_a_path(tmp_path: Path) -> None:
    h = sample()
    path = tmp_path / "history.jsonl"
    h.to_jsonl(path)
    assert len(path.read_text().splitlines()) == len(h)
    again = History.from_jsonl(str(path))
    assert again == h
    assert again[5].value == ((0, "a"), (1, "b"))


def test_jsonl_round_trip_through_a_file_object_omits_empty_fields() -> None:
    buffer = io.StringIO()
    sample().to_jsonl(buffer)
    first = buffer.getvalue().splitlines()[0]
    assert first.startswith('{"index":0,"process":0,"type":"invoke","f":"enqueue","key":"q","value":"x"')
    assert "offset" not in first
    assert "error" not in first
    buffer.seek(0)
    assert History.from_jsonl(buffer) == sample()


def test_jsonl_errors_name_the_op_or_the_line() -> None:
    h = History()
    h.invoke("p", "put", "k", b"bytes").ok()
    with pytest.raises(TypeError, match="op 0 cannot be written as JSON"):
        h.to_jsonl(io.StringIO())
    with pytest.raises(ValueError, match="line 2"):
        History.from_jsonl(io.StringIO('{"index":0,"process":1,"type":"invoke","f":"get"}\n{"index": 1}\n'))
    with pytest.raises(ValueError, match="line 1"):
        History.from_jsonl(io.StringIO('{"index":0,"process":1,"type":"maybe","f":"get"}\n'))


def test_render_is_one_line_per_op_with_the_facts() -> None:
    text = sample().render()
    lines = text.splitlines()
    assert len(lines) == len(sample())
    assert lines[0].split() == ["0", "p=0", "invoke", "enqueue", "q", "value='x'"]
    assert "offset" not in lines[0]
    assert lines[7].endswith("(TimeoutError: slow)")
    assert str(sample()) == text


def test_render_shortens_long_values_and_limits_lines() -> None:
    h = History()
    h.invoke("d", "drain", "q").ok(value=list(range(1000)))
    assert len(h.render()) < 300
    assert h.render(limit=1).splitlines()[-1] == "... 1 more ops"


# --- properties ----------------------------------------------------------------------------

values = st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers() | st.text(max_size=3), max_size=4)


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Random well-formed histories: several processes, any outcomes, some never completed."""
    h = History()
    handles: dict[int, object] = {}
    for _ in range(draw(st.integers(0, 30))):
        process = draw(st.integers(0, 3))
        handle = handles.pop(process, None)
        if handle is None:
            f = draw(st.sampled_from(["enqueue", "dequeue", "append", "poll"]))
            handles[process] = h.invoke(process, f, key=draw(st.sampled_from([None, "q"])), value=draw(values))
            continue
        outcome = draw(st.sampled_from(["ok", "fail", "info"]))
        if outcome == "ok":
            handle.ok(value=draw(values), offset=draw(st.none() | st.integers(0, 9)))  # type: ignore[attr-defined]
        else:
            getattr(handle, outcome)(draw(st.none() | st.text(max_size=8)))
    return h


@settings(max_examples=150, deadline=None)
@given(histories())
def test_jsonl_round_trip_is_exact(h: History) -> None:
    buffer = io.StringIO()
    h.to_jsonl(buffer)
    buffer.seek(0)
    assert History.from_jsonl(buffer) == h


@settings(max_examples=150, deadline=None)
@given(histories())
def test_pairs_cover_every_op_once(h: History) -> None:
    pairs = h.pairs()
    covered = sorted(op.index for pair in pairs for op in pair.ops)
    assert covered == [op.index for op in h]
    assert all(isinstance(p, Pair) and p.invoke.type is OpType.INVOKE for p in pairs)
    assert h.subhistory(pairs) == h
