"""The WAL under faults: writers putting and deleting keys, an applier stepping through the log,
the applier crashing mid-batch (a fresh one resumes from the committed checkpoint), and the
nemesis on the log's server and the target's (kill / restart of durable servers, pause, proxy
latency, resets and partitions).

Every write is a ``write`` op of the history: ok with its receipt (the log offset), fail, or
info when its outcome is unknown. At the end every fault is healed, a fresh applier drains the
log, and :func:`~prism_testkit.stateful.checkers.wal.check_wal` rebuilds the state the log
demands and compares it with the target and with every apply the appliers reported: lost,
phantom, reordered, doubled.
An applier that commits its checkpoint before applying loses the rest of a batch when it dies
mid-batch: caught here (tests/mutants).

The faults its guarantee speaks of, and the rules that inject them:

- an applier crash before any of its value writes of a batch (``crash_applier``), and right
  after a batch committed to the target but before its checkpoint did
  (``crash_before_checkpoint``): a fresh applier resumes from the committed checkpoint;
- a slow applier: a step abandoned in flight under a fault runs on, and no new step starts
  until it ends (one applier at a time);
- writers racing each other (``write_together``): a group commit of the log;
- a target write failing (``target_rejects``): the target refuses the next mutations an
  applier tries, so each waits for its retry with backoff, its key held behind it. Never as
  often as would dead-letter one, so every write must still be applied. Combined with a crash
  (``crash_applier``, ``crash_before_checkpoint``, or the fresh applier of the final drain), a
  process dies while a retry is pending: the checkpoint must not have passed it;
- a server kill (or power cut, on a lazy mount) or pause of the log's or the target's server (``kill_and_restart``,
  ``pause`` / ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the
  backend is a durable server the harness controls);
- proxy faults on either (``latency``, ``reset_connections``, ``partition``, ``heal``, where
  the backend is networked): operations of unknown outcome (a
  target write that fails this way stops the batch, which is read again);

Not injected: a clock jump (the checkpoint interval and the retry backoff run on real time
here), and a mutation rejected until it is dead-lettered (the WAL suite, :mod:`suites.test_wal`,
covers dead letters one at a time).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from prism_testkit import Capability, PrismEnv, Slot, patience, prism_suite
from prism_testkit.patience import Unsettled
from prism_testkit.patterns.wal import LogDurability, Mutation, WalApplier, WalConfig, WriteAheadLog
from prism_testkit.stateful.checkers import Verdict
from prism_testkit.stateful.checkers.wal import DELETE_SUFFIX, LoggedMutation, check_wal
from prism_testkit.stateful.history import DEFINITE_FAILURES, OpHandle
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

from ._applier_faults import DiesAtCheckpoint, DyingTarget, ValueFuse
from ._doubles import Killed
from ._helpers import read_all

pytestmark = prism_suite("stateful_wal", log=Slot.needs("log", durable=True), target=Slot.needs("keyvalue"))

KEYS = ("a", "b", "c")
# One writer's mutations: keys, and whether each is a delete.
WRITES = st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1, max_size=3)


class WalMachine(FaultMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["log", "target"])
        self.config = WalConfig(
            log=self.ns.name("wal"),
            batch_size=3,
            batch_timeout=patience.handed("poll"),
            checkpoint_interval=0.0,
            backoff_initial=patience.handed("poll"),
            backoff_max=2.5 * patience.handed("poll"),
        )
        self.durability = LogDurability.of(self.env.spec("log"))
        self.values = itertools.count()
        self.applies: list[tuple[int, str]] = []
        self.skipped: set[int] = set()
        self.applier = self._applier()
        self.step: asyncio.Future[int] | None = None  # an applier step abandoned in flight
        self.rejecting = 0  # target rejections armed by target_rejects, not yet spent
        self.rejected: Counter[tuple[str, bytes | None]] = Counter()  # per mutation, across appliers
        self.rejections = 0
        self.applier_deaths = 0  # doomed appliers that died (one with nothing to write lives)

    # -- plumbing ---------------------------------------------------------------------------

    def _on_applied(self, offset: int, mutation: Mutation) -> None:
        self.applies.append((offset, mutation.key))

    def _on_skipped(self, offset: int, mutation: Mutation) -> None:
        self.skipped.add(offset)

    def _applier(self, *, settled: bool = False, fuse: ValueFuse | None = None) -> WalApplier:
        applier = WalApplier(
            self.env.driver("log").log(),
            self.env.driver("target").keyvalue(),
            self.config,
            on_applied=self._on_applied,
            on_skipped=self._on_skipped,
            transform=self._target_accepts,
        )
        return self._wire(applier, settled=settled, fuse=fuse)

    def _target_accepts(self, mutation: Mutation) -> Mutation:
        """The applier's transform hook: where ``target_rejects`` makes the target write fail
        (an error of the hook counts as a failed attempt, retried with backoff)."""
        ident = (mutation.key, None if mutation.value is None else bytes(mutation.value))
        # Fewer failed attempts than would dead-letter it, however many appliers try it.
        if self.rejecting and self.rejected[ident] < self.config.max_attempts - 1:
            self.rejecting -= 1
            self.rejected[ident] += 1
            self.rejections += 1
            raise ValueError(f"the target refused the write of {mutation.key!r} (injected, transient)")
        return mutation

    def _wire(self, applier: WalApplier, *, settled: bool = False, fuse: ValueFuse | None = None) -> WalApplier:
        """Point an applier at the current clients (a restart or heal reconnects them)."""
        log = self.env.driver("log") if settled else self.client("log")
        target = self.env.driver("target") if settled else self.client("target")
        transactions = target.transactions() if target.supports(Capability.TRANSACTIONS) else None
        applier.log, applier.target, applier.transactions = log.log(), target.keyvalue(), transactions
        if fuse is not None:
            dying = DyingTarget(applier.target, fuse, transactions)
            applier.target, applier.transactions = dying, dying.transactions
        return applier

    def _idle(self) -> bool:
        return self.step is None or self.step.done()

    # -- writers ----------------------------------------------------------------------------

    @initialize(writes=WRITES)
    def first_write(self, writes: list[tuple[str, bool]]) -> None:
        """Every example starts with one writer's mutations, so every example (however few a
        shallow run draws) has something in the log to judge: an example that wrote nothing
        judges nothing, and a row of only those fails."""
        self.write(writes)

    @rule(writes=WRITES)
    def write(self, writes: list[tuple[str, bool]]) -> None:
        """One writer's mutations, one after the other (deletes when the flag is set)."""
        wal = self._wal()
        for key, delete in writes:
            name = self.ns.name(key)
            value = f"{key}:{next(self.values)}{DELETE_SUFFIX if delete else ''}"
            outcome = self.attempt("writer", "write", self._mutate(wal, name, value, delete), key=name, value=value)
            if outcome.completed:
                outcome.handle.ok(offset=outcome.result)

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=2, max_size=4))
    def write_together(self, keys: list[str]) -> None:
        """Several writers put at once: with a transactional log they share one commit."""
        wal = self._wal()
        writes: list[tuple[OpHandle, Awaitable[int]]] = []
        for key in keys:
            name, value = self.ns.name(key), f"{key}:{next(self.values)}"
            handle = self.history.invoke(f"writer-{len(writes)}", "write", name, value)
            writes.append((handle, self.recorded.bounded(wal.put(name, value.encode()))))

        async def together() -> list[object]:
            return list(await asyncio.gather(*(action for _, action in writes), return_exceptions=True))

        unexpected: BaseException | None = None
        for (handle, _), result in zip(writes, self.loop(together()), strict=True):
            if isinstance(result, int):
                handle.ok(offset=result)
            elif isinstance(result, DEFINITE_FAILURES):
                handle.fail(result)
            else:
                handle.info(result if isinstance(result, BaseException) else None)
                if isinstance(result, BaseException) and not self.faulted:
                    unexpected = result
        if unexpected is not None:
            raise unexpected

    def _wal(self) -> WriteAheadLog:
        log = self.client("log")
        return WriteAheadLog(
            log.log(),
            self.client("target").keyvalue(),
            self.config,
            durability=self.durability,
            log_transactions=log.transactions() if log.supports(Capability.TRANSACTIONS) else None,
        )

    @staticmethod
    def _mutate(wal: WriteAheadLog, name: str, value: str, delete: bool) -> Callable[[], Awaitable[int]]:
        return lambda: wal.delete(name) if delete else wal.put(name, value.encode())

    # -- the applier ------------------------------------------------------------------------

    @rule()
    def apply_step(self) -> None:
        if not self._idle():
            return  # the previous step is still in flight (abandoned under a fault): one applier at a time
        applier = self._wire(self.applier)
        handle = self.history.invoke("applier", "apply", self.config.log)
        task = asyncio.ensure_future(applier.run_once(wait=0.0), loop=self.env.runtime.loop)
        try:
            applied = self.bounded(task)
        except Exception as exc:
            handle.info(exc)
            if not task.done():
                self.step = task
            if not self.faulted:
                raise
            return
        handle.ok(value=applied)

    @rule(times=st.integers(1, 2))
    def target_rejects(self, times: int) -> None:
        """The target refuses the next ``times`` mutations an applier tries to write: each
        waits for a retry with backoff, later mutations of its key behind it."""
        self.rejecting = times
        self.env.faults["target-rejects"] += 1
        self.history.invoke("nemesis", "target-rejects", self.env.spec("target").name, times).ok()

    # No precondition on _idle(): whether a step abandoned in flight has finished depends on
    # timing, and a precondition that does makes Hypothesis's replay flaky. Checked inside.
    @rule(after=st.integers(0, 2))
    def crash_applier(self, after: int) -> None:
        """The applier's process dies before its ``after``-th value write of the next batch; a
        fresh one (no memory, only the committed checkpoint) takes over."""
        if not self._idle():
            return
        fuse = ValueFuse(after, self.config.guard_key(""))
        doomed = self._wire(self.applier, fuse=fuse)
        self._dies(doomed, self.history.invoke("applier", "crash", self.config.log, after))

    @rule()
    def crash_before_checkpoint(self) -> None:
        """The applier's process dies right after a batch committed to the target, before the
        checkpoint did: its successor replays that batch, which the applied offsets must skip."""
        if not self._idle():
            return
        doomed = self._wire(self.applier)
        doomed.log = DiesAtCheckpoint(doomed.log)
        self._dies(doomed, self.history.invoke("applier", "crash-before-checkpoint", self.config.log))

    def _dies(self, doomed: WalApplier, handle: OpHandle) -> None:
        """Run the doomed applier until its process dies, then start a fresh one (no memory,
        only the committed checkpoint)."""

        async def dies() -> None:
            try:
                await doomed.run_once(wait=0.0)
            except Killed:
                self.applier_deaths += 1

        try:
            self.bounded(dies())
        except Exception as exc:
            handle.info(exc)
            if not self.faulted:
                raise
        else:
            handle.ok()
        self.applier = self._applier()

    # -- judging ----------------------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        logged = self._drained()
        final = self.recovering(self._read_target)
        dead = self.recovering(self._read_dead_letters)
        transactional = self.env.driver("target").supports(Capability.TRANSACTIONS)
        verdict = check_wal(
            self.history, logged, self.applies, self.skipped, final, dead, idempotent_replays=not transactional
        )
        return [verdict], f"wal {self.config.log} -> {self.env.spec('target').name} target"

    def _drained(self) -> dict[int, LoggedMutation]:
        """The log as the checker judges it, once a fresh applier resolved all of it. The drain
        waits on the applier's position reaching the end of that same read of the log (not on a
        clock, nor on an end offset another read reported), and the log is read again after it:
        a mutation is judged never applied only when the applier reported everything resolved.
        A drain that stops progressing is retried once by a restarted applier; stuck again, it
        is Unsettled (a liveness verdict), never "lost"."""
        logged = self.recovering(self._read_log)
        for _ in range(3):
            end = max(logged, default=-1) + 1
            try:
                self.recovering(partial(self._drain, end), "the final drain")
            except Unsettled:
                # Recover as an operator would: restart the applier (a fresh one resumes from
                # the committed checkpoint); only a restarted one stuck too is unsettled.
                self.recovering(partial(self._drain, end), "the final drain, after a restart")
            again = self.recovering(self._read_log)
            if again == logged:
                return logged
            logged = again  # the log grew (a late append landed): drain to its new end
        raise Unsettled("drain: the log to stop growing after every fault healed", 0.0, "stall", sorted(logged))

    async def _drain(self, end: int) -> None:
        if self.step is not None and not self.step.done():
            done, _ = await asyncio.wait({self.step}, timeout=patience.bound("stall"))
            if not done:
                raise Unsettled("drain: an applier step abandoned in flight to end once healed", 0.0, "stall")
        applier = self._applier(settled=True)

        async def step() -> tuple[int, list[str]]:
            await applier.run_once(wait=0.0)
            return applier.resolved or 0, applier.blocked_keys

        await patience.until(
            step,
            lambda seen: seen[0] >= end,
            what=f"drain: the WAL applier's position to reach the log's end (offset {end})",
            every=min(0.01, self.config.backoff_initial),
        )
        await applier.checkpoint()

    async def _read_log(self) -> dict[int, LoggedMutation]:
        records = await read_all(self.env.driver("log").log(), self.config.log)
        logged = {}
        for record in records:
            mutation = Mutation.decode(record)
            value = bytes(mutation.value).decode() if mutation.value is not None else None
            logged[record.offset] = LoggedMutation(mutation.key, value)
        return logged

    async def _read_target(self) -> dict[str, str | None]:
        target = self.env.driver("target").keyvalue()
        final = {}
        for key in KEYS:
            value = await target.get(self.ns.name(key))
            final[self.ns.name(key)] = None if value is None else bytes(value).decode()
        return final

    async def _read_dead_letters(self) -> list[int]:
        records = await read_all(self.env.driver("log").log(), self.config.dead_letter)
        return [int(r.message.headers.get("wal-source-offset", "-1")) for r in records]


def test_every_acknowledged_mutation_is_applied_once_in_log_order_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: WalMachine(run))


def test_an_applier_dying_while_a_retry_is_pending_loses_nothing(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``target_rejects`` combined with a crash, step by step: the target refuses a write, so
    the applier holds it for a retry; the applier dies before the retry, and a fresh one (only
    the committed checkpoint) must still apply it. Fails if the rejection never happens."""
    run = StatefulRun(prism_env, request)
    machine = WalMachine(run)
    machine.write([("a", False)])
    machine.target_rejects(1)
    machine.apply_step()
    assert machine.rejections == 1, "target_rejects refused no write"
    assert machine.applier.blocked_keys, "no retry is pending"
    machine.loop(asyncio.sleep(machine.config.backoff_max))  # the retry is due: the doomed applier tries it
    machine.crash_applier(0)
    assert machine.applier_deaths == 1, "the applier did not die"
    machine.teardown()
    assert run.judged == 1


def test_an_applier_dying_between_its_commit_and_its_checkpoint_applies_nothing_twice(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``crash_before_checkpoint``, step by step: a batch commits to the target, the applier
    dies before its checkpoint does, and its successor replays the batch, which the applied
    offsets must skip. Fails if the applier does not die."""
    run = StatefulRun(prism_env, request)
    machine = WalMachine(run)
    machine.write([("a", False), ("b", False)])
    machine.crash_before_checkpoint()
    assert machine.applier_deaths == 1, "the applier did not die"
    machine.apply_step()
    machine.teardown()
    assert run.judged == 1
