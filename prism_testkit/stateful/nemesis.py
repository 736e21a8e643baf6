"""The nemesis: faults injected into a combination's servers and connections, and their healing.

:class:`Nemesis` knows what each slot offers and injects one fault at a time, recording it in
the history as an op of process ``nemesis`` (checkers ignore it; a reader sees when it struck).
:class:`NemesisRules` turns those faults into Hypothesis rules, so the shrinker can drop every
fault a failure does not need; mix it into a ``RuleBasedStateMachine`` that sets ``nemesis``.

Faults are chosen from what the combination really offers: kill + restart only for a server the
harness controls *and* that is declared durable (a non-durable instance may lose acknowledged
data, which the at-least-once checkers would rightly call loss; we keep the guarantee strict and
do not kill those; a slot whose check owes nothing across a restart, at-most-once pub/sub, is
killed all the same: ``ephemeral``), pause / resume for a controlled server that declares ``survives_pause`` (the
same reasoning), and proxy latency / reset / partition / heal for networked backends, whose
client operations then go through the proxy.

A power cut (kill, drop every unsynced write, restart) hits only an instance whose data dir is
on a lazy filesystem (opt-in: ``PRISM_LAZYFS``) and that declares ``survives_power_loss``:
the same strictness as kill, one level down. It shares the kill rule (see ``crash``).

A replicated backend (a cluster in its endpoint: :class:`~prism_testkit.clusters.ClusterContract`) takes
the same rules, aimed at its nodes: the kill rule kills one node or the leader and starts it
again (or, for odd values, crashes every node at once), and the partition rule cuts the links
between nodes (one node or the leader isolated, or a bridge), each cut proved by a connection
that must fail. Those two keep the rule list of single servers. A cluster with a primary that
fails over (``postgres-ha``, ``redis-sentinel`` and their variants) has its primary failed over
where the kill rule would kill it (see ``failover``): killed, a replica promoted, the old one
back as a replica. A backend that does not declare ``survives_failover`` (asynchronous
replication) is failed over too: what its checkers then find lost is tolerated as
``lost-in-failover`` (:mod:`prism_testkit.stateful.checkers.failover`), anything else still fails.
Where the cluster can make a replica lag (``postgres-ha``, ``redis-sentinel``), a drawn
flag first stops one replica and keeps it stopped through the promotion: the lagging-standby
fault (``failover-lagging``).

A test whose examples never failed over such a cluster (the rules drew no kill of its primary)
owes one: its run ends with a pass of one example that fails it over once, after their
first client operations (:meth:`Nemesis.fail_over_now`), so every row over a failover cluster is
proved across at least one failover. A consensus cluster (JetStream) is owed a leader kill the
same way (``kill-leader``: another node elected, nothing acknowledged may be lost).

Each fault on a cluster that the harness then waited on to settle again (a node restarted, a
failover, the end-of-example heal of what was left open) leaves its settle time in
:attr:`Nemesis.settles`: the fault's name, the backend and the seconds the harness waited for the
cluster to serve again as a whole (from each start of its nodes in the heal, or each
:meth:`~prism_testkit.provision.cluster.Cluster.wait_settled`, until it settled: its
:attr:`~prism_testkit.provision.cluster.Cluster.settle_seconds`; plus a failover's promotion), on
the real clock: a cluster's nodes are processes, never simulated. The report shows them per
cluster row (:class:`~prism_testkit.stateful.latency.Settles`).

After the heal, a cluster whose nodes can be read one by one (a JetStream cluster: each
node's monitoring endpoint) is checked node by node (:meth:`Nemesis.replica_verdicts`): every
stream's copies must agree, or the example fails with ``replicas-diverged``, whatever the
clients read.

Corruption rides on the kill rule, for a cluster only: when the rule would kill one node of a
whole cluster, a drawn flag (shrinking to a plain kill) makes it corrupt instead. A rule of its
own would change the rule list, and with it every derandomised search of single servers (it
did: a seeded mutant went uncaught). The corruption kills one node other than the metadata
leader (a minority, as in Jepsen's NATS tests), flips a bit in or truncates every file of one kind in its
work dir (message blocks, Raft indexes or snapshots, :data:`FILE_KINDS`), and starts it again.
The history's op names the node, the kind, the mode and the seed, and completes with one line
per damaged file and the outcome: ``restarted``, or ``refused to start`` (the node detected the
damage; the nemesis removes the damaged files and starts it again, so it catches up from the
others and the example still ends with every node running). A node without a file of that kind
yet is left alone and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

import prism_testkit.simulation.clock as clocks
from prism_testkit import patience
from prism_testkit.errors import NotSupported
from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.faults.power_loss import storage_faults
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.patience import Unsettled
from prism_testkit.provision.cluster import FailoverCluster, NodeRefusedToStart
from prism_testkit.provision.netns import FaultNotInjected
from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.checkers.replicas import StreamState, describe_divergence, diverged
from prism_testkit.stateful.history import History

if TYPE_CHECKING:
    from prism_testkit.provision.base import ServerControl
    from prism_testkit.provision.cluster import ClusterContract
    from prism_testkit.runtime.env import PrismEnv

DIVERGED = "replicas-diverged"
# s without any node's copy changing before copies still apart are judged diverged (x the
# machine's slowness): followers catching up after the heal (a restarted node replays its log)
# are waited for as long as they progress, up to patience's "settle-ceiling"
REPLICAS_CONVERGE = 10.0
LATENCIES = (0.01, 0.05)  # s per forwarded chunk: below the faulted op bound, so ops slow down, not fail

RunOnLoop = Callable[[Coroutine[Any, Any, Any]], Any]
Predicate = Callable[["FaultTarget"], bool]


@dataclass
class FaultTarget:
    """One slot as the nemesis sees it."""

    slot: str
    backend: str
    control: ServerControl | None
    durable: bool  # what it holds survives a kill, or the example owes nothing across one
    pausable: bool  # declared to survive a pause with requests in flight
    proxy: FaultProxy | None
    lazy: bool = False  # its data dir is on a lazy filesystem
    survives_power_loss: bool = False
    cluster: ClusterContract | None = None  # a replicated backend: faults may name one node
    survives_failover: bool = False
    # The harness's own connection leads through ``proxy`` too (a server that advertises its
    # proxy, Kafka), so a restart reconnects through it.
    connects_through_proxy: bool = False

    @property
    def killable(self) -> bool:
        return self.control is not None and self.durable

    @property
    def unreachable(self) -> bool:
        """The harness could not reconnect after a restart now: its own way in is partitioned."""
        state = self.proxy.state if self.proxy is not None else None
        return self.connects_through_proxy and state is not None and (state.blackhole or state.refusing)

    @property
    def power_cuttable(self) -> bool:
        return self.lazy and self.survives_power_loss


class Nemesis:
    """The faults of one example. ``faulted`` turns true with the first one: from then on, a
    client error is an unknown outcome rather than a bug."""

    def __init__(
        self,
        env: PrismEnv,
        history: History,
        slots: Sequence[str],
        run_on_loop: RunOnLoop,
        *,
        ephemeral: Collection[str] = (),
        test: str = "",
    ) -> None:
        """``ephemeral``: slots whose checks owe nothing across a restart (at-most-once pub/sub
        keeps nothing to lose), so their server is killed whether or not it is durable.
        ``test``: the node id damage this example leaves is named against."""
        self.env = env
        self.test = test
        self.foreign_damage: dict[str, str] = {}  # backend -> what this example left apart outside its namespace
        self.ephemeral = frozenset(ephemeral)
        self.history = history
        self.run_on_loop = run_on_loop
        self.faulted = False
        # The backends (instances) paused: slots that share one instance share its pause, so
        # no other slot's fault restarts a node whose peers are stopped, and none waits on them.
        self.paused: set[str] = set()
        self.targets = {slot: self._target(slot) for slot in slots}
        # when the end-of-example heal ended (the history's clock): where a timeline's faults
        # still open then end (see prism_testkit.stateful.timeline)
        self.healed_at: int | None = None
        # (fault, backend, seconds) of each fault the harness waited on a cluster to settle after
        self.settles: list[tuple[str, str, float]] = []

    def _target(self, slot: str) -> FaultTarget:
        proxy = None
        with contextlib.suppress(NotSupported):  # embedded: no network to break
            _, proxy = self.run_on_loop(self.env.proxied(slot))
        spec = self.env.spec(slot)
        control = self.env.control(slot)
        props = spec.properties
        endpoint = self.env.runtime.endpoint(spec.name)
        cluster = endpoint.cluster
        return FaultTarget(
            slot,
            spec.name,
            control,
            props.durable or slot in self.ephemeral,
            props.survives_pause,
            proxy,
            endpoint.lazy_mount is not None,
            props.survives_power_loss,
            cluster,
            props.survives_failover,
            connects_through_proxy=endpoint.options.get("fault_proxy") is not None,
        )

    # -- which targets a fault may hit ------------------------------------------------------

    def can_kill(self, target: FaultTarget) -> bool:
        return target.killable and target.backend not in self.paused and not target.unreachable

    def can_cut_power(self, target: FaultTarget) -> bool:
        return target.power_cuttable and target.backend not in self.paused and not target.unreachable

    def can_crash(self, target: FaultTarget) -> bool:
        return self.can_kill(target) or self.can_cut_power(target)

    def can_pause(self, target: FaultTarget) -> bool:
        return target.control is not None and target.pausable and target.backend not in self.paused

    def is_paused(self, target: FaultTarget) -> bool:
        return target.backend in self.paused

    @staticmethod
    def has_proxy(target: FaultTarget) -> bool:
        return target.proxy is not None

    @staticmethod
    def is_proxied(target: FaultTarget) -> bool:
        """It can be partitioned: through its proxy, or between its nodes."""
        return target.proxy is not None or target.cluster is not None

    @staticmethod
    def is_broken(target: FaultTarget) -> bool:
        """Its proxy injects a fault right now (latency or partition), or its nodes are cut."""
        if target.cluster is not None and target.cluster.network.cuts:
            return True
        return target.proxy is not None and not target.proxy.state.transparent

    def can_corrupt(self, target: FaultTarget) -> bool:
        """A cluster, whole: no node paused and no cut, so it settles after the restart."""
        cluster = target.cluster
        return cluster is not None and self.can_kill(target) and not cluster.network.cuts and not cluster.paused

    def any(self, predicate: Predicate) -> bool:
        return any(predicate(t) for t in self.targets.values())

    def pick(self, which: int, predicate: Predicate) -> FaultTarget:
        """The ``which``-th eligible target (modulo): a small integer the shrinker can move."""
        eligible = [t for t in self.targets.values() if predicate(t)]
        return eligible[which % len(eligible)]

    # -- faults -----------------------------------------------------------------------------

    def inject(
        self,
        f: str,
        target: FaultTarget,
        action: Callable[[], Awaitable[Any] | None],
        detail: Any = None,
        *,
        outcome: bool = False,
    ) -> Any:
        """Run one fault, recorded as an op of process 'nemesis'. With ``outcome``, what the
        action returns is the op's value (what the fault did) and the caller's to check."""
        self.faulted = True
        self.env.faults[f] += 1  # the report row's count of what it survived
        handle = self.history.invoke("nemesis", f, target.backend, detail)
        before = _primary(target)
        waits = _settle_marks(target.cluster)

        async def run() -> Any:
            result = action()
            return None if result is None else await result

        done = self.run_on_loop(run())
        self.note_settle(f, target.backend, waits)
        if outcome:
            handle.ok(value=done)
        else:
            handle.ok()
        if not f.startswith("failover"):
            self.note_promotion(target, before)
        return done

    def note_settle(self, f: str, backend: str, marks: SettleMarks | None) -> None:
        """Keep how long fault ``f`` (or its heal) had the harness wait for ``backend``'s
        cluster to settle: the settle waits and promotions it added since ``marks``
        (:func:`_settle_marks`); nothing when it waited on none."""
        if marks is None:
            return
        settled, waited, promoted, promotions = marks
        found = [*settled[waited:], *promoted[promotions:]]
        if found:
            self.settles.append((f, backend, sum(found)))

    def note_promotion(self, target: FaultTarget, before: int | None) -> None:
        """A cluster that fails over by itself (Sentinel, on a primary cut off or killed for
        longer than it waits) may have promoted a replica during a fault or its heal: recorded
        as the fault it is (``failover-by-cluster``), so the history shows why writes moved."""
        after = _primary(target)
        if before is None or after is None or after == before:
            return
        self.env.faults["failover-by-cluster"] += 1
        self.history.invoke("nemesis", "failover-by-cluster", target.backend, {"from": before}).ok(value={"to": after})

    def kill_and_restart(self, target: FaultTarget) -> None:
        async def restart() -> None:
            await self.env.restart(target.slot, kill=True)

        self.inject("kill", target, restart)

    def crash(self, which: int, data: st.DataObject | None = None) -> None:
        """Kill, or cut the power of, the ``which``-th crashable target. ``which`` picks the
        target modulo their number and, for one that allows both, the fault: a kill for the
        lower values, so the shrinker moves a power cut towards a plain kill when that is enough."""
        eligible = [t for t in self.targets.values() if self.can_crash(t)]
        target = eligible[which % len(eligible)]
        if target.cluster is not None and (which % 2 == 0 or target.cluster.network.cuts):
            # A cluster's odd values crash every node at once, but not while its nodes are cut
            # off: the harness could not reconnect its clients to a cluster with no quorum.
            if data is not None and self.can_corrupt(target) and data.draw(st.booleans(), label="corrupt instead"):
                kind = data.draw(st.sampled_from(tuple(FILE_KINDS)), label="file kind")
                mode = data.draw(st.sampled_from(CORRUPTIONS), label="corruption")
                self.corrupt(target, which // 2, kind, mode, data.draw(st.integers(0, 255), label="seed"))
                return
            self.kill_node(target, which // 2, data)
            return
        if self.can_cut_power(target) and (not self.can_kill(target) or (which // len(eligible)) % 2 == 1):
            fault = None if data is None else data.draw(storage_faults(crash=False), label="storage fault")
            self.power_cut(target, fault)
        else:
            self.kill_and_restart(target)

    def power_cut(self, target: FaultTarget, fault: StorageFault | None = None) -> None:
        """Kill, drop every write not yet fsynced (but what ``fault`` keeps), restart: what a
        power loss leaves. The history's op carries the fault and, once cut, what it kept."""
        detail: dict[str, Any] = {"fault": (fault or StorageFault()).as_dict()}

        async def cut() -> None:
            await self.env.restart(target.slot, power_cut=True, fault=fault)
            mount = self.env.runtime.endpoint(self.env.combination[target.slot]).lazy_mount
            if mount is not None and mount.faults:
                detail["fault"] = mount.faults[-1]

        self.inject("power-cut", target, cut, detail)

    def pause(self, target: FaultTarget) -> None:
        control = _control(target)
        self.inject("pause", target, lambda: asyncio.to_thread(control.pause))
        self.paused.add(target.backend)

    def resume(self, target: FaultTarget) -> None:
        control = _control(target)
        self.inject("resume", target, lambda: asyncio.to_thread(control.resume))
        self.paused.discard(target.backend)

    def latency(self, target: FaultTarget, seconds: float) -> None:
        proxy = _proxy(target)
        self.inject("latency", target, lambda: proxy.latency(seconds), seconds)

    def reset(self, target: FaultTarget) -> None:
        self.inject("reset", target, _proxy(target).reset)

    def kill_node(self, target: FaultTarget, which: int, data: st.DataObject | None = None) -> None:
        """SIGKILL one node (the leader for odd ``which``) and start it again; the others serve on.
        The primary of a whole failover cluster is failed over instead, never while its nodes
        are cut off (the harness could not tell whom its clients reach); a drawn flag (shrinking
        to a plain failover) first makes a replica lag (see ``failover``)."""
        cluster = _cluster(target)
        leader = cluster.leader() if which % 2 else None
        if leader is not None and isinstance(cluster, FailoverCluster) and not cluster.network.cuts:
            lagging: list[int] = []
            running = [n for n in cluster.replicas() if n not in cluster.paused]
            if (
                cluster.can_lag
                and len(running) > 1
                and data is not None
                and data.draw(st.booleans(), label="a replica lags")
            ):
                lagging.append(data.draw(st.sampled_from(running), label="lagging replica"))
            self.failover(target, cluster, lagging)
            return
        node = leader if leader is not None else which % cluster.size
        fault = "kill-leader" if leader is not None else "kill-node"

        async def crash() -> None:
            await asyncio.to_thread(cluster.kill_node, node)
            await asyncio.to_thread(cluster.restore_node, node)

        self.inject(fault, target, crash, {"node": node})

    def failover(self, target: FaultTarget, cluster: FailoverCluster, lagging: Sequence[int] = ()) -> None:
        """Lose the primary (SIGKILL), let a replica be promoted, then bring the old primary back
        as a replica of the new one; the op completes with who took over and how long it took.
        ``lagging`` replicas are stopped first and stay stopped through the promotion (the other
        replicas hold what the primary wrote until then: :meth:`FailoverCluster.lag_node`); the
        restore resumes them and they must follow the new primary. Counted as
        ``failover-lagging``, the op's detail naming them with every replica already paused."""
        old = cluster.primary
        behind = sorted({*cluster.paused, *lagging} - {old})

        def run() -> dict[str, Any]:
            for node in lagging:
                cluster.lag_node(node)
            new = cluster.failover()
            seconds = cluster.failover_seconds[-1]
            cluster.restore()
            return {"from": old, "to": new, "seconds": round(seconds, 3)}

        fault, detail = (
            ("failover-lagging", {"node": old, "lagging": behind}) if behind else ("failover", {"node": old})
        )
        self.inject(fault, target, lambda: asyncio.to_thread(run), detail, outcome=True)

    def failover_backends(self) -> set[str]:
        """The backends of this example whose leader can be lost: a :class:`FailoverCluster`
        (its primary failed over) or a killable consensus cluster (its leader killed, another
        elected: ``kill-leader``)."""
        return {
            t.backend
            for t in self.targets.values()
            if isinstance(t.cluster, FailoverCluster) or (t.cluster is not None and t.killable)
        }

    def fail_over_now(self, backend: str) -> bool:
        """Fail ``backend`` over now, whatever the rules drew: a failover its test owes (see
        :meth:`~prism_testkit.stateful.runner.StatefulRun.owed_failovers`); a consensus cluster
        loses its leader (killed and started again). A paused server is resumed and cut links
        healed first, each recorded, so the fault meets a whole cluster; False when ``backend``
        is none of :meth:`failover_backends`."""
        for target in self.targets.values():
            cluster = target.cluster
            if target.backend != backend or target.backend not in self.failover_backends() or cluster is None:
                continue
            if self.is_paused(target):
                self.resume(target)
            self.heal(target)
            if isinstance(cluster, FailoverCluster):
                self.failover(target, cluster)
            else:
                # a leader to kill: after a resume or heal the nodes may still be electing one
                self.run_on_loop(asyncio.to_thread(cluster.wait_settled))
                self.kill_node(target, LEADER)
            return True
        return False

    def partition(self, target: FaultTarget, which: int = 0) -> None:
        if target.cluster is None:
            self.inject("partition", target, _proxy(target).blackhole)
            return
        cluster = target.cluster
        kind = PARTITIONS[which % len(PARTITIONS)]
        groups = partition_groups(kind, cluster.size, which, cluster.leader())
        self.inject(f"partition-{kind}", target, lambda: asyncio.to_thread(cluster.partition, groups), groups)

    def corrupt(self, target: FaultTarget, which: int, kind: str, mode: str, seed: int) -> None:
        """Damage every file of ``kind`` on the ``which``-th node other than the metadata
        leader: one bit flipped in each, or each truncated (``mode``), chosen by ``seed``."""
        cluster = _cluster(target)
        leader = cluster.leader()
        followers = [n for n in range(cluster.size) if n != leader]
        node = followers[which % len(followers)]
        pattern = FILE_KINDS[kind]
        if not cluster.files(node, pattern):
            return  # nothing of this kind written yet (no snapshot taken): no fault to record
        detail = {"node": node, "leader": leader, "files": pattern, "mode": mode, "seed": seed}

        def damage() -> dict[str, Any]:
            try:
                return {"outcome": "restarted", "damaged": tuple(cluster.corrupt(node, pattern, mode=mode, seed=seed))}
            except NodeRefusedToStart as refused:
                # Detected, not lost: the node will not start on its damaged files (nats-server
                # 2.15 on a corrupt Raft snapshot). An operator's remedy: remove them, start it
                # again, and it catches up from the others.
                for path in refused.paths:
                    path.unlink(missing_ok=True)
                cluster.restore_node(node)
                why = refused.why.rsplit(" | ", 1)[-1]
                return {"outcome": "refused to start", "damaged": tuple(refused.damage), "why": why}

        done = self.inject("corrupt", target, lambda: asyncio.to_thread(damage), detail, outcome=True)
        if not done["damaged"]:
            raise FaultNotInjected(f"node {node} of {target.backend}: no {pattern} file was damaged")

    def heal(self, target: FaultTarget) -> None:
        if target.cluster is not None and target.cluster.network.cuts:
            self.inject("heal", target, lambda: asyncio.to_thread(_cluster(target).heal))
        if target.proxy is not None and not target.proxy.state.transparent:
            self.inject("heal", target, target.proxy.heal)

    def replica_verdicts(self, namespace: str | None = None) -> list[Verdict]:
        """Once every fault is healed, each cluster whose nodes can be read one by one must
        converge: every node's copy of every stream the same once the copies stop changing
        (:data:`REPLICAS_CONVERGE` seconds without progress); copies still changing at the
        ceiling are :class:`~prism_testkit.patience.Unsettled`, not diverged. One verdict per
        such cluster; ``replicas-diverged`` names the streams and what each node holds, its
        witness the example's faults.

        With a ``namespace`` prefix, only the streams whose names hold it are the example's to
        judge: a stream outside it (the harness's shared buckets, another test's leftovers)
        that stays apart is cluster damage, not this example's verdict. It is named against
        this test in the runtime's ``damaged`` (so the cluster is rebuilt before it serves
        again) and in :attr:`foreign_damage`."""
        verdicts = []
        seen: set[int] = set()
        for target in self.targets.values():
            cluster = target.cluster
            if cluster is None or cluster.stream_states is None or id(cluster) in seen:
                continue
            seen.add(id(cluster))
            found = settled_divergence(cluster.stream_states)
            if namespace is not None:
                foreign = {name: copies for name, copies in found.items() if namespace not in name}
                found = {name: copies for name, copies in found.items() if name not in foreign}
                if foreign:
                    why = f"outside the test's namespace, replicas still apart: {describe_divergence(foreign)}"
                    self.foreign_damage[target.backend] = why
                    self.env.runtime.mark_damaged(target.backend, self.test, why)
            anomalies: dict[str, list[Anomaly]] = {}
            if found:
                faults = self.history.filter(lambda op: op.process == "nemesis")
                message = f"{target.backend}: replicas still apart after the heal\n{describe_divergence(found)}"
                anomalies[DIVERGED] = [Anomaly(DIVERGED, message, faults, {"streams": found})]
            verdicts.append(Verdict("replicas", None, anomalies, {}, {"diverged-streams": len(found)}))
        return verdicts

    def heal_everything(self) -> None:
        """End every fault: heal the proxies, resume or restart the servers (end of an example)."""
        before = {slot: _primary(t) for slot, t in self.targets.items()}
        clusters = {
            id(t.cluster): (t.backend, _settle_marks(t.cluster)) for t in self.targets.values() if t.cluster is not None
        }
        self.env.runtime.heal(list(dict.fromkeys(t.backend for t in self.targets.values())))
        self.paused.clear()
        if self.faulted:
            for backend, marks in clusters.values():  # the restore of what the example left open
                self.note_settle("heal", backend, marks)
            seen: set[int] = set()  # two slots on one cluster: one promotion
            for slot, target in self.targets.items():
                if id(target.cluster) not in seen:
                    seen.add(id(target.cluster))
                    self.note_promotion(target, before[slot])
        self.healed_at = clocks.monotonic_ns()


# A cluster's settle waits and promotions so far, and how many of each there were: what a fault
# added to them is its settle time (see Nemesis.note_settle)
SettleMarks = tuple[list[float], int, list[float], int]


def _settle_marks(cluster: ClusterContract | None) -> SettleMarks | None:
    """Where ``cluster``'s settle waits (:attr:`Cluster.settle_seconds`) and promotions
    (:attr:`FailoverCluster.failover_seconds`) stand now; None for a cluster that keeps no
    settle waits (a contract of its own)."""
    settled = getattr(cluster, "settle_seconds", None)
    if not isinstance(settled, list):
        return None
    promoted = getattr(cluster, "failover_seconds", None)
    promoted = promoted if isinstance(promoted, list) else []
    return (settled, len(settled), promoted, len(promoted))


def settled_divergence(
    states: Callable[[], dict[str, dict[str, StreamState] | None]],
) -> dict[str, dict[str, StreamState | None]]:
    """The streams still apart once no node's copy changed for :data:`REPLICAS_CONVERGE`
    seconds (empty: converged): a follower still catching up is waited for, not judged."""
    started = changed = time.monotonic()
    last: object = None
    while True:
        current = states()
        found = diverged(current)
        now = time.monotonic()
        if current != last:
            last, changed = current, now
        if not found or now - changed > REPLICAS_CONVERGE * patience.slowness():
            return found
        if now - started > patience.bound("settle-ceiling"):
            seen = describe_divergence(found)
            raise Unsettled(
                "replicas: every node's copy to converge after the heal", now - started, "settle-ceiling", seen
            )
        time.sleep(0.2)


def _control(target: FaultTarget) -> ServerControl:
    assert target.control is not None, f"{target.backend} has no process the harness controls"
    return target.control


def _primary(target: FaultTarget) -> int | None:
    """The node a failover cluster's clients write to (None: not a failover cluster)."""
    cluster = target.cluster
    return cluster.primary if isinstance(cluster, FailoverCluster) else None


def _cluster(target: FaultTarget) -> ClusterContract:
    assert target.cluster is not None, f"{target.backend} is not a cluster"
    return target.cluster


# How a cluster's nodes are split: the largest minority (one node of three, two of five: from
# the ``which``-th on) or the leader alone against the rest; or a bridge, where two sides
# cannot talk to each other but one node talks to both.
PARTITIONS = ("isolate-node", "isolate-leader", "bridge")


def partition_groups(kind: str, size: int, which: int, leader: int | None) -> list[list[int]]:
    """The sides of a partition of ``size`` nodes; for a bridge, the two sides without the
    bridge node (it keeps its links to both)."""
    nodes = list(range(size))
    first = which % size
    if kind == "isolate-leader":
        minority = [first if leader is None else leader]
    elif kind == "bridge":
        rest = [n for n in nodes if n != first]  # the bridge node keeps its links to both
        half = len(rest) // 2
        return [rest[:half], rest[half:]]
    else:
        minority = [(first + i) % size for i in range(max(1, (size - 1) // 2))]
    return [minority, [n for n in nodes if n not in minority]]


# The kinds of file a corruption damages, by the globs nats-server 2.15 names them with under a
# node's store dir: message blocks (a stream's ``msgs/N.blk``, and each Raft group's log), Raft
# state (``peers.idx``, ``tav.idx``, ``commit.idx``) and Raft snapshots (``snapshots/snap.T.I``).
FILE_KINDS = {"blocks": "*.blk", "indexes": "*.idx", "snapshots": "snap.*"}
CORRUPTIONS = ("bitflip", "truncate")


LEADER = 1  # an odd ``which`` of kill_node aims at the leader


def _proxy(target: FaultTarget) -> FaultProxy:
    assert target.proxy is not None, f"{target.backend} has no fault proxy"
    return target.proxy


class NemesisRules:
    """The faults as Hypothesis rules, each enabled only when some target offers it. Mix into a
    ``RuleBasedStateMachine`` (before it in the bases) that sets :attr:`nemesis`."""

    nemesis: Nemesis

    # One rule for both crashes: a separate power-cut rule would change the rule list, and with
    # it every derandomised search, even in runs where no instance is on a lazy mount.
    @precondition(lambda self: self.nemesis.any(self.nemesis.can_crash))
    @rule(which=st.integers(0, 3), data=st.data())  # draws only for a power cut's fault or a corruption
    def kill_and_restart(self, which: int, data: st.DataObject) -> None:
        """Kill a server (or one node of a cluster) and start it again, or cut its power where
        it runs on a lazy mount: see :meth:`Nemesis.crash`."""
        self.nemesis.crash(which, data)

    @precondition(lambda self: self.nemesis.any(self.nemesis.can_pause))
    @rule(which=st.integers(0, 3))
    def pause(self, which: int) -> None:
        """Stop a server's processes (SIGSTOP): its connections stay open and hang."""
        self.nemesis.pause(self.nemesis.pick(which, self.nemesis.can_pause))

    @precondition(lambda self: bool(self.nemesis.paused))
    @rule(which=st.integers(0, 3))
    def resume(self, which: int) -> None:
        """Let a paused server run again (SIGCONT)."""
        self.nemesis.resume(self.nemesis.pick(which, self.nemesis.is_paused))

    @precondition(lambda self: self.nemesis.any(Nemesis.has_proxy))
    @rule(which=st.integers(0, 3), seconds=st.sampled_from(LATENCIES))
    def latency(self, which: int, seconds: float) -> None:
        """Delay every chunk through a target's fault proxy, both ways, by ``seconds``."""
        self.nemesis.latency(self.nemesis.pick(which, Nemesis.has_proxy), seconds)

    @precondition(lambda self: self.nemesis.any(Nemesis.has_proxy))
    @rule(which=st.integers(0, 3))
    def reset_connections(self, which: int) -> None:
        """Close every connection through a target's fault proxy; clients must reconnect."""
        self.nemesis.reset(self.nemesis.pick(which, Nemesis.has_proxy))

    @precondition(lambda self: self.nemesis.any(Nemesis.is_proxied))
    @rule(which=st.integers(0, 3))
    def partition(self, which: int) -> None:
        """Cut a target off: its proxy holds every byte both ways, or, for a cluster, its nodes are
        split into groups (``which`` picks the kind of split and who is cut off)."""
        self.nemesis.partition(self.nemesis.pick(which, Nemesis.is_proxied), which)

    @precondition(lambda self: self.nemesis.any(Nemesis.is_broken))
    @rule(which=st.integers(0, 3))
    def heal(self, which: int) -> None:
        """End a partition or a proxy's fault on a target."""
        self.nemesis.heal(self.nemesis.pick(which, Nemesis.is_broken))
