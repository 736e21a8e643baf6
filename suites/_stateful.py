"""Machinery shared by the stateful fault suites (``test_stateful_*.py``).

A suite is a Hypothesis :class:`RuleBasedStateMachine` whose rules are client operations *and*
faults (the nemesis), so the shrinker drops the faults a failure does not need. Each machine:

- works in its own namespace (``prism_env.ns.child()``), purged when the example ends;
- runs every coroutine on the worker's one event loop through ``env.runtime.run`` (Hypothesis
  does not support async rules; one loop means drivers never cross loops);
- records a Jepsen-style :class:`History`: a client operation that errors or outlives its bound
  once faults were injected is ``info`` (maybe happened); before any fault, an error is a
  real failure and propagates;
- at teardown heals every fault (proxies, paused / killed servers), waits for operations that
  were abandoned in flight, drains, runs the checkers and fails with the smallest witness, the
  verdict and a replay command.

Faults are chosen from what the combination really offers: kill + restart only for a server the
harness controls *and* that is declared durable (a non-durable instance may lose acknowledged
data, which the at-least-once checkers would rightly call loss; we keep the guarantee strict and
do not kill those), pause / resume for a controlled server that declares ``survives_pause``
(the same reasoning), and proxy latency / reset /
partition / heal for networked backends, whose client operations then go through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from prism_testkit import Driver, PrismEnv
from prism_testkit.errors import NotSupported
from prism_testkit.jepsen.checkers import Anomaly, Verdict
from prism_testkit.jepsen.faultproxy import FaultProxy
from prism_testkit.jepsen.history import DEFINITE_FAILURES, History, OpHandle
from prism_testkit.provisioning import ServerControl

T = TypeVar("T")

OP_TIMEOUT = 0.5  # s: bound of one client operation once a fault was injected (then: info)
CALM_TIMEOUT = 10.0  # s: bound before any fault; hitting it is a failure, not an unknown outcome
STRAY_GRACE = 3.0  # s: how long teardown waits for abandoned operations once everything is healed
RECOVERY = 30.0  # s: how long teardown keeps retrying a drain while a healed server comes back
STEPS = 12  # rules per example: short histories shrink fast and read well
EXAMPLES = 12  # per combination, unless the profile asks for a long hunt (see stateful_settings)
HUNT_THRESHOLD = 100  # a profile with at least this many examples is a hunt: honour it
LATENCIES = (0.01, 0.05)  # s per forwarded chunk: well below OP_TIMEOUT, so ops slow down, not fail
FULL_HISTORY_LINES = 80  # failure messages include the whole history up to this length


def stateful_settings() -> settings:
    """The active profile (prism-dev / prism-ci / prism-hunt), with short examples and a capped
    example count: every example restarts servers and waits out visibility timeouts."""
    base = settings.default
    examples = base.max_examples if base.max_examples >= HUNT_THRESHOLD else min(base.max_examples, EXAMPLES)
    return settings(
        base,
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# --- one test run (many examples) --------------------------------------------------------


class StatefulRun:
    """What one suite test knows across its examples: the environment, how to replay it, and
    the verdicts of the last failing example (the one Hypothesis reports, after shrinking)."""

    def __init__(self, prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
        self.env = prism_env
        self.nodeid = request.node.nodeid
        self.combination = prism_env.combination
        config = request.config
        self.profile = settings.get_current_profile_name()
        self.derandomized = settings.default.derandomize
        forced = config.getoption("hypothesis_seed", None)
        # Without derandomisation we pick the seed ourselves so the failure message can name it;
        # replaying with --hypothesis-seed=<it> gives the same seed back here.
        self.seed: int | None = None if self.derandomized else int(forced) if forced else random.getrandbits(32)
        self.failed: list[Verdict] = []

    def execute(self, factory: Callable[[], RuleBasedStateMachine]) -> None:
        """Run the machine under :func:`stateful_settings`; record the verdicts in the report."""

        def make() -> RuleBasedStateMachine:
            return factory()

        # Per-combination digest: its own example-database key and derandomised seed.
        make._hypothesis_internal_add_digest = self.combination.id.encode()  # type: ignore[attr-defined]
        if self.seed is not None:
            make._hypothesis_internal_use_seed = self.seed  # type: ignore[attr-defined]
        try:
            run_state_machine_as_test(make, settings=stateful_settings())
        finally:
            for verdict in self.failed:  # the final (shrunk) failing example's verdicts
                self.env.record_verdict(verdict)

    def replay(self) -> str:
        backends = ",".join(dict.fromkeys(self.combination.slots.values()))
        args = ["pytest", self.nodeid, f"--prism-backend={backends}"]
        if len(set(self.combination.slots.values())) > 1 or len(self.combination.slots) > 1:
            args.append("--prism-combinations=all")  # the combination exists whatever the covering set
        if self.derandomized:
            args.append(f"--hypothesis-profile={self.profile}")
            how = "derandomised profile: the same examples run again and shrink to this failure"
        else:
            args += ["-p", "no:randomly", f"--hypothesis-seed={self.seed}"]
            how = "same seed, same examples (the example database in .hypothesis/ also replays it first)"
        return f"{shlex.join(args)}\n  ({how}; under --hypothesis-profile=prism-ci Hypothesis also prints a "
        "@reproduce_failure blob, and the minimal steps are printed below as a program)"

    def judge(self, history: History, verdicts: Sequence[Verdict], what: str) -> None:
        """Record valid verdicts; fail with witness, explanation and replay for invalid ones."""
        bad = [v for v in verdicts if not v.valid]
        for verdict in verdicts:
            if verdict.valid:
                self.env.record_verdict(verdict)
        if not bad:
            return
        self.failed = bad
        raise AssertionError(failure_message(history, bad, what, self.replay()))


def failure_message(history: History, bad: Sequence[Verdict], what: str, replay: str) -> str:
    names = ", ".join(f"{len(group)} {name}" for v in bad for name, group in v.anomalies.items())
    lines = [f"{what}: INVALID ({names})", ""]
    for verdict in bad:
        witness = verdict.witness
        if witness is not None:
            lines += [f"smallest witness ({verdict.checker}):", witness.render(), ""]
    lines += [verdict.explain() for verdict in bad]
    if len(history) <= FULL_HISTORY_LINES:
        lines += ["", f"full history ({len(history)} ops):", history.render()]
    else:
        lines += ["", f"history: {len(history)} ops (first {FULL_HISTORY_LINES}):", history.render(FULL_HISTORY_LINES)]
    lines += ["", "replay:", f"  {replay}"]
    return "\n".join(lines)


def custom_verdict(checker: str, found: dict[str, list[Anomaly]], counts: dict[str, int]) -> Verdict:
    """A verdict of a suite-specific check (the checkers module covers queues and logs only)."""
    anomalies = {name: group for name, group in found.items() if group}
    return Verdict(checker, None, anomalies, {}, counts | {n: len(g) for n, g in anomalies.items()})


# --- fault targets -----------------------------------------------------------------------


@dataclass
class Target:
    """One slot as the nemesis sees it."""

    slot: str
    backend: str
    control: ServerControl | None
    durable: bool
    pausable: bool  # declared to survive a pause with requests in flight
    proxy: FaultProxy | None

    @property
    def killable(self) -> bool:
        return self.control is not None and self.durable


@dataclass
class Outcome(Generic[T]):
    handle: OpHandle
    result: T | None = None
    error: BaseException | None = None

    @property
    def completed(self) -> bool:
        return self.error is None


@dataclass
class Stray:
    """An operation abandoned in flight; it may still complete (and take effect) later."""

    task: asyncio.Task[Any]
    on_late: Callable[[Any], None] | None = None


class FaultMachine(RuleBasedStateMachine):
    """Base machine: targets, bounded recorded operations, nemesis rules and teardown."""

    def __init__(self, run: StatefulRun, slots: Sequence[str]) -> None:
        super().__init__()
        self.prism_run = run
        self.env = run.env
        self.ns = self.env.ns.child()
        self.history = History()
        self.faulted = False  # a fault was injected in this example: errors become unknown outcomes
        self.paused: set[str] = set()
        self.strays: list[Stray] = []
        self.targets = {slot: self._target(slot) for slot in slots}

    # -- plumbing ---------------------------------------------------------------------------

    def loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.env.runtime.run(coro)

    def _target(self, slot: str) -> Target:
        spec = self.env.spec(slot)
        proxy = None
        with contextlib.suppress(NotSupported):  # embedded: no network to break
            _, proxy = self.loop(self.env.proxied(slot))
        properties = spec.properties
        return Target(slot, spec.name, self.env.control(slot), properties.durable, properties.survives_pause, proxy)

    def client(self, slot: str) -> Driver:
        """The driver client operations use: through the fault proxy when there is one. Looked
        up on every call because a restart reconnects it."""
        if self.targets[slot].proxy is None:
            return self.env.driver(slot)
        return self.loop(self.env.proxied(slot))[0]

    async def _bounded(self, action: Awaitable[T], on_late: Callable[[Any], None] | None) -> T:
        task = asyncio.ensure_future(action)
        done, _ = await asyncio.wait({task}, timeout=OP_TIMEOUT if self.faulted else CALM_TIMEOUT)
        if not done:
            # Not cancelled: cancelling a driver mid-request can itself hang on a partitioned
            # connection. It runs on (as a real client would) and is settled at teardown.
            self.strays.append(Stray(task, on_late))
            raise TimeoutError(f"no answer within {OP_TIMEOUT if self.faulted else CALM_TIMEOUT}s")
        return task.result()

    def attempt(
        self,
        process: str,
        f: str,
        action: Callable[[], Awaitable[T]],
        *,
        key: str | None = None,
        value: Any = None,
        offset: int | None = None,
        on_late: Callable[[Any], None] | None = None,
    ) -> Outcome[T]:
        """Invoke ``f`` in the history and run ``action`` bounded. The caller completes the op
        (``outcome.handle.ok(...)``) when it completed; fail / info are recorded here."""
        handle = self.history.invoke(process, f, key, value, offset)
        try:
            result = self.loop(self._bounded(action(), on_late))
        except DEFINITE_FAILURES as exc:
            handle.fail(exc)
            return Outcome(handle, None, exc)
        except Exception as exc:
            handle.info(exc)
            if not self.faulted:
                raise  # no fault injected: an error is a bug of the backend or pattern, not a nemesis
            return Outcome(handle, None, exc)
        return Outcome(handle, result)

    def nemesis(self, f: str, target: Target, action: Callable[[], Awaitable[None] | None], detail: Any = None) -> None:
        """Inject a fault, recorded as an op of process 'nemesis' (checkers ignore its names)."""
        self.faulted = True
        handle = self.history.invoke("nemesis", f, target.backend, detail)

        async def run() -> None:
            result = action()
            if result is not None:
                await result

        self.loop(run())
        handle.ok()

    def pick(self, which: int, predicate: Callable[[Target], bool]) -> Target:
        eligible = [t for t in self.targets.values() if predicate(t)]
        return eligible[which % len(eligible)]

    def _any(self, predicate: Callable[[Target], bool]) -> bool:
        return any(predicate(t) for t in self.targets.values())

    # -- nemesis rules ----------------------------------------------------------------------

    def _can_kill(self, t: Target) -> bool:
        return t.killable and t.slot not in self.paused

    def _can_pause(self, t: Target) -> bool:
        return t.control is not None and t.pausable and t.slot not in self.paused

    @precondition(lambda self: self._any(self._can_kill))
    @rule(which=st.integers(0, 3))
    def kill_and_restart(self, which: int) -> None:
        target = self.pick(which, self._can_kill)

        async def restart() -> None:
            await self.env.restart(target.slot, kill=True)

        self.nemesis("kill", target, restart)

    @precondition(lambda self: self._any(self._can_pause))
    @rule(which=st.integers(0, 3))
    def pause(self, which: int) -> None:
        target = self.pick(which, self._can_pause)
        assert target.control is not None
        control = target.control
        self.nemesis("pause", target, lambda: asyncio.to_thread(control.pause))
        self.paused.add(target.slot)

    @precondition(lambda self: bool(self.paused))
    @rule(which=st.integers(0, 3))
    def resume(self, which: int) -> None:
        target = self.pick(which, lambda t: t.slot in self.paused)
        assert target.control is not None
        control = target.control
        self.nemesis("resume", target, lambda: asyncio.to_thread(control.resume))
        self.paused.discard(target.slot)

    @precondition(lambda self: self._any(lambda t: t.proxy is not None))
    @rule(which=st.integers(0, 3), seconds=st.sampled_from(LATENCIES))
    def latency(self, which: int, seconds: float) -> None:
        target = self.pick(which, lambda t: t.proxy is not None)
        assert target.proxy is not None
        proxy = target.proxy
        self.nemesis("latency", target, lambda: proxy.latency(seconds), seconds)

    @precondition(lambda self: self._any(lambda t: t.proxy is not None))
    @rule(which=st.integers(0, 3))
    def reset_connections(self, which: int) -> None:
        target = self.pick(which, lambda t: t.proxy is not None)
        assert target.proxy is not None
        self.nemesis("reset", target, target.proxy.reset)

    @precondition(lambda self: self._any(lambda t: t.proxy is not None))
    @rule(which=st.integers(0, 3))
    def partition(self, which: int) -> None:
        target = self.pick(which, lambda t: t.proxy is not None)
        assert target.proxy is not None
        self.nemesis("partition", target, target.proxy.blackhole)

    @precondition(lambda self: self._any(lambda t: t.proxy is not None and not t.proxy.state.transparent))
    @rule(which=st.integers(0, 3))
    def heal(self, which: int) -> None:
        target = self.pick(which, lambda t: t.proxy is not None and not t.proxy.state.transparent)
        assert target.proxy is not None
        self.nemesis("heal", target, target.proxy.heal)

    # -- teardown ---------------------------------------------------------------------------

    def heal_everything(self) -> None:
        """Heal proxies and resume / restart servers, then let abandoned operations finish."""
        self.env.runtime.heal(list(dict.fromkeys(t.backend for t in self.targets.values())))
        self.paused.clear()
        self.loop(self._settle_strays())

    async def _settle_strays(self) -> None:
        strays, self.strays = self.strays, []
        if not strays:
            return
        tasks = [s.task for s in strays]
        await asyncio.wait(tasks, timeout=STRAY_GRACE)
        for stray in strays:
            if not stray.task.done():
                stray.task.cancel()
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=STRAY_GRACE)
        for stray in strays:
            task = stray.task
            if not task.done() or task.cancelled():
                continue
            error = task.exception()  # retrieved, so asyncio does not log it as never retrieved
            if error is None and stray.on_late is not None:
                stray.on_late(task.result())

    def recovering(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` at teardown, retrying errors until :data:`RECOVERY` runs out: a server
        just resumed or restarted may refuse a few requests before its clients reconnect."""

        async def go() -> T:
            deadline = time.monotonic() + RECOVERY
            while True:
                try:
                    # Bounded only against a hang: a drain may rightly wait out long timeouts.
                    return await asyncio.wait_for(action(), 3 * RECOVERY)
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)

        return self.loop(go())

    def check(self) -> tuple[list[Verdict], str]:
        """Drain and judge: the verdicts and a one-line description. Subclasses implement it."""
        raise NotImplementedError

    def teardown(self) -> None:
        try:
            self.heal_everything()
            verdicts, what = self.check()
            self.prism_run.judge(self.history, verdicts, what)
        finally:
            self.loop(self.env.purge(self.ns))


@dataclass
class Held:
    """Messages a consumer took and did not settle: invisible until their visibility timeout."""

    until: dict[Any, float] = field(default_factory=dict)

    def hold(self, value: Any, visibility: float) -> None:
        self.until[value] = max(self.until.get(value, 0.0), time.monotonic() + visibility)

    def release(self, value: Any) -> None:
        self.until.pop(value, None)

    def deadline(self, grace: float) -> float:
        """When every held message should be visible again (now, when none is held)."""
        return max(self.until.values(), default=time.monotonic() - grace) + grace
