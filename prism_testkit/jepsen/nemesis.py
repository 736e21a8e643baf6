"""The nemesis: faults injected into a combination's servers and connections, and their healing.

:class:`Nemesis` knows what each slot offers and injects one fault at a time, recording it in
the history as an op of process ``nemesis`` (checkers ignore it; a reader sees when it struck).
:class:`NemesisRules` turns those faults into Hypothesis rules, so the shrinker can drop every
fault a failure does not need; mix it into a ``RuleBasedStateMachine`` that sets ``nemesis``.

Faults are chosen from what the combination really offers: kill + restart only for a server the
harness controls *and* that is declared durable (a non-durable instance may lose acknowledged
data, which the at-least-once checkers would rightly call loss; we keep the guarantee strict and
do not kill those), pause / resume for a controlled server that declares ``survives_pause`` (the
same reasoning), and proxy latency / reset / partition / heal for networked backends, whose
client operations then go through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from prism_testkit.errors import NotSupported
from prism_testkit.jepsen.faultproxy import FaultProxy
from prism_testkit.jepsen.history import History

if TYPE_CHECKING:
    from prism_testkit.env import PrismEnv
    from prism_testkit.provisioning import ServerControl

LATENCIES = (0.01, 0.05)  # s per forwarded chunk: below the faulted op bound, so ops slow down, not fail

RunOnLoop = Callable[[Coroutine[Any, Any, Any]], Any]
Predicate = Callable[["FaultTarget"], bool]


@dataclass
class FaultTarget:
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


class Nemesis:
    """The faults of one example. ``faulted`` turns true with the first one: from then on, a
    client error is an unknown outcome rather than a bug."""

    def __init__(self, env: PrismEnv, history: History, slots: Sequence[str], run_on_loop: RunOnLoop) -> None:
        self.env = env
        self.history = history
        self.run_on_loop = run_on_loop
        self.faulted = False
        self.paused: set[str] = set()
        self.targets = {slot: self._target(slot) for slot in slots}

    def _target(self, slot: str) -> FaultTarget:
        proxy = None
        with contextlib.suppress(NotSupported):  # embedded: no network to break
            _, proxy = self.run_on_loop(self.env.proxied(slot))
        spec = self.env.spec(slot)
        control = self.env.control(slot)
        return FaultTarget(slot, spec.name, control, spec.properties.durable, spec.properties.survives_pause, proxy)

    # -- which targets a fault may hit ------------------------------------------------------

    def can_kill(self, target: FaultTarget) -> bool:
        return target.killable and target.slot not in self.paused

    def can_pause(self, target: FaultTarget) -> bool:
        return target.control is not None and target.pausable and target.slot not in self.paused

    def is_paused(self, target: FaultTarget) -> bool:
        return target.slot in self.paused

    @staticmethod
    def is_proxied(target: FaultTarget) -> bool:
        return target.proxy is not None

    @staticmethod
    def is_broken(target: FaultTarget) -> bool:
        """Its proxy injects a fault right now (latency or partition)."""
        return target.proxy is not None and not target.proxy.state.transparent

    def any(self, predicate: Predicate) -> bool:
        return any(predicate(t) for t in self.targets.values())

    def pick(self, which: int, predicate: Predicate) -> FaultTarget:
        """The ``which``-th eligible target (modulo): a small integer the shrinker can move."""
        eligible = [t for t in self.targets.values() if predicate(t)]
        return eligible[which % len(eligible)]

    # -- faults -----------------------------------------------------------------------------

    def inject(
        self, f: str, target: FaultTarget, action: Callable[[], Awaitable[None] | None], detail: Any = None
    ) -> None:
        """Run one fault, recorded as an op of process 'nemesis'."""
        self.faulted = True
        handle = self.history.invoke("nemesis", f, target.backend, detail)

        async def run() -> None:
            result = action()
            if result is not None:
                await result

        self.run_on_loop(run())
        handle.ok()

    def kill_and_restart(self, target: FaultTarget) -> None:
        async def restart() -> None:
            await self.env.restart(target.slot, kill=True)

        self.inject("kill", target, restart)

    def pause(self, target: FaultTarget) -> None:
        control = _control(target)
        self.inject("pause", target, lambda: asyncio.to_thread(control.pause))
        self.paused.add(target.slot)

    def resume(self, target: FaultTarget) -> None:
        control = _control(target)
        self.inject("resume", target, lambda: asyncio.to_thread(control.resume))
        self.paused.discard(target.slot)

    def latency(self, target: FaultTarget, seconds: float) -> None:
        proxy = _proxy(target)
        self.inject("latency", target, lambda: proxy.latency(seconds), seconds)

    def reset(self, target: FaultTarget) -> None:
        self.inject("reset", target, _proxy(target).reset)

    def partition(self, target: FaultTarget) -> None:
        self.inject("partition", target, _proxy(target).blackhole)

    def heal(self, target: FaultTarget) -> None:
        self.inject("heal", target, _proxy(target).heal)

    def heal_everything(self) -> None:
        """End every fault: heal the proxies, resume or restart the servers (end of an example)."""
        self.env.runtime.heal(list(dict.fromkeys(t.backend for t in self.targets.values())))
        self.paused.clear()


def _control(target: FaultTarget) -> ServerControl:
    assert target.control is not None, f"{target.backend} has no process the harness controls"
    return target.control


def _proxy(target: FaultTarget) -> FaultProxy:
    assert target.proxy is not None, f"{target.backend} has no fault proxy"
    return target.proxy


class NemesisRules:
    """The faults as Hypothesis rules, each enabled only when some target offers it. Mix into a
    ``RuleBasedStateMachine`` (before it in the bases) that sets :attr:`nemesis`."""

    nemesis: Nemesis

    @precondition(lambda self: self.nemesis.any(self.nemesis.can_kill))
    @rule(which=st.integers(0, 3))
    def kill_and_restart(self, which: int) -> None:
        self.nemesis.kill_and_restart(self.nemesis.pick(which, self.nemesis.can_kill))

    @precondition(lambda self: self.nemesis.any(self.nemesis.can_pause))
    @rule(which=st.integers(0, 3))
    def pause(self, which: int) -> None:
        self.nemesis.pause(self.nemesis.pick(which, self.nemesis.can_pause))

    @precondition(lambda self: bool(self.nemesis.paused))
    @rule(which=st.integers(0, 3))
    def resume(self, which: int) -> None:
        self.nemesis.resume(self.nemesis.pick(which, self.nemesis.is_paused))

    @precondition(lambda self: self.nemesis.any(Nemesis.is_proxied))
    @rule(which=st.integers(0, 3), seconds=st.sampled_from(LATENCIES))
    def latency(self, which: int, seconds: float) -> None:
        self.nemesis.latency(self.nemesis.pick(which, Nemesis.is_proxied), seconds)

    @precondition(lambda self: self.nemesis.any(Nemesis.is_proxied))
    @rule(which=st.integers(0, 3))
    def reset_connections(self, which: int) -> None:
        self.nemesis.reset(self.nemesis.pick(which, Nemesis.is_proxied))

    @precondition(lambda self: self.nemesis.any(Nemesis.is_proxied))
    @rule(which=st.integers(0, 3))
    def partition(self, which: int) -> None:
        self.nemesis.partition(self.nemesis.pick(which, Nemesis.is_proxied))

    @precondition(lambda self: self.nemesis.any(Nemesis.is_broken))
    @rule(which=st.integers(0, 3))
    def heal(self, which: int) -> None:
        self.nemesis.heal(self.nemesis.pick(which, Nemesis.is_broken))
