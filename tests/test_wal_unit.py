"""Unit tests of patterns.wal over memstore and sqlite, with and without target transactions.

memstore's log is not durable; the tests that exercise the mechanics declare it durable on
purpose (``AS_IF_DURABLE``); the refusal tests use the real registrations.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.backends.sqlite import open_sqlite
from prism_testkit.driver import Driver
from prism_testkit.errors import ConfigurationError, TransactionAborted
from prism_testkit.interfaces import KeyValue, Log, Message, Transaction, Transactions
from prism_testkit.patterns.wal import (
    HEADER_ERROR,
    HEADER_SOURCE_OFFSET,
    LogDurability,
    Mutation,
    MutationDeadLettered,
    NonDurableLog,
    WalApplier,
    WalConfig,
    WalConfigurationError,
    WriteAheadLog,
    compact_keep_latest,
    replay,
)
from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.suites._applier_faults import DyingTarget, ValueFuse
from prism_testkit.suites._doubles import Killed
from tests._scenarios import Runner as ScenarioRunner

LOG = "t-wal"
AS_IF_DURABLE = LogDurability("unit-test-log", True)


@dataclass
class Env:
    log: Log
    kv: KeyValue
    transactions: Transactions | None

    def wal(self, config: WalConfig | None = None, **kwargs: Any) -> WriteAheadLog:
        return WriteAheadLog(
            self.log,
            self.kv,
            config or WalConfig(log=LOG),
            durability=AS_IF_DURABLE,
            transactions=self.transactions,
            **kwargs,
        )

    def applier(self, config: WalConfig | None = None, **kwargs: Any) -> WalApplier:
        return WalApplier(self.log, self.kv, config or WalConfig(log=LOG), transactions=self.transactions, **kwargs)


Runner = ScenarioRunner[Env]


@pytest.fixture(params=[False, True], ids=["no-tx", "tx"])
def scenario_subject(request: pytest.FixtureRequest) -> Callable[[Driver], Env]:
    """The WAL's stores over the driver, with its transactions or without (each path)."""
    return lambda d: Env(d.log(), d.keyvalue(), d.transactions() if request.param else None)


class Applied:
    """Records on_applied calls: offset -> how many times its write committed."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    def __call__(self, offset: int, mutation: Mutation) -> None:
        self.offsets.append(offset)

    @property
    def doubled(self) -> list[int]:
        return sorted({o for o in self.offsets if self.offsets.count(o) > 1})


# --- durability ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memstore", "kafka", "nats", "redis"])
def test_a_log_declared_not_durable_is_refused_naming_the_backend(backend: str) -> None:
    spec = build_registry(make_plugin_manager())[backend]
    mem = open_memstore()
    with pytest.raises(NonDurableLog) as caught:
        WriteAheadLog(mem.log(), mem.keyvalue(), WalConfig(log=LOG), durability=LogDurability.of(spec))
    message = str(caught.value)
    assert f"backend {backend!r} does not declare its log durable" in message
    assert spec.description
    assert spec.description in message
    assert caught.value.backend == backend
    assert isinstance(caught.value, ConfigurationError)
    assert asyncio.run(mem.log().end_offset(LOG)) == 0  # nothing was written


def test_a_durable_registration_is_accepted_and_durability_must_be_given() -> None:
    spec = build_registry(make_plugin_manager())["sqlite"]
    mem = open_memstore()
    WriteAheadLog(mem.log(), mem.keyvalue(), WalConfig(), durability=LogDurability.of(spec))
    with pytest.raises(WalConfigurationError, match="durability must be a LogDurability"):
        WriteAheadLog(mem.log(), mem.keyvalue(), WalConfig(), durability=True)  # type: ignore[arg-type]
    with pytest.raises(WalConfigurationError, match="config must be a WalConfig"):
        WriteAheadLog(mem.log(), mem.keyvalue(), {"log": "x"}, durability=AS_IF_DURABLE)  # type: ignore[arg-type]


def test_config_parses_units_and_rejects_inconsistent_backoff() -> None:
    config = WalConfig.model_validate({"batch_timeout": "100ms", "retention": "7days", "apply_mode": "hybrid"})
    assert (config.batch_timeout, config.retention) == (0.1, 604800.0)
    assert config.dead_letter == "wal-dead-letter"
    assert config.guard_key("k") == "wal-applied/k"
    assert [config.backoff(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    with pytest.raises(ValidationError, match="backoff_max"):
        WalConfig(backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(ValidationError):
        WalConfig(fsync=False)  # type: ignore[call-arg]  # a WAL never runs without it: no such knob


# --- writes, reads, applying ---------------------------------------------------------------


def test_receipt_is_the_offset_and_reads_see_unapplied_writes(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        wal = env.wal()
        assert [await wal.put("a", b"1"), await wal.put("b", b"2"), await wal.delete("a")] == [0, 1, 2]
        assert await env.kv.get("b") is None  # async mode: nothing applied yet
        assert await wal.get("a") is None
        assert await wal.get("b") == b"2"
        assert (await wal.gauges()).unapplied_entries == 3
        await wal.applier.drain()
        assert await env.kv.get("a") is None
        assert await env.kv.get("b") == b"2"
        assert await env.log.committed(LOG, "wal-applier") == 3
        assert (await wal.gauges()).unapplied_entries == 0
        await wal.put("b", b"3")
        assert await wal.get("b") == b"3"
        assert await env.kv.get("b") == b"2"

    on_backend(scenario)


def test_bad_keys_are_refused_and_nothing_is_appended(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        wal = env.wal()
        for bad in ("", None, 5):
            with pytest.raises(ValueError, match="non-empty string"):
                await wal.put(bad, b"x")  # type: ignore[arg-type]
        assert await env.log.end_offset(LOG) == 0

    on_backend(scenario)


def test_sync_mode_returns_after_the_apply(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        wal = env.wal(WalConfig(log=LOG, apply_mode="sync"))
        await wal.put("k", b"v")
        assert await env.kv.get("k") == b"v"
        await wal.delete("k")
        assert await env.kv.get("k") is None

    on_backend(scenario)


def test_hybrid_mode_returns_the_receipt_when_the_apply_is_slow(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        release = asyncio.Event()

        async def slow(m: Mutation) -> Mutation:
            await release.wait()
            return m

        wal = env.wal(WalConfig(log=LOG, apply_mode="hybrid", sync_timeout=0.05), transform=slow)
        put = asyncio.ensure_future(wal.put("k", b"v"))
        await asyncio.sleep(0.3)
        assert not put.done()  # the one apply in flight is never cancelled half way...
        release.set()
        assert await put == 0
        assert await env.kv.get("k") == b"v"  # ...so it completed
        fast = env.wal(WalConfig(log=LOG, apply_mode="hybrid", sync_timeout=1.0))
        await fast.put("j", b"w")
        assert await env.kv.get("j") == b"w"

    on_backend(scenario)


def test_background_applier_applies_and_checkpoints_on_close(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        wal = env.wal(WalConfig(log=LOG, batch_timeout=0.02))
        wal.start()
        for i in range(20):
            await wal.put(f"k{i % 3}", str(i).encode())

        async def applied() -> bool:
            return await env.kv.get("k2") == b"17"

        for _ in range(200):
            if await applied():
                break
            await asyncio.sleep(0.01)
        await wal.close()
        assert [await env.kv.get(f"k{i}") for i in range(3)] == [b"18", b"19", b"17"]
        assert await env.log.committed(LOG, "wal-applier") == 20

    on_backend(scenario)


def test_replay_from_an_older_checkpoint_applies_nothing_twice(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        wal = env.wal()
        for i in range(6):
            await wal.put(f"k{i % 2}", str(i).encode())
        first = Applied()
        await env.applier(on_applied=first).drain()
        await env.kv.put("k0", b"changed by someone else")  # a replay must not overwrite it
        await env.log.commit(LOG, "wal-applier", 0)  # the checkpoint is lost: replay everything
        again = Applied()
        replayer = env.applier(on_applied=again)
        await replayer.drain()
        assert first.offsets == list(range(6))
        assert again.offsets == []
        assert replayer.metrics.skipped == 6
        assert await env.kv.get("k0") == b"changed by someone else"
        assert await env.kv.get("k1") == b"5"

    on_backend(scenario)


@pytest.mark.parametrize("dies_after", [0, 1, 3, 5])
def test_an_applier_killed_mid_batch_resumes_with_nothing_lost_or_doubled(on_backend: Runner, dies_after: int) -> None:
    async def scenario(env: Env) -> None:
        config = WalConfig(log=LOG, batch_size=4, checkpoint_interval=0)
        wal = env.wal(config)
        expected: dict[str, bytes] = {}
        for i in range(8):
            await wal.put(f"k{i % 3}", str(i).encode())
            expected[f"k{i % 3}"] = str(i).encode()
        applied = Applied()
        dying = DyingTarget(env.kv, ValueFuse(dies_after, config.guard_key("")), env.transactions)
        doomed = WalApplier(env.log, dying, config, transactions=dying.transactions, on_applied=applied)
        with pytest.raises(Killed):
            await doomed.drain()
        # Without transactions every write lands on its own; with them a batch commits whole.
        batch = config.batch_size
        assert len(applied.offsets) == (dies_after if env.transactions is None else dies_after // batch * batch)
        await env.applier(config, on_applied=applied).drain()
        assert applied.offsets == list(range(8))
        assert applied.doubled == []
        assert {k: await env.kv.get(k) for k in expected} == expected

    on_backend(scenario)


# --- failures: retries, dead letters, per-key order ----------------------------------------


class Flaky:
    """A transform that rejects the mutations whose value is in ``fails`` (value -> failures
    left; -1: always) and records what it let through."""

    def __init__(self, fails: dict[bytes, int]) -> None:
        self.fails = fails
        self.passed: list[tuple[str, bytes | None]] = []

    def __call__(self, mutation: Mutation) -> Mutation:
        left = self.fails.get(mutation.value or b"", 0)
        if left:
            self.fails[mutation.value or b""] = left - 1
            raise RuntimeError(f"cannot apply {mutation.value!r}")
        self.passed.append((mutation.key, mutation.value))
        return mutation


def test_a_failing_mutation_holds_back_its_key_only_then_succeeds_in_order(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        flaky = Flaky({b"a1": 2})
        config = WalConfig(log=LOG, backoff_initial=0.01, backoff_max=0.02, checkpoint_interval=0)
        wal = env.wal(config)
        for key, value in [("a", b"a1"), ("b", b"b1"), ("a", b"a2"), ("b", b"b2")]:
            await wal.put(key, value)
        applier = env.applier(config, transform=flaky)
        await applier.run_once(wait=0)
        assert flaky.passed == [("b", b"b1"), ("b", b"b2")]  # b flows while a waits
        assert applier.blocked_keys == ["a"]
        assert applier.resolved == 0
        assert await env.log.committed(LOG, "wal-applier") is None  # nothing below offset 0 resolved
        assert await wal.get("a") == b"a2"
        await applier.drain()
        assert flaky.passed[2:] == [("a", b"a1"), ("a", b"a2")]  # a's order kept
        assert await env.kv.get("a") == b"a2"
        assert applier.metrics.retries == 2
        assert await env.log.end_offset(config.dead_letter) == 0

    on_backend(scenario)


def test_a_poison_mutation_goes_to_the_dead_letter_log_after_its_attempts(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        config = WalConfig(log=LOG, max_attempts=3, backoff_initial=0.01, backoff_max=0.01, checkpoint_interval=0)
        wal = env.wal(config)
        for key, value in [("a", b"poison"), ("a", b"a2"), ("b", b"b1")]:
            await wal.put(key, value)
        await env.log.append(LOG, Message(b"not a mutation"))  # corrupt: dead-lettered at once
        applier = env.applier(config, transform=Flaky({b"poison": -1}))
        await applier.drain()
        assert await env.kv.get("a") == b"a2"
        assert await env.kv.get("b") == b"b1"
        dead = await env.log.read(config.dead_letter, 0)
        assert [(bytes(r.message.payload), r.message.headers[HEADER_SOURCE_OFFSET]) for r in dead] == [
            (b"not a mutation", "3"),
            (b"poison", "0"),
        ]
        assert "RuntimeError: cannot apply b'poison'" in dead[1].message.headers[HEADER_ERROR]
        assert dead[1].message.headers["wal-attempts"] == "3"
        assert await env.log.committed(LOG, "wal-applier") == 4
        # A replay does not dead-letter the poison again (its key's guard moved past it).
        await env.log.commit(LOG, "wal-applier", 0)
        await env.applier(config, transform=Flaky({b"poison": -1})).drain()
        assert await env.log.end_offset(config.dead_letter) == 3  # only the corrupt one again (no key)

    on_backend(scenario)


def test_sync_write_of_a_poison_mutation_raises_dead_lettered(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        config = WalConfig(log=LOG, apply_mode="sync", max_attempts=2, backoff_initial=0.01)
        wal = env.wal(config, transform=Flaky({b"bad": -1}))
        with pytest.raises(MutationDeadLettered, match="offset 0 of key 'k'") as caught:
            await wal.put("k", b"bad")
        assert caught.value.offset == 0
        assert await wal.put("k", b"good") == 1
        assert await env.kv.get("k") == b"good"

    on_backend(scenario)


# --- compaction and metrics ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_keep_latest_compaction_replays_to_the_same_state(on_backend: Runner, seed: int) -> None:
    async def scenario(env: Env) -> None:
        rng = random.Random(seed)
        wal = env.wal()
        for i in range(60):
            key = f"k{rng.randrange(8)}"
            await (wal.delete(key) if rng.random() < 0.25 else wal.put(key, f"{key}={i}".encode()))
        result = await compact_keep_latest(env.log, LOG, "t-compacted")
        assert (result.read, result.upto) == (60, 60)
        records = await env.log.read("t-compacted", 0, limit=1000)
        keys = [Mutation.decode(r).key for r in records]
        assert len(keys) == len(set(keys)) == result.kept <= 8
        sources = [int(r.message.headers[HEADER_SOURCE_OFFSET]) for r in records]
        assert sources == sorted(sources)
        full, compacted = open_memstore(), open_memstore()
        assert await replay(env.log, LOG, full.keyvalue()) == 60
        await replay(env.log, "t-compacted", compacted.keyvalue())
        names = [f"k{i}" for i in range(8)]
        assert [await compacted.keyvalue().get(k) for k in names] == [await full.keyvalue().get(k) for k in names]
        # Applying the compacted log over a copy that is behind gives the same state too.
        await wal.applier.drain()
        assert [await env.kv.get(k) for k in names] == [await full.keyvalue().get(k) for k in names]

    on_backend(scenario)


def test_gauges_report_lag_and_unapplied_entries(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        now = [1000.0]
        wal = env.wal(clock=lambda: now[0])
        await wal.put("a", b"1")
        now[0] += 2.5
        await wal.put("b", b"2")
        gauges = await wal.gauges()
        assert (gauges.lag_seconds, gauges.unapplied_entries) == (2.5, 2)
        assert [line for line in gauges.prometheus('orders "eu"').splitlines() if not line.startswith("#")] == [
            'prism_wal_lag_seconds{namespace="orders \\"eu\\""} 2.5',
            'prism_wal_unapplied_entries{namespace="orders \\"eu\\""} 2',
        ]
        await wal.applier.drain()
        assert await wal.gauges() == type(gauges)(0.0, 0)

    on_backend(scenario)


# --- the stateful suite's checker ----------------------------------------------------------


def _checked(
    writes: Sequence[tuple[str, str, str, int | None]],
    logged: dict[int, tuple[str, str | None]],
    applies: list[tuple[int, str]],
    final: dict[str, str | None],
    skipped: set[int] | None = None,
    *,
    failover: bool = False,
    tolerated: dict[str, int] | None = None,
) -> dict[str, int]:
    """Anomaly counts for writes (key, value id, ok/fail/info, receipt); ``failover`` puts a
    failover the cluster made by itself before them; ``tolerated`` receives the verdict's."""
    from prism_testkit.stateful.checkers.wal import LoggedMutation, check_wal
    from prism_testkit.stateful.history import History

    history = History()
    if failover:
        history.invoke("nemesis", "failover-by-cluster", "redis-sentinel-wait", {"from": 0}).ok({"to": 2})
    for key, value, outcome, receipt in writes:
        handle = history.invoke("writer", "write", key, value)
        if outcome == "ok":
            handle.ok(offset=receipt)
        elif outcome == "fail":
            handle.fail("refused")
        else:
            handle.info("timeout")
    log = {o: LoggedMutation(k, v) for o, (k, v) in logged.items()}
    verdict = check_wal(history, log, applies, skipped or set(), final)
    if tolerated is not None:
        tolerated.update({name: len(group) for name, group in verdict.tolerated.items()})
    return {name: len(group) for name, group in verdict.anomalies.items()}


def test_the_wal_checker_accepts_a_correct_run_and_names_each_anomaly() -> None:
    writes = [("a", "a:0", "ok", 0), ("a", "a:1/del", "ok", 1), ("b", "b:2", "info", None), ("a", "a:3", "ok", 2)]
    logged = {0: ("a", "a:0"), 1: ("a", None), 2: ("a", "a:3")}
    good = _checked(writes, logged, [(0, "a"), (1, "a"), (2, "a")], {"a": "a:3", "b": None})
    assert good == {}
    # the maybe-write b:2 landed in the log: it must be applied too
    assert _checked(writes, {**logged, 3: ("b", "b:2")}, [(0, "a"), (1, "a"), (2, "a")], {"a": "a:3"}) == {"lost": 1}
    # an acknowledged write missing from the log, and its key left at an older value
    assert _checked(writes, {0: ("a", "a:0"), 1: ("a", None)}, [(0, "a"), (1, "a")], {"a": None}) == {"lost": 1}
    # applied twice, and out of order (the final value is the older one)
    doubled = _checked(writes, logged, [(0, "a"), (1, "a"), (2, "a"), (0, "a")], {"a": "a:0"})
    assert doubled == {"doubled": 1, "reordered": 2}
    # a value nobody wrote
    assert _checked(writes, logged, [(0, "a"), (1, "a"), (2, "a")], {"a": "zz"}) == {"phantom": 1}
    # a skipped replay counts as applied (its first apply's answer was lost)
    assert _checked(writes, logged, [(0, "a"), (2, "a")], {"a": "a:3"}, skipped={1}) == {}


def test_a_lost_delete_names_the_write_that_logged_it() -> None:
    """A delete logs no value: its witness is the write whose acknowledgement named its offset
    (what the timeline marks), not an empty history."""
    from prism_testkit.stateful.checkers.wal import LoggedMutation, check_wal
    from prism_testkit.stateful.history import History

    history = History()
    history.invoke("writer", "write", "a", "a:0").ok(offset=0)
    history.invoke("writer", "write", "a", "a:1/del").ok(offset=1)
    logged = {0: LoggedMutation("a", "a:0"), 1: LoggedMutation("a", None)}
    verdict = check_wal(history, logged, [(0, "a")], set(), {"a": "a:0"})
    [never_applied] = verdict.anomalies["lost"]
    [ends_before_it] = verdict.anomalies["reordered"]  # "a" still holds a:0: the delete never came
    for anomaly in (never_applied, ends_before_it):
        assert [op.value for op in anomaly.witness.ops] == ["a:1/del", "a:1/del"], anomaly.message


def test_an_unacknowledged_entry_applied_then_rolled_back_by_a_failover_is_tolerated_and_nothing_else() -> None:
    """Seen in a main job on redis-sentinel-wait: the applier read b:2 from the primary before a
    replica had it (its write timed out waiting for WAIT), the Sentinels failed over, and the
    final log held nothing; the target kept b:2."""
    writes = [("b", "b:2", "info", None)]
    applied_then_gone = [(0, "b")]
    tolerated: dict[str, int] = {}
    rolled_back = _checked(writes, {}, applied_then_gone, {"b": "b:2"}, failover=True, tolerated=tolerated)
    assert (rolled_back, tolerated) == ({}, {"rolled-back-after-apply": 1})
    # no failover: nothing can take an entry back out of the log
    assert _checked(writes, {}, applied_then_gone, {"b": "b:2"}) == {"phantom": 1}
    # no apply of an entry the log lost: the target got b:2 from nowhere
    assert _checked(writes, {}, [], {"b": "b:2"}, failover=True) == {"phantom": 1}
    # an acknowledged write rolled back is lost, failover or not, and its value a phantom
    acked = [("b", "b:2", "ok", 0)]
    assert _checked(acked, {}, applied_then_gone, {"b": "b:2"}, failover=True) == {"lost": 1, "phantom": 1}
    # the entry the applier applied is still in the log, as another key's: not this key's rollback
    with_c = [*writes, ("c", "c:9", "ok", 0)]
    assert _checked(with_c, {0: ("c", "c:9")}, [(0, "c")], {"b": "b:2", "c": "c:9"}, failover=True) == {"phantom": 1}


# --- group commit --------------------------------------------------------------------------


class FailingCommit:
    """The log store's transactions, failing at commit (after every append was staged)."""

    def __init__(self, inner: Transactions) -> None:
        self.inner = inner

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.inner.transaction() as tx:
            yield tx
            raise TransactionAborted("commit refused")


@pytest.mark.parametrize("backend", ["memstore", "sqlite"])
def test_concurrent_writers_share_one_log_transaction(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        driver = open_memstore() if backend == "memstore" else await open_sqlite(tmp_path)
        try:
            log, kv, tx = driver.log(), driver.keyvalue(), driver.transactions()
            await log.append(LOG, Mutation("put", "other", b"x", "someone-else").message())  # offset 0
            wal = WriteAheadLog(log, kv, WalConfig(log=LOG), durability=AS_IF_DURABLE, log_transactions=tx)
            assert wal.group_commit is not None
            receipts = await asyncio.gather(*(wal.put(f"k{i}", str(i).encode()) for i in range(20)))
            assert sorted(receipts) == list(range(1, 21))
            for i, offset in enumerate(receipts):
                (record,) = await log.read(LOG, offset, limit=1)
                assert Mutation.decode(record).key == f"k{i}", "a receipt names another writer's record"
            assert (wal.group_commit.groups, wal.group_commit.grouped) == (1, 20)
            assert await wal.put("alone", b"1") == 21  # a group of one is a plain append
            assert wal.group_commit.groups == 1

            failing = WriteAheadLog(
                log, kv, WalConfig(log=LOG), durability=AS_IF_DURABLE, log_transactions=FailingCommit(tx)
            )
            results = await asyncio.gather(*(failing.put(f"f{i}", b"x") for i in range(5)), return_exceptions=True)
            assert all(isinstance(r, TransactionAborted) for r in results), results
            assert await log.end_offset(LOG) == 22, "a failed group left some of its mutations in the log"
            plain = WriteAheadLog(
                log, kv, WalConfig(log=LOG, group_commit=False), durability=AS_IF_DURABLE, log_transactions=tx
            )
            assert plain.group_commit is None
        finally:
            await driver.close()

    asyncio.run(main())


# --- namespace files -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["kafka", "nats", "memstore", "redis"])
def test_validate_refuses_a_wal_over_a_log_that_is_not_durable(backend: str) -> None:
    from prism_testkit.config.namespace_files import NamespaceError, parse_namespaces

    registry = build_registry(make_plugin_manager())
    text = (
        "namespaces:\n  - name: w\n    client_api: keyvalue\n"
        f"    patterns: [{{type: wal, slots: {{log: {backend}}}}}]\n"
    )
    with pytest.raises(NamespaceError) as caught:
        parse_namespaces(text, registry, file="ns.yaml")
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem.startswith(
        f"ns.yaml: namespaces[0].patterns[0].slots.log: slot 'log' of wal expects a backend with log; durable, "
        f"found {backend!r} ("
    )
    assert "not durable" in problem
    assert problem.endswith("(line 4)")


def test_namespace_config_is_the_config_the_code_takes() -> None:
    from prism_testkit.config.namespace_files import parse_namespaces

    registry = build_registry(make_plugin_manager())
    text = """\
namespaces:
  - name: orders
    client_api: keyvalue
    patterns:
      - type: wal
        config: {log: orders-wal, apply_mode: hybrid, batch_timeout: 20ms, max_attempts: 3}
        slots: {log: sqlite}
"""
    (link,) = parse_namespaces(text, registry, file="ns.yaml").namespaces[0].chain
    assert isinstance(link.config, WalConfig)
    assert (link.config.log, link.config.apply_mode, link.config.batch_timeout) == ("orders-wal", "hybrid", 0.02)
