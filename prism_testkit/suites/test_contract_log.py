"""Contract of the ``log`` interface: stable offsets from 0, replay, waiting reads and
consumer-group offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Log, Message, PrismEnv, Slot, prism_suite
from prism_testkit.capabilities import Capability
from prism_testkit.errors import NotSupported, PayloadTooLarge
from prism_testkit.interfaces import TruncatableLog
from prism_testkit.isolation import Namespace

from ._helpers import (
    WAIT,
    Stopwatch,
    arrival_wait,
    assert_waited_about,
    check_purge,
    messages,
    norms,
    numbered,
    payload_limit_cases,
    prism_settings,
    read_all,
)

pytestmark = prism_suite("log", backend=Slot.needs("log"))


def log_of(prism_env: PrismEnv) -> Log:
    return prism_env.driver("backend").log()


async def append_all(log: Log, name: str, sent: list[Message]) -> list[int]:
    return [await log.append(name, message) for message in sent]


async def test_offsets_start_at_zero_and_are_consecutive(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    sent = numbered(7)
    assert await append_all(log, name, sent) == list(range(7))
    records = await log.read(name, 0)
    assert [r.offset for r in records] == list(range(7))
    assert norms(r.message for r in records) == norms(sent)


async def test_messages_are_preserved(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    sent = [
        Message(b"", {}, None),
        Message(bytes(range(256)), {"content-type": "x/y", "empty": ""}, key="k-1"),
        Message("ünï".encode(), {"ünï": "cødé"}, key=""),
    ]
    await append_all(log, name, sent)
    assert norms(r.message for r in await log.read(name, 0)) == norms(sent)


async def test_read_from_offset_with_limit(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    sent = numbered(10)
    await append_all(log, name, sent)
    records = await log.read(name, 3, limit=2)
    assert [r.offset for r in records] == [3, 4]
    assert norms(r.message for r in records) == norms(sent[3:5])
    assert [r.offset for r in await log.read(name, 8, limit=5)] == [8, 9]
    assert [r.offset for r in await log.read(name, 9, limit=1)] == [9]
    assert await log.read(name, 10) == []
    assert await log.read(name, 50) == []


async def test_default_limit_is_100(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    await append_all(log, name, numbered(130))
    records = await log.read(name, 0)
    assert [r.offset for r in records] == list(range(100))
    assert [r.offset for r in await read_all(log, name, 0, page=40)] == list(range(130))


async def test_replay_from_zero_after_reading(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    sent = numbered(5)
    await append_all(log, name, sent)
    first = await read_all(log, name)
    await log.commit(name, "g", 5)
    again = await read_all(log, name)
    assert [r.offset for r in again] == [r.offset for r in first] == list(range(5))
    assert norms(r.message for r in again) == norms(sent)


async def test_end_offset(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    assert await log.end_offset(name) == 0, "a missing log ends at 0"
    for expected in range(4):
        assert await log.append(name, Message(b"x")) == expected
        assert await log.end_offset(name) == expected + 1
    await log.read(name, 0)
    assert await log.end_offset(name) == 4, "reading moved the end"


async def test_logs_are_isolated(prism_env: PrismEnv) -> None:
    log = log_of(prism_env)
    first, second = prism_env.ns.name("log"), prism_env.ns.name("log-2")
    await append_all(log, first, numbered(3, "a"))
    assert await log.append(second, Message(b"b-0")) == 0, "offsets are per log"
    assert [r.message.payload for r in await log.read(second, 0)] == [b"b-0"]
    assert await log.end_offset(first) == 3
    await log.commit(first, "g", 2)
    assert await log.committed(second, "g") is None


async def test_group_offsets(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    await append_all(log, name, numbered(6))
    assert await log.committed(name, "workers") is None, "no offset before the first commit"
    await log.commit(name, "workers", 3)
    assert await log.committed(name, "workers") == 3
    assert await log.committed(name, "auditors") is None, "groups are independent"
    await log.commit(name, "workers", 6)
    await log.commit(name, "auditors", 1)
    assert await log.committed(name, "workers") == 6
    assert await log.committed(name, "auditors") == 1
    await log.commit(name, "workers", 0)
    assert await log.committed(name, "workers") == 0, "a commit records the offset it is given"
    assert [r.offset for r in await read_all(log, name)] == list(range(6)), "commits removed records"


async def test_committed_on_missing_log_is_none(prism_env: PrismEnv) -> None:
    log = log_of(prism_env)
    assert await log.committed(prism_env.ns.name("nothing"), "g") is None


async def test_read_wait_returns_a_record_appended_meanwhile(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    await log.append(name, Message(b"zero"))
    watch = Stopwatch()
    waiting = asyncio.ensure_future(log.read(name, 1, wait=arrival_wait()))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "read returned before anything was appended"
    await log.append(name, Message(b"one"))
    records = await waiting
    assert [(r.offset, r.message.payload) for r in records] == [(1, b"one")]
    assert watch.elapsed < arrival_wait() * 0.9, "the waiting read did not wake up on append"


async def test_read_wait_on_empty_log_returns_nothing_after_the_wait(prism_env: PrismEnv) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    watch = Stopwatch()
    assert await log.read(name, 0, wait=WAIT) == []
    assert_waited_about(watch.elapsed, WAIT)
    await log.append(name, Message(b"x"))
    watch = Stopwatch()
    assert await log.read(name, 1, wait=WAIT) == []
    assert_waited_about(watch.elapsed, WAIT)
    watch = Stopwatch()
    assert len(await log.read(name, 0, wait=arrival_wait())) == 1
    assert watch.elapsed < arrival_wait() * 0.9, "read waited out its wait although records were there"


@pytest.mark.parametrize("offset", [-1, -100])
async def test_negative_offset_is_a_value_error(prism_env: PrismEnv, offset: int) -> None:
    log, name = log_of(prism_env), prism_env.ns.name("log")
    await log.append(name, Message(b"x"))
    with pytest.raises(ValueError):
        await log.read(name, offset)


async def test_payload_limit(prism_env: PrismEnv) -> None:
    """A payload of the declared ``max_payload`` is appended; one byte more is refused with
    PayloadTooLarge and takes no offset (no limit declared: 1 MiB is carried)."""
    log, name = log_of(prism_env), prism_env.ns.name("log")
    fits, too_large = payload_limit_cases(prism_env.spec("backend").properties)
    body = bytes(range(256)) * (fits // 256) + b"x" * (fits % 256)
    assert await log.append(name, Message(body)) == 0
    assert [r.message.payload for r in await log.read(name, 0)] == [body]
    if too_large is not None:
        with pytest.raises(PayloadTooLarge):
            await log.append(name, Message(b"x" * too_large))
        assert await log.end_offset(name) == 1


# --- model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Append:
    message: Message


@dataclass(frozen=True)
class Read:
    offset: int
    limit: int


@dataclass(frozen=True)
class Commit:
    group: str
    offset: int


OPS = st.lists(
    st.one_of(
        st.builds(Append, message=messages),
        st.builds(Read, offset=st.integers(0, 15), limit=st.integers(1, 6)),
        st.builds(Commit, group=st.sampled_from(["g1", "g2"]), offset=st.integers(0, 15)),
    ),
    max_size=30,
)


@prism_settings
@given(ops=OPS)
async def test_model_append_read_commit(prism_env: PrismEnv, ops: list[Append | Read | Commit]) -> None:
    log = log_of(prism_env)
    async with prism_env.example() as ns:
        name = ns.name("log")
        model: list[Message] = []
        groups: dict[str, int] = {}
        for op in ops:
            if isinstance(op, Append):
                assert await log.append(name, op.message) == len(model)
                model.append(op.message)
            elif isinstance(op, Read):
                records = await log.read(name, op.offset, limit=op.limit)
                want = model[op.offset : op.offset + op.limit]
                assert [r.offset for r in records] == list(range(op.offset, op.offset + len(want))), op
                assert norms(r.message for r in records) == norms(want), op
            else:
                await log.commit(name, op.group, op.offset)
                groups[op.group] = op.offset
            assert await log.end_offset(name) == len(model)
        for group in ["g1", "g2"]:
            assert await log.committed(name, group) == groups.get(group)
        assert norms(r.message for r in await read_all(log, name)) == norms(model)


# --- truncation (log.truncate) -------------------------------------------------------------


async def truncatable(prism_env: PrismEnv) -> TruncatableLog:
    """The log, when the backend declares ``log.truncate``. Undeclared, a truncate the log may
    still have must refuse (``NotSupported``) and delete nothing; then the test is skipped."""
    log = log_of(prism_env)
    if prism_env.driver("backend").supports(Capability.LOG_TRUNCATE):
        assert isinstance(log, TruncatableLog), "log.truncate declared, but the log has no truncate()"
        return log
    if isinstance(log, TruncatableLog):
        name = prism_env.ns.name("undeclared")
        await log.append(name, Message(b"kept"))
        with pytest.raises(NotSupported):
            await log.truncate(name, 1)
        assert await log_of(prism_env).end_offset(name) == 1
        assert len(await log_of(prism_env).read(name, 0)) == 1, "an undeclared truncate deleted records"
    pytest.skip("log.truncate is not declared, and the log cannot truncate")


async def test_truncate_deletes_below_and_keeps_every_other_offset(prism_env: PrismEnv) -> None:
    log, name = await truncatable(prism_env), prism_env.ns.name("log")
    plain = log_of(prism_env)
    for i in range(6):
        assert await plain.append(name, Message(f"m{i}".encode())) == i
    await log.truncate(name, 3)
    kept = await plain.read(name, 0)
    assert [(r.offset, r.message.payload) for r in kept] == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert [r.offset for r in await plain.read(name, 4)] == [4, 5]
    assert await plain.end_offset(name) == 6
    await log.truncate(name, 1)  # lower than before: nothing comes back, nothing more goes
    assert [r.offset for r in await plain.read(name, 0)] == [3, 4, 5]
    assert await plain.append(name, Message(b"m6")) == 6


async def test_truncating_everything_never_reuses_an_offset(prism_env: PrismEnv) -> None:
    log, name = await truncatable(prism_env), prism_env.ns.name("log")
    plain = log_of(prism_env)
    for i in range(3):
        await plain.append(name, Message(f"m{i}".encode()))
    await plain.commit(name, "g", 2)
    await log.truncate(name, 3)
    assert await plain.read(name, 0) == []
    assert await plain.end_offset(name) == 3, "an empty truncated log forgot where it ended"
    assert await plain.append(name, Message(b"m3")) == 3, "an offset was handed out twice"
    assert await plain.committed(name, "g") == 2, "truncation touched a group offset"
    assert [r.message.payload for r in await plain.read(name, 0)] == [b"m3"]


async def test_truncate_refuses_what_was_never_written(prism_env: PrismEnv) -> None:
    log, name = await truncatable(prism_env), prism_env.ns.name("log")
    plain = log_of(prism_env)
    await plain.append(name, Message(b"only"))
    for before in (-1, 2):
        with pytest.raises(ValueError):
            await log.truncate(name, before)
    assert [r.message.payload for r in await plain.read(name, 0)] == [b"only"], "a refused truncate deleted"
    await log.truncate(name, 0)  # nothing below 0: a no-op
    assert await plain.end_offset(name) == 1


async def test_truncate_and_appends_race_without_losing_a_kept_record(prism_env: PrismEnv) -> None:
    log, name = await truncatable(prism_env), prism_env.ns.name("log")
    plain = log_of(prism_env)
    for i in range(10):
        await plain.append(name, Message(f"m{i}".encode()))

    async def appends() -> list[int]:
        return [await plain.append(name, Message(f"late{i}".encode())) for i in range(10)]

    offsets, _ = await asyncio.gather(appends(), log.truncate(name, 10))
    assert offsets == list(range(10, 20)), f"appends during a truncation got offsets {offsets}"
    assert [r.offset for r in await plain.read(name, 0, limit=100)] == list(range(10, 20))


async def test_a_truncated_log_is_purged_completely(prism_env: PrismEnv) -> None:
    log = await truncatable(prism_env)
    plain = log_of(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        name = ns.name("truncated")
        await plain.append(name, Message(b"gone"))
        await log.truncate(name, 1)  # nothing left but the log's memory of where it ended
        return [name]

    await check_purge(prism_env, "backend", create)
    assert await plain.end_offset(prism_env.ns.name("truncated")) == 0


# --- cleanup -------------------------------------------------------------------------------


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    log = log_of(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        names = [ns.name("log-one"), ns.name("log-two")]
        await log.append(names[0], Message(b"left behind"))
        await log.append(names[1], Message(b"left behind"))
        await log.commit(names[1], "group", 1)
        return names

    await check_purge(prism_env, "backend", create)
    assert await log.end_offset(prism_env.ns.name("log-one")) == 0
    assert await log.committed(prism_env.ns.name("log-two"), "group") is None
