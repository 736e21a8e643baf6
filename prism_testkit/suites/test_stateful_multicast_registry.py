"""The multicast registry under faults: registrations, deregistrations and multicasts while the
nemesis breaks the registry's server and the queue's.

The faults its guarantee speaks of, and the rules that inject them:

- a server kill (or power cut, on a lazy mount) or pause of either backend (``kill_and_restart``,
  ``pause`` / ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the
  backend is a server the harness controls): operations of unknown outcome, copies the queue may
  lose where it does not declare itself durable;
- proxy faults on either (``latency``, ``reset_connections``, ``partition``, ``heal``, where the
  backend is networked): a registry read or a send of unknown outcome.

Not injected: a clock jump (TTL expiry is proved on an injected clock by the acceptance suite;
here nothing expires) and a send failing on its own (the acceptance suite injects those).

What is judged after every fault is healed, from the history and a drain of every identity's
queue: an identity whose registration completed before a multicast began, with no operation of
unknown outcome on it, is among that multicast's recipients (``member-lost``); one deregistered
before it began is not (``deregistration-lost``), nor one never registered
(``unexpected-recipient``); every copy reported ``delivered`` arrives (``lost-copy``); no copy
arrives for an identity a completed multicast did not name (``stray-copy``) or reported as a
definite failure (``undelivered-copy``). A backend not declared durable may lose acknowledged
writes when its server restarts: ``member-lost`` (registry) and ``lost-copy`` (queue) are then
tolerated; a failover of a backend that does not declare ``survives_failover`` excuses the
``*-lost`` ones (the runner's rule). A registration (or deregistration) lost is judged once, at
the first multicast it misled: the later ones follow that loss, so a window counts it once.
Copies that arrive twice (a send retried after an unknown outcome) are counted, not forbidden.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from prism_testkit import Message, PrismEnv, Slot, prism_suite
from prism_testkit.patterns.multicast_registry import (
    IDENTITY_HEADER,
    MULTICAST_ID_HEADER,
    MulticastRegistry,
    MulticastRegistryConfig,
    MulticastResult,
)
from prism_testkit.stateful.checkers import ACKED, EMPTY, FOLLOWS, SLOTS, Anomaly, Verdict, suite_verdict
from prism_testkit.stateful.checkers.failover import without_echoes
from prism_testkit.stateful.history import History, OpHandle, OpType
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite(
    "stateful_multicast_registry",
    registry=Slot.needs("keyvalue", "keyvalue.scan"),
    messaging=Slot.needs("queue"),
)

IDENTITIES = ("i0", "i1", "i2", "i3")
RESTARTS = frozenset({"kill", "power-cut"})
DRAIN_WAIT = 0.2  # s: one receive's wait while draining an identity's queue


@dataclass
class Multicast:
    handle: OpHandle
    seq: int
    result: MulticastResult | None = None


@dataclass
class Findings:
    found: dict[str, list[Anomaly]] = field(default_factory=dict)
    tolerated: dict[str, list[Anomaly]] = field(default_factory=dict)

    def add(self, name: str, message: str, history: History, data: dict[str, Any], *, allowed: bool = False) -> None:
        group = self.tolerated if allowed else self.found
        group.setdefault(name, []).append(Anomaly(name, message, history, data))


class RegistryMachine(FaultMachine):
    """One client registering, deregistering and multicasting over a small set of identities."""

    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["registry", "messaging"])
        self.config = MulticastRegistryConfig(
            key_prefix=self.ns.name("reg") + "/",
            destination_prefix=self.ns.name("inbox") + "-",
            attempts=2,
            retry_backoff=0.0,
        )
        self.seq = 0
        self.multicasts: list[Multicast] = []
        # Where a restart may lose acknowledged writes (a backend not declared durable), what it
        # loses is tolerated: a registration (the member is gone), a copy in a queue.
        self.registry_may_lose = not self.env.spec("registry").properties.durable
        self.queue_may_lose = not self.env.spec("messaging").properties.durable

    def registry(self) -> MulticastRegistry:
        """A registry over the current clients (a restart reconnects them), started."""
        registry = MulticastRegistry(self.client("registry").keyvalue(), self.client("messaging").queue(), self.config)
        self.loop(registry.start())
        return registry

    @rule(identity=st.sampled_from(IDENTITIES))
    def register(self, identity: str) -> None:
        registry = self.registry()
        outcome = self.attempt("client", "register", lambda: registry.register(identity, {"g": 1}), key=identity)
        if outcome.completed:
            outcome.handle.ok()

    @rule(identity=st.sampled_from(IDENTITIES))
    def deregister(self, identity: str) -> None:
        registry = self.registry()
        outcome = self.attempt("client", "deregister", lambda: registry.deregister(identity), key=identity)
        if outcome.completed:
            outcome.handle.ok()

    @rule()
    def multicast(self) -> None:
        registry = self.registry()
        self.seq += 1
        seq = self.seq
        outcome = self.attempt(
            "client", "multicast", lambda: registry.multicast(Message(str(seq).encode()), {"g": 1}), value=seq
        )
        record = Multicast(outcome.handle, seq)
        self.multicasts.append(record)
        if outcome.completed:
            result = outcome.result
            assert result is not None
            record.result = result
            summary = {i: (o.status, o.definite) for i, o in sorted(result.outcomes.items())}
            outcome.handle.ok(value=json.dumps([seq, result.multicast_id, summary]))

    # -- judging ----------------------------------------------------------------------------

    async def _drain(self) -> Counter[tuple[str, str]]:
        """Every copy that reached an identity's queue: (multicast id, identity) -> count."""
        queue = self.env.driver("messaging").queue()
        copies: Counter[tuple[str, str]] = Counter()
        for identity in IDENTITIES:
            destination = self.config.destination_prefix + identity
            while (delivery := await queue.receive(destination, wait=DRAIN_WAIT)) is not None:
                headers = delivery.message.headers
                assert headers.get(IDENTITY_HEADER) == identity, f"{destination} holds a copy for another identity"
                copies[(headers.get(MULTICAST_ID_HEADER, "?"), identity)] += 1
                await queue.ack(destination, delivery)
        return copies

    def check(self) -> tuple[list[Verdict], str]:
        copies = self.recovering(self._drain, "drain every identity's queue")
        self.history.invoke("drainer", "drain").ok(value=tuple(sorted((m, i, n) for (m, i), n in copies.items())))
        verdict = judge_multicasts(
            self.history,
            self.multicasts,
            copies,
            registry_may_lose=self.registry_may_lose,
            queue_may_lose=self.queue_may_lose,
        )
        return [verdict], f"registry {self.config.key_prefix}"


def member_at(history: History, identity: str, before: int) -> bool | str | None:
    """Whether ``identity`` was registered at history index ``before`` (a multicast's
    invoke): ``None`` when an operation on it of unknown outcome came before that,
    ``"deregistered"`` when its last operation was a completed deregistration."""
    member: bool | str = False
    for pair in history.pairs():
        invoke, completion = pair.invoke, pair.completion
        if invoke.key != identity or invoke.f not in ("register", "deregister") or invoke.index >= before:
            continue
        if completion is None or completion.type is OpType.INFO or completion.index >= before:
            return None  # may have happened, or happened while the multicast ran
        if completion.type is OpType.OK:
            member = True if invoke.f == "register" else "deregistered"
    return member


def last_change(history: History, identity: str, before: int) -> int | None:
    """The index of the last completed (de)registration of ``identity`` before history index
    ``before``: what a multicast that missed it, or reached it, shows lost."""
    changes = [
        pair.invoke.index
        for pair in history.pairs()
        if pair.invoke.key == identity
        and pair.invoke.f in ("register", "deregister")
        and pair.completion is not None
        and pair.completion.type is OpType.OK
        and pair.completion.index < before
    ]
    return max(changes, default=None)


def completed_at(history: History, invoked: int | None) -> int | None:
    """The index of the completion of the op invoked at ``invoked`` (None: none)."""
    return next((p.completion.index for p in history.pairs() if p.invoke.index == invoked and p.completion), None)


def judge_multicasts(
    history: History,
    multicasts: Sequence[Multicast],
    copies: Mapping[tuple[str, str], int],
    *,
    registry_may_lose: bool,
    queue_may_lose: bool,
) -> Verdict:
    """The ``multicast-registry`` verdict (see the module docstring) over ``history``, the
    ``multicasts`` made and the ``copies`` that reached each identity's queue (multicast id,
    identity -> count). ``registry_may_lose`` / ``queue_may_lose``: a restart may lose that
    backend's acknowledged writes (not declared durable): what it loses is tolerated."""
    restarted = any(op.process == "nemesis" and op.f in RESTARTS for op in history)
    findings = Findings()
    known: dict[str, MulticastResult] = {}
    unknown = 0
    judged: set[tuple[str, int | None]] = set()  # (identity, the op it lost) already judged
    for record in multicasts:
        if record.result is None:
            unknown += record.handle.completion is None or record.handle.completion.type is OpType.INFO
            continue
        result = record.result
        known[result.multicast_id] = result
        began = record.handle.invoke.index
        for identity in IDENTITIES:
            member = member_at(history, identity, began)
            named = identity in result.outcomes
            # One event, one verdict: a registration (or deregistration) the registry lost
            # is judged at the first multicast it misled; the later ones follow that loss.
            lost = (identity, last_change(history, identity, began))
            facts: dict[str, Any] = {"multicast": record.seq, "identity": identity}
            loss = facts | {"key": lost[0], "value": lost[1]} | ({FOLLOWS: (lost,)} if lost in judged else {})
            # a registry's loss, of the change acknowledged then (what a failover may excuse)
            acked = completed_at(history, lost[1])
            loss |= {SLOTS: ("registry",), **({ACKED: acked} if acked is not None else {})}
            # names with "lost" are what a failover of a backend that does not promise to
            # survive one may excuse (the runner decides); a restart, where not durable
            if member is True and not named:
                judged.add(lost)
                message = f"multicast {record.seq} missed registered {identity}"
                findings.add("member-lost", message, history, loss, allowed=registry_may_lose and restarted)
            if member == "deregistered" and named:
                judged.add(lost)
                message = f"multicast {record.seq} went to deregistered {identity}"
                findings.add("deregistration-lost", message, history, loss)
            if member is False and named:
                message = f"multicast {record.seq} went to never registered {identity}"
                findings.add("unexpected-recipient", message, history, facts)
        for identity, outcome in result.outcomes.items():
            arrived = copies.get((result.multicast_id, identity), 0)
            facts = {"multicast": record.seq, "identity": identity, "arrived": arrived}
            if outcome.delivered and not arrived:
                message = f"multicast {record.seq}: {identity}'s delivered copy is gone"
                sent = record.handle.completion or record.handle.invoke  # reported delivered then
                copy = facts | {SLOTS: ("messaging",), ACKED: sent.index}
                findings.add("lost-copy", message, history, copy, allowed=queue_may_lose and restarted)
            if not outcome.delivered and outcome.definite and arrived:
                findings.add(
                    "undelivered-copy",
                    f"multicast {record.seq}: a definite failure arrived at {identity}",
                    history,
                    facts,
                )
    mine = {m for m, _ in copies}
    for (multicast_id, identity), count in copies.items():
        of = known.get(multicast_id)
        if of is not None and identity not in of.outcomes:
            findings.add(
                "stray-copy",
                f"a copy of multicast {multicast_id} reached {identity}, not one of its recipients",
                history,
                {"multicast": multicast_id, "identity": identity, "count": count},
            )
    stray_ids = mine - set(known)
    if len(stray_ids) > unknown:
        findings.add(
            "stray-copy",
            f"copies of {len(stray_ids)} multicasts arrived, but only {unknown} had an unknown outcome",
            history,
            {"multicasts": sorted(stray_ids)},
        )
    if not known:
        findings.add(EMPTY, "no multicast completed: nothing was judged", history, {})
    counts = {
        "multicasts": len(known),
        "copies": sum(copies.values()),
        "duplicated-copies": sum(n - 1 for n in copies.values() if n > 1),
    }
    verdict = suite_verdict("multicast-registry", findings.found, counts)
    verdict = without_echoes(replace(verdict, tolerated=findings.tolerated))  # its own tolerance too
    return verdict


def test_multicast_registry_under_faults(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: RegistryMachine(run))


def test_the_checker_sees_a_missed_member(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    """Step by step: a registered identity left out of a multicast's recipients (the registry's
    record removed behind its back) must be reported, so the checker can fail."""
    run = StatefulRun(prism_env, request)
    machine = RegistryMachine(run)
    machine.register("i0")
    machine.register("i1")
    machine.loop(prism_env.driver("registry").keyvalue().delete(machine.config.key_prefix + "i1"))
    machine.multicast()
    with pytest.raises(AssertionError, match="member-lost"):
        machine.teardown()  # drains, judges and fails with the anomaly (then purges)


def test_a_calm_run_is_judged_valid(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    """Step by step with no fault: every registered identity gets its copy, and the verdict is
    valid and judged something."""
    run = StatefulRun(prism_env, request)
    machine = RegistryMachine(run)
    machine.register("i0")
    machine.register("i2")
    machine.deregister("i2")
    machine.multicast()
    assert machine.multicasts[-1].result is not None
    assert machine.multicasts[-1].result.recipients == ["i0"]
    machine.teardown()
    assert run.judged == 1
