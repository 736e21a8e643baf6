"""A replicated backend's nodes: one server process per network-namespace host.

:class:`Cluster` is what the nemesis controls. As a whole it is a :class:`ServerControl`
(kill, stop, start, pause, resume, restore all nodes at once: a coordinated crash, so the
existing restart and durability suites run on a cluster unchanged); node by node it offers
what only a cluster has: partitions between nodes, and killing, pausing or restoring one node.
Nodes start in parallel: a cluster is ready when every node answers its readiness check.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from prism_testkit import patience
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.processes import ServerProcess, port_open

if TYPE_CHECKING:
    from prism_testkit.provision.lazymount import LazyMounts, StorageFault


class NodeHost(Protocol):
    """Where a node runs: its address, and how a command runs there."""

    @property
    def index(self) -> int: ...

    @property
    def address(self) -> str: ...

    def argv(self, argv: Sequence[str]) -> list[str]: ...


class NodeNetwork(Protocol):
    """What joins a cluster's nodes and cuts them apart: network namespaces
    (:class:`~prism_testkit.provision.netns.Network`) or, without them, a fault proxy per link
    (:class:`~prism_testkit.faults.linkproxies.LinkProxies`)."""

    @property
    def token(self) -> str: ...

    @property
    def cuts(self) -> set[tuple[int, int]]: ...

    @property
    def hosts(self) -> Sequence[NodeHost]: ...

    def partition(self, groups: Sequence[Iterable[int]], *, probe_port: int | None = None) -> None: ...

    def reaches(self, a: int, b: int, port: int) -> bool:
        """Whether a connection from node ``a`` to node ``b``'s ``port`` gets through (what
        proves a cut)."""
        ...

    def heal(self) -> None: ...

    def close(self) -> None: ...


# One node's summary of one replicated stream (or table, or key space): (first, last, held),
# e.g. a JetStream stream's first and last sequence and its message count. Any three integers
# that are equal on two nodes exactly when their copies hold the same data will do.
StreamState: TypeAlias = tuple[int, int, int]
# Each node's streams by node name ("n0", "n1"...), None for a node that did not answer.
StreamStates: TypeAlias = dict[str, dict[str, StreamState] | None]


class ClusterContract(Protocol):
    """What the nemesis, the runtime and the replica check rely on in a replicated backend's
    cluster. :class:`Cluster` (and :class:`FailoverCluster`) implement all of it over one
    :class:`~prism_testkit.provision.processes.ServerProcess` per node; a provisioner gives it
    to its :class:`~prism_testkit.provision.base.Endpoint` as ``cluster=`` (the endpoint's
    ``control`` too). ``docs/clusters.md`` says who calls what, and why.

    Nodes are numbered ``0 .. size - 1`` everywhere: in partitions, in :meth:`leader`, in
    :attr:`paused`."""

    @property
    def size(self) -> int:
        """How many nodes the cluster has."""
        ...

    @property
    def network(self) -> NodeNetwork:
        """What joins the nodes (namespaces or link proxies); its ``cuts`` are the partitions
        in force, which the nemesis reads before it draws a kill or a corruption."""
        ...

    @property
    def paused(self) -> set[int]:
        """The nodes stopped with SIGSTOP right now (kept by :meth:`pause_node` and
        :meth:`restore_node`). :meth:`settled` must not wait for these."""
        ...

    @property
    def kills(self) -> int:
        """Nodes killed or stopped so far: the runtime reopens a client pool opened before."""
        ...

    @property
    def stream_states(self) -> Callable[[], StreamStates] | None:
        """Each node's own copy, summarised (:data:`StreamStates`), or None where the nodes
        cannot be read one by one. After every example's heal the replica check calls it until
        the copies agree or stop changing: copies still apart are ``replicas-diverged``."""
        ...

    def leader(self) -> int | None:
        """The node that leads now (a consensus cluster's leader, a primary), None when no node
        can tell. ``kill-leader``, ``partition-isolate-leader`` and the failover a test owes aim
        at it; a cluster that cannot tell gets its node faults on drawn nodes only."""
        ...

    def settled(self) -> bool:
        """True once the cluster serves requests again (leaders elected, replicas attached):
        nodes answering one by one are not yet a cluster that answers. Polled by
        :meth:`wait_settled` after every start and restore. Paused nodes (:attr:`paused`) do
        not count: a node stopped by the nemesis cannot answer until it is resumed, and
        :meth:`restore_node` drops it from :attr:`paused` before it waits, so it counts again
        from then on. A node that does not answer (paused, or cut off) must make this neither
        raise nor block for long: a probe of a second or less."""
        ...

    def wait_settled(self) -> None:
        """Poll :meth:`settled` until it holds, or raise once a bound scaled by the machine's
        slowness passed."""
        ...

    # the whole cluster (ServerControl): a coordinated crash, pause or power cut of every node
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def wait_ready(self, timeout: float = 30.0) -> None: ...
    def restore(self) -> None:
        """Heal every partition, resume paused nodes, start stopped ones, and wait until settled."""
        ...

    @property
    def stopped_in_order(self) -> bool | None:
        """How the last :meth:`stop` ended: False when any node was killed after its grace."""
        ...

    # node by node
    def kill_node(self, node: int) -> None:
        """SIGKILL one node; the others serve on."""
        ...

    def pause_node(self, node: int) -> None:
        """SIGSTOP one node (it joins :attr:`paused`)."""
        ...

    def restore_node(self, node: int) -> None:
        """Resume or start ``node`` again and wait until the cluster is settled with it."""
        ...

    def restore_nodes(self, nodes: Sequence[int]) -> None:
        """:meth:`restore_node` for several nodes at once, started together: nodes that can form
        a majority only with each other (the rest paused or down) and so settle only together."""
        ...

    def resume_node(self, node: int) -> None:
        """SIGCONT one paused node and return at once, not waiting for the cluster to settle:
        for a composition in which it cannot settle yet (the other nodes paused or down)."""
        ...

    def power_cut_node(self, node: int, fault: StorageFault | None = None, *, start: bool = True) -> dict[str, int]:
        """An OS crash of one node: SIGKILL it, drop the writes its lazy filesystem holds
        unsynced (every other node's kept, each proved, or :class:`FaultNotInjected`), and with
        ``start`` start it again and wait until settled; without, it stays down until
        :meth:`restore_nodes`. What the cut discarded."""
        ...

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Nodes in different groups can no longer reach each other; each cut is proved."""
        ...

    def heal(self) -> None:
        """Remove every cut (raises when one is left)."""
        ...

    def files(self, node: int, pattern: str) -> list[Path]:
        """The non-empty files of ``node``'s work dir a corruption of ``pattern`` would damage."""
        ...

    def corrupt(self, node: int, pattern: str, *, mode: str = "bitflip", flips: int = 1, seed: int = 0) -> list[str]:
        """Kill ``node``, damage its ``pattern`` files, start it again (or raise
        :class:`NodeRefusedToStart`); one line per damaged file."""
        ...

    def close(self) -> None:
        """Stop every node, unmount their lazy filesystems, remove the network."""
        ...


class NodeRefusedToStart(ProvisioningError):
    """A node whose files :meth:`Cluster.corrupt` damaged detected it and will not start: it
    stays down, and ``paths`` are the files to remove before it can (it then catches up)."""

    def __init__(self, node: int, damage: list[str], paths: list[Path], why: str) -> None:
        super().__init__(f"node {node} refused to start after {len(paths)} file(s) were damaged: {why}")
        self.node = node
        self.damage = damage
        self.paths = paths
        self.why = why


@dataclass
class Cluster:
    servers: list[ServerProcess]
    network: NodeNetwork
    probe_port: int  # a port every node listens on: proves each partition cut real traffic
    leader: Callable[[], int | None] = lambda: None  # index of the current leader, when known
    # True once the cluster serves requests again after a start (leaders elected): nodes that
    # answer one by one are not yet a cluster that answers
    settled: Callable[[], bool] = lambda: True
    settle_timeout: float = 30.0
    # Each node's own copy, summarised per stream (first and last sequence, messages held), by
    # node name (None: the node did not answer); None where the nodes cannot be read one by one.
    stream_states: Callable[[], StreamStates] | None = None
    mounts: LazyMounts | None = None  # each node's data dir on a lazy filesystem (power cuts)
    # Each replicated stream's leader (node index) by stream name, as the nodes see it now, where
    # every stream elects its own (JetStream); None where the cluster has one leader for all.
    stream_leaders: Callable[[], dict[str, int]] | None = None
    # Where each stream's own data lies: stream name -> a glob of files in a node's work dir
    # (JetStream: its message blocks), for faults aimed at one stream's data; None: unknown.
    stream_files: Callable[[str], str] | None = None
    # Ask a stream's leader to hand over to a node: (stream name, node index). A request, not
    # a promise: the caller watches stream_leaders for the move. None: cannot be asked.
    move_stream_leader: Callable[[str, int], None] | None = None
    paused: set[int] = field(default_factory=set)
    # Nodes killed or stopped so far: each breaks the connections clients held to it, so a
    # client pool opened before must be opened again once the cluster is restored.
    kills: int = 0
    # The seconds from each start of nodes (a restart, a restore), or each wait_settled, until
    # the cluster settled, in order: the nemesis reads the ones a fault's heal added (the
    # report's settle times after each fault). A start mid-partition waits for no settle: none.
    settle_seconds: list[float] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.servers)

    @property
    def stopped_in_order(self) -> bool | None:
        """How the last whole-cluster :meth:`stop` ended: False when any node was killed after
        its grace (that node wrote what a crash writes), True when every node ended on its own."""
        ended = [server.stopped_in_order for server in self.servers]
        return False if False in ended else None if None in ended else True

    # --- the whole cluster (ServerControl) -------------------------------------------------

    def _each(self, action: Callable[[ServerProcess], None], servers: Sequence[ServerProcess] | None = None) -> None:
        """``action`` on every node (or ``servers``) at once. Never one that forks: a server
        forked by a pool thread would get its parent-death signal when that thread exits."""
        chosen = self.servers if servers is None else servers
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            for done in [pool.submit(action, server) for server in chosen]:
                done.result()

    def kill(self) -> None:
        self.kills += 1
        self._each(ServerProcess.kill)
        self.paused.clear()

    def stop(self) -> None:
        self.kills += 1
        self._each(ServerProcess.stop)
        self.paused.clear()

    def start(self) -> None:
        self._start(range(self.size))

    def _start(self, nodes: Sequence[int]) -> None:
        started = time.monotonic()
        for node in nodes:  # from this thread: a node dies with the thread that forked it
            self.servers[node].spawn()
        chosen = [self.servers[node] for node in nodes]
        if self.network.cuts:
            # Started mid-partition (a crash while cut off): a node cannot join its cluster until
            # the heal, so it is up once it serves clients; restore() waits for the whole.
            self._each(lambda server: server.ready(functools.partial(port_open, server.host, server.port)), chosen)
            return
        self._each(ServerProcess.ready, chosen)
        self._settle(since=started)

    def wait_settled(self) -> None:
        self._settle(since=time.monotonic())

    def _settle(self, since: float) -> None:
        """Poll :meth:`settled` until it holds (or raise once the bound passed), and keep the
        seconds from ``since`` in :attr:`settle_seconds`."""
        factor = patience.slowness()  # a loaded machine elects and catches up slower
        deadline = time.monotonic() + self.settle_timeout * factor
        while not self.settled():
            if time.monotonic() > deadline:
                raise ProvisioningError(
                    f"{self!r}: nodes are up but the cluster did not settle in {self.settle_timeout * factor:.0f}s "
                    f"(settle_timeout {self.settle_timeout:.0f}s x slowness {factor:.1f})"
                )
            time.sleep(0.05)
        self.settle_seconds.append(time.monotonic() - since)

    def pause(self) -> None:
        self._each(ServerProcess.pause)
        self.paused.update(range(self.size))

    def resume(self) -> None:
        was = sorted(self.paused)
        self._each(ServerProcess.resume)
        self.paused.clear()
        self._resumed(was)

    def _resumed(self, nodes: Sequence[int]) -> None:
        """``nodes`` run again after a pause: a subclass re-points one that missed a failover."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._each(lambda server: server.wait_ready(timeout))

    def restore(self) -> None:
        """Heal every partition, resume paused nodes and start stopped ones (also when the heal
        left a cut, which it then raises)."""
        try:
            self.network.heal()
        finally:
            self.resume()
            self.start()

    # --- node by node ------------------------------------------------------------------------

    def kill_node(self, node: int) -> None:
        self.kills += 1
        self.servers[node].kill()
        self.paused.discard(node)

    def pause_node(self, node: int) -> None:
        self.servers[node].pause()
        self.paused.add(node)

    def restore_node(self, node: int) -> None:
        self.restore_nodes([node])

    def restore_nodes(self, nodes: Sequence[int]) -> None:
        for node in nodes:
            self.resume_node(node)  # before the start: settling then waits for these nodes too
        self._start(nodes)

    def resume_node(self, node: int) -> None:
        was_paused = node in self.paused
        self.servers[node].resume()
        self.paused.discard(node)
        if was_paused:
            self._resumed([node])

    def power_cut_node(self, node: int, fault: StorageFault | None = None, *, start: bool = True) -> dict[str, int]:
        # Only a data dir of its own per node lets one machine crash while the others keep
        # their page caches: a shared or missing mount cannot be cut for one node.
        if self.mounts is None or len(self.mounts.mounts) != self.size:
            raise ProvisioningError(f"{self!r}: node {node}'s data dir is not on a lazy filesystem of its own")
        self.kill_node(node)
        report = self.mounts.power_cut_node(node, fault)
        if start:
            self.restore_node(node)
        return report

    def corrupt(self, node: int, pattern: str, *, mode: str = "bitflip", flips: int = 1, seed: int = 0) -> list[str]:
        """Kill ``node``, damage every file of its work dir matching ``pattern`` (a glob such as
        ``*.blk``: a file kind), start it again. ``bitflip`` flips ``flips`` random bits of each,
        ``truncate`` cuts each at a random length, as Jepsen's file faults do. Returns what was
        done, one line per file (the history's detail)."""
        self.kill_node(node)
        done: list[str] = []
        damaged = self.files(node, pattern)
        try:
            done = damage(damaged, self._home(node), mode=mode, flips=flips, rng=random.Random(seed))
        finally:  # damaged or not, the node runs again, or says why it cannot
            try:
                self.restore_node(node)
            except ProvisioningError as refused:
                raise NodeRefusedToStart(node, done, damaged, str(refused)) from refused
        return done

    def files(self, node: int, pattern: str) -> list[Path]:
        """The non-empty files of ``node``'s work dir that :meth:`corrupt` would damage."""
        # A running server removes files and folders while this walks (NATS's __new_msgs__): what
        # vanishes mid-walk is not there to damage, never an error (os.walk skips what it cannot list).
        home, found = self._home(node), []
        for folder, _, names in os.walk(home):
            for name in names:
                path = Path(folder, name)
                if not path.relative_to(home).match(pattern):  # as rglob: matched from the right
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if not path.is_symlink() and path.is_file() and path.stat().st_size:
                        found.append(path)
        return sorted(found)

    def _home(self, node: int) -> Path:
        home = self.servers[node].cwd
        if home is None:
            raise ProvisioningError(f"{self!r}: node {node} has no work dir to corrupt")
        return home

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        self.network.partition(groups, probe_port=self.probe_port)

    def heal(self) -> None:
        self.network.heal()

    def close(self) -> None:
        try:
            self._each(ServerProcess.stop)
        finally:
            try:
                if self.mounts is not None:
                    self.mounts.unmount()  # after the servers: none may see its data dir vanish
            finally:
                self.network.close()

    def __repr__(self) -> str:
        return f"Cluster({self.size} nodes, network {self.network.token[:8]})"


class FailoverCluster(Cluster):
    """A cluster with one primary that takes every write and replicas that follow it, where
    losing the primary means promoting a replica (PostgreSQL streaming standbys, Redis with
    Sentinel). ``fenced`` are former primaries taken out by a failover; each subclass says how
    one comes back. ``failover_seconds`` holds the time each :meth:`failover` took, from the
    fence to clients being able to find the new primary (the benchmarks list them)."""

    primary: int = 0
    fenced: set[int]
    time_to_ready: float | None = None  # seconds from the first process to a settled cluster
    failover_seconds: list[float]

    def setup_failover(self) -> None:
        self.primary = 0
        self.fenced = set()
        self.failover_seconds = []
        self.leader = self.current_primary

    def current_primary(self) -> int | None:
        """The node clients find as the primary (the leader the nemesis aims at)."""
        return self.primary

    def replicas(self) -> list[int]:
        return [node for node in range(self.size) if node != self.primary]

    # a replica can be made to lag behind the primary (:meth:`lag_node`) before a failover
    can_lag: bool = False

    def lag_node(self, node: int) -> None:
        """Stop replica ``node`` (SIGSTOP) and return once another replica holds everything
        the primary wrote so far: a replica that fell behind, as a stalled standby does, not one
        that vanished with the only copy of an acknowledged write (two nodes lost at once, more
        than one synchronous replica guarantees). :meth:`restore` or :meth:`restore_node`
        resumes it, and it then follows whichever node is the primary by then. Only where
        :attr:`can_lag`."""
        raise NotImplementedError

    def replica_position(self, node: int) -> tuple[int, int]:
        """How far ``node``'s copy reaches in the primary's stream, as (received, applied):
        bytes of WAL, a replication offset. A replica may hold more than it applied (its reads
        see the applied part); the primary's own position is its stream's end, twice."""
        raise NotImplementedError

    def await_positions_seen(self) -> None:
        """Return once whatever picks the replica to promote has seen each running replica's
        position as it is now. A promoter that asks the replicas when it chooses (the default)
        has nothing to wait for; one that chooses from a cached view (a Sentinel's last INFO)
        waits until that view is newer than this call."""

    # a replica can keep receiving the primary's stream while it stops applying it (hold_replay)
    can_hold_replay: bool = False

    def hold_replay(self, node: int) -> None:
        """Replica ``node`` keeps receiving and storing what the primary sends (it still
        confirms it) but applies none of it until :meth:`release_replay`: its received position
        runs ahead of its applied one. Returns once applying stopped. Only where
        :attr:`can_hold_replay`."""
        raise NotImplementedError

    def release_replay(self, node: int) -> None:
        """Undo :meth:`hold_replay` (nothing to do on a node that is no longer a replica)."""
        raise NotImplementedError

    def fence(self, node: int) -> None:
        """Take ``node`` out for good: SIGKILL (a crashed or STONITHed primary)."""
        self.kill_node(node)
        self.fenced.add(node)

    # the primary can be lost by a partition that leaves it running (a split-brain window)
    can_isolate: bool = False

    def failover(self, to: int | None = None, *, isolate: bool = False) -> int:
        """Lose the primary and promote a replica (``to``, or the one the system picks); returns
        the new primary once clients can find it. Timed into :attr:`failover_seconds`.
        ``isolate`` (where :attr:`can_isolate`): the old primary is cut off from every other
        node instead of killed, and keeps running, reachable from the harness, until
        :meth:`restore` heals the partition."""
        if isolate and not self.can_isolate:
            raise ProvisioningError(f"{self!r}: a failover by partition is not supported")
        started = time.monotonic()
        new = self._failover(to, isolate)
        self.failover_seconds.append(time.monotonic() - started)
        return new

    def _failover(self, to: int | None, isolate: bool) -> int:
        raise NotImplementedError


def damage(paths: Sequence[Path], home: Path, *, mode: str, flips: int, rng: random.Random) -> list[str]:
    """Damage each file of a stopped node as Jepsen's file faults do: ``bitflip`` flips
    ``flips`` random bits, ``truncate`` cuts it at a random length. One line per file, its
    path relative to ``home``."""
    done: list[str] = []
    for path in paths:
        data = bytearray(path.read_bytes())
        if mode == "truncate":
            size = rng.randrange(len(data))
            os.truncate(path, size)
            done.append(f"{path.relative_to(home)}: truncated {len(data)} -> {size}")
            continue
        for _ in range(flips):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        done.append(f"{path.relative_to(home)}: {flips} bit(s) flipped")
    return done
