"""Provisioning of ``postgres-ha``: a PostgreSQL primary and streaming standbys, one network
namespace and work dir per node, with synchronous or asynchronous replication.

The first node is initialised with ``initdb``; every standby is cloned from the primary by
``pg_basebackup`` and streams from it through a physical replication slot named after itself.
Every node's data dir gets slots for the others, so any standby can be promoted and the rest
re-pointed at it, as the usual runbook does it (:meth:`PostgresHaCluster.failover`).

Clients find the primary the way users' clients do: the endpoint's URL names every node and
``target_session_attrs=read-write``, which asyncpg (>= 0.28) understands: it tries the hosts in
order and keeps the first that is not in recovery. Provisioning itself never imports asyncpg:
administration runs over one session per node kept open from the root namespace (:mod:`.wire`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prism_testkit import Availability, Endpoint, ProvisionContext, ServerProcess, Via, patience
from prism_testkit.clusters import FailoverCluster, Host, Network, namespaces_unavailable_reason, recording_dir
from prism_testkit.errors import NotSupported, ProvisioningError

from .provision import (
    OS_USER,
    PRIVATE_DATABASE,
    PRIVATE_USER,
    READY_TIMEOUT,
    PostgresProvisioner,
    _drop_privileges,
    _make_traversable,
    init_cluster,
)
from .wire import QueryError, Session, accepts_sessions, as_psql_text

PORT = 5432  # every node has its own namespace, so all listen on the same port
ADMIN_TIMEOUT = 30.0  # seconds an administrative command (a query, pg_basebackup) may take
ADMIN_CONNECT_TIMEOUT = 2.0  # seconds to start an administrative session (a paused node never answers)
# The end of the WAL a standby holds, as a byte position: what it received or replayed
WAL_END = "pg_wal_lsn_diff(GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint"


def node_name(node: int) -> str:
    """A node's name: its application_name when it streams, and its slot on the others."""
    return f"n{node}"


class NamespacedPostgres(ServerProcess):
    """A postmaster started through ``ip netns exec`` and ``setpriv``: both exec, so the pid
    is the postmaster's, but its name is read only once the exec chain reached it (the
    straggler search after a kill finds backends, which leave the group, by that name)."""

    def spawn(self) -> None:
        super().spawn()

        def name() -> str | None:
            """The process's name now; None once there is none to read (it ended)."""
            if not self.alive or self.pid is None:
                return None
            try:
                with open(f"/proc/{self.pid}/comm") as comm:
                    return comm.read().strip()
            except OSError:
                return None

        # Best effort, as before: past the bound the name stays unread. "stray-grace" (3 s x
        # slowness) is longer than the fixed 2 s it had, a bet on the machine's speed.
        with contextlib.suppress(patience.Unsettled):
            seen = patience.until_sync(
                name,
                lambda n: n is None or n in ("postgres", "postmaster"),
                what=f"{self.name}'s exec chain to reach the postmaster",
                stall="stray-grace",
                ceiling="stray-grace",
                every=0.002,
            )
            if seen is not None:
                self._comm = seen


class PostgresHaCluster(FailoverCluster):
    """The nodes of a ``postgres-ha`` instance and the runbook that moves the primary.

    ``primary`` is the node that takes writes; ``fenced`` are former primaries taken out by a
    failover: they are never started again as they were (their timeline diverged), but cloned
    afresh from the current primary as standbys when they are started or restored.
    ``time_to_ready`` runs from initdb to every standby streaming.

    A standby paused (:meth:`lag_node`, :meth:`pause_node`) when the primary is lost misses the
    re-pointing: ``behind`` maps it to the WAL position where the first timeline it missed
    forked off. Resumed, it is re-pointed at the current primary if its WAL ends at or before
    that fork (it then follows the timeline switch), else cloned afresh, as ``pg_rewind`` or a
    new base backup would do in a runbook: its extra WAL was never on the promoted node.
    """

    bin_dir: Path
    os_user: str | None
    behind: dict[int, int]
    can_lag = True

    def setup(self, *, bin_dir: Path, os_user: str | None) -> None:
        self.setup_failover()
        self.behind = {}
        self._admin_sessions: dict[int, Session] = {}
        self._admin_lock = threading.Lock()
        self.bin_dir = bin_dir
        self.os_user = os_user
        self.settled = self._settled

    # --- administration --------------------------------------------------------------------

    def address(self, node: int) -> str:
        return self.network.hosts[node].address

    def sql(self, node: int, query: str, timeout: float = ADMIN_TIMEOUT) -> str:
        """Run ``query`` on ``node``; its output as ``psql -A -t`` prints it, stripped.

        One administrative session per node stays open across queries. A session from before
        the node was killed or restarted fails at its next use: the query is then sent once
        more on a new session (every administrative query here may be repeated). A node still
        starting up or recovering from a crash is waited for, as long as the cluster may take
        to settle on this machine."""
        for reused in (True, False):
            session = self._admin_sessions.pop(node, None)
            if session is None:
                reused = False
                try:
                    session = Session.open_once_accepting(
                        self.address(node),
                        PORT,
                        PRIVATE_USER,
                        PRIVATE_DATABASE,
                        min(timeout, ADMIN_CONNECT_TIMEOUT),
                        patience=self.settle_timeout * patience.slowness(),
                    )
                except OSError as exc:
                    raise ProvisioningError(f"postgres-ha: {query!r} on {node_name(node)} failed: {exc}") from exc
            try:
                rows = session.query(query, timeout)
            except QueryError as exc:
                self._keep_admin_session(node, session)
                raise ProvisioningError(f"postgres-ha: {query!r} on {node_name(node)} failed: {exc}") from exc
            except TimeoutError as exc:
                session.close()
                took = f"took over {timeout:.0f}s"
                raise ProvisioningError(f"postgres-ha: {query!r} on {node_name(node)} {took}") from exc
            except OSError as exc:
                session.close()
                if reused:
                    continue
                raise ProvisioningError(f"postgres-ha: {query!r} on {node_name(node)} failed: {exc}") from exc
            self._keep_admin_session(node, session)
            return as_psql_text(rows)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _keep_admin_session(self, node: int, session: Session) -> None:
        """Keep ``session`` for ``node``'s next query; a second one (another thread's) is closed."""
        with self._admin_lock:
            kept = self._admin_sessions.setdefault(node, session)
        if kept is not session:
            session.close()

    def close(self) -> None:
        with self._admin_lock:
            sessions, self._admin_sessions = list(self._admin_sessions.values()), {}
        for session in sessions:
            session.close()
        super().close()

    def in_recovery(self, node: int) -> bool:
        return self.sql(node, "SELECT pg_is_in_recovery()") == "t"

    def standbys(self) -> list[int]:
        return self.replicas()

    def _settled(self) -> bool:
        """The primary takes sessions and every running standby streams from it. The query
        runs on the kept administrative session: it answers only if the server took a session
        since it last started (a restart ends every session), so a new one is not opened per
        poll just to show that."""
        if not self.servers[self.primary].alive:
            # nothing starts a primary again but a restore, which clones it as a standby first:
            # waiting would only run out the settle bound (16 min on a loaded machine)
            raise ProvisioningError(f"postgres-ha: the primary {node_name(self.primary)} is not running")
        running = {node_name(n) for n in self.standbys() if self.servers[n].alive and n not in self.paused}
        try:
            streaming = self.sql(
                self.primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'", timeout=5
            )
        except ProvisioningError:
            return False
        return running <= set(streaming.split())

    def _conninfo(self, node: int) -> str:
        return f"host={self.address(self.primary)} port={PORT} user={PRIVATE_USER} application_name={node_name(node)}"

    def _standby_settings(self, node: int) -> str:
        return (
            f"primary_conninfo = '{self._conninfo(node)}'\n"
            f"primary_slot_name = '{node_name(node)}'\n"
            "recovery_target_timeline = 'latest'\n"
        )

    def clone(self, node: int) -> None:
        """Make ``node`` a fresh standby of the current primary: a base backup into an empty
        data dir, standby.signal and where to stream from (its own slot, made if missing)."""
        server = self.servers[node]
        assert server.cwd is not None
        data = server.cwd / "data"
        shutil.rmtree(data, ignore_errors=True)
        self._ensure_slot(self.primary, node)
        done = subprocess.run(
            [
                str(self.bin_dir / "pg_basebackup"),
                "-h",
                self.address(self.primary),
                "-p",
                str(PORT),
                "-U",
                PRIVATE_USER,
                "-D",
                str(data),
                "-X",
                "stream",
                "-S",
                node_name(node),
                "--checkpoint=fast",
                "--no-sync",  # the backup itself need not survive a power cut; the server fsyncs
            ],
            cwd=server.cwd,
            preexec_fn=_drop_privileges(self.os_user),
            capture_output=True,
            text=True,
            timeout=ADMIN_TIMEOUT * 2,
            check=False,
        )
        if done.returncode != 0:
            raise ProvisioningError(f"postgres-ha: pg_basebackup for {node_name(node)} failed: {done.stderr.strip()}")
        auto = data / "postgresql.auto.conf"  # the source's own ALTER SYSTEM lines come along
        kept = [line for line in auto.read_text().splitlines(keepends=True) if not line.startswith("primary_")]
        auto.write_text("".join(kept) + self._standby_settings(node))
        (data / "standby.signal").touch()
        if self.os_user is not None:
            account = pwd.getpwnam(self.os_user)
            for path in (data / "postgresql.auto.conf", data / "standby.signal"):
                os.chown(path, account.pw_uid, account.pw_gid)

    def _ensure_slot(self, on: int, node: int) -> None:
        self.sql(
            on,
            f"SELECT pg_create_physical_replication_slot('{node_name(node)}', true) "
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{node_name(node)}')",
        )

    # --- whole cluster and node by node (Cluster) ------------------------------------------

    def _start(self, nodes: Sequence[int]) -> None:
        """Start ``nodes``; a fenced former primary, or a standby that stopped while a failover
        left it behind, is first cloned anew from the primary."""
        rebuilt = [n for n in nodes if (n in self.fenced or n in self.behind) and not self.servers[n].alive]
        others = [n for n in nodes if n not in rebuilt]
        if others:
            super()._start(others)
        if rebuilt:
            for node in rebuilt:
                self.clone(node)
                self.behind.pop(node, None)
            self.fenced.difference_update(rebuilt)
            super()._start(rebuilt)

    def _resumed(self, nodes: Sequence[int]) -> None:
        """Re-point each of ``nodes`` that a failover left behind, or, if it holds WAL the new
        timeline never had, take it down to be cloned afresh by the start that follows."""
        for node in nodes:
            if node in self.behind and self.servers[node].alive:
                self._follow(node, self.behind[node])

    def _follow(self, node: int, fork: int) -> None:
        """Point running standby ``node`` at the current primary if it holds no WAL past
        ``fork`` (the new timeline's switchpoint); else it can never stream from it: take it
        down, still in ``behind``, so the start that follows clones it afresh."""
        self.behind.setdefault(node, fork)
        try:
            position = int(self.sql(node, f"SELECT {WAL_END}", timeout=10) or 0)
        except ProvisioningError:
            position = None  # it does not answer: clone it rather than guess
        if position is None or position > fork:
            self.kill_node(node)
            return
        del self.behind[node]
        self._repoint(node)

    def _repoint(self, node: int) -> None:
        """Make standby ``node`` stream from the current primary (a reload restarts its WAL
        receiver; ``recovery_target_timeline = 'latest'`` follows the promotion's timeline)."""
        self.sql(node, f"ALTER SYSTEM SET primary_conninfo = '{self._conninfo(node)}'")
        self.sql(node, "SELECT pg_reload_conf()")

    def lag_node(self, node: int) -> None:
        """Pause standby ``node``; return once another running standby has flushed all the
        WAL the primary had written at that moment (see :meth:`FailoverCluster.lag_node`)."""
        self.pause_node(node)
        others = [
            node_name(n)
            for n in self.standbys()
            if n not in self.paused and n not in self.fenced and self.servers[n].alive
        ]
        if not others:
            return
        lsn = self.sql(self.primary, "SELECT pg_current_wal_lsn()")
        names = ", ".join(f"'{name}'" for name in others)
        caught_up = (
            f"SELECT count(*) FROM pg_stat_replication WHERE application_name IN ({names}) AND flush_lsn >= '{lsn}'"
        )
        deadline = time.monotonic() + self.settle_timeout
        while self.sql(self.primary, caught_up, timeout=5) == "0":
            if time.monotonic() > deadline:
                raise ProvisioningError(f"postgres-ha: no standby but {node_name(node)} reached {lsn}")
            time.sleep(0.02)

    # --- uneven standbys (FailoverCluster.replica_position, hold_replay) ----------------------

    can_hold_replay = True

    def replica_position(self, node: int) -> tuple[int, int]:
        """(received, replayed) WAL of standby ``node`` in bytes; the primary's flushed WAL end
        twice. A standby that has not streamed since it started received what it replayed."""
        if not self.in_recovery(node):
            flushed = int(self.sql(node, "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint"))
            return flushed, flushed
        both = self.sql(
            node,
            "SELECT pg_wal_lsn_diff(COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint"
            " || ' ' || pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
        )
        received, replayed = (int(part) for part in both.split())
        return received, replayed

    def hold_replay(self, node: int) -> None:
        """``pg_wal_replay_pause()`` on standby ``node``: its WAL receiver goes on flushing (and
        confirming, for synchronous commits) while the startup process replays nothing more.
        Returns once the pause took effect."""
        self.sql(node, "SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + self.settle_timeout
        while self.sql(node, "SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise ProvisioningError(f"postgres-ha: {node_name(node)} did not pause its replay")
            time.sleep(0.02)

    def release_replay(self, node: int) -> None:
        if self.servers[node].alive and node not in self.paused and self.in_recovery(node):
            self.sql(node, "SELECT pg_wal_replay_resume()")

    # --- failover ----------------------------------------------------------------------------

    def most_advanced_standby(self) -> int:
        """The reachable standby that received the most WAL: promoting any other would
        discard commits that one holds (with ANY 1, only one standby may have confirmed)."""
        best: tuple[int, int] | None = None
        for node in self.standbys():
            if not self.servers[node].alive or node in self.fenced or node in self.paused:
                continue
            try:
                lsn = self.sql(node, f"SELECT {WAL_END}", timeout=5)
            except ProvisioningError:
                continue
            position = int(lsn or 0)
            if best is None or position > best[0]:
                best = (position, node)
        if best is None:
            raise ProvisioningError("postgres-ha: no reachable standby to promote")
        return best[1]

    def _failover(self, to: int | None, isolate: bool) -> int:
        """The runbook: fence the primary, promote the most advanced standby (or ``to``), point
        the other standbys at it. Fencing is a SIGKILL: a partition alone does not fence, since
        the harness's clients reach every node from the root namespace. Returns the new primary.
        The old one stays down until it is started or restored, and then comes back as a standby
        cloned from the new primary.

        A paused (lagging) standby is not a candidate while another standby runs: it cannot
        answer, and what it holds another has too (:meth:`lag_node`). It keeps streaming from
        nowhere until resumed, and then follows the new primary (``behind``). When only paused
        standbys are left, the runbook does what an operator whose last standby is stalled
        does: resume them and promote the most advanced, rather than leave the cluster without
        a primary. Synchronous (``ANY 1``), nothing acknowledged is lost by it: no commit could
        be confirmed while the only standbys were paused. Asynchronous, what the primary
        acknowledged after their pause is lost: the measured, tolerated loss."""
        old = self.primary
        running = [n for n in self.standbys() if self.servers[n].alive and n not in self.fenced]
        self.fence(old)
        stalled = [n for n in running if n in self.paused]
        if to in self.paused or (to is None and running and running == stalled):
            for node in [to] if to is not None else stalled:
                self.servers[node].resume()
                self.paused.discard(node)
        new = self.most_advanced_standby() if to is None else to
        if new == old or not 0 <= new < self.size:
            raise ProvisioningError(f"postgres-ha: cannot promote node {new}")
        self._promote(new)
        self.primary = new
        self.behind.pop(new, None)
        for node in range(self.size):
            if node != new:
                self._ensure_slot(new, node)
        self.sql(
            new,
            f"SELECT pg_drop_replication_slot('{node_name(new)}') WHERE EXISTS "
            f"(SELECT 1 FROM pg_replication_slots WHERE slot_name = '{node_name(new)}')",
        )
        fork = self._fork_point(new)
        for node in self.standbys():
            if node in self.fenced:
                continue
            if node in self.paused or not self.servers[node].alive:
                # Followed when it runs again (a stopped one still names the old primary in
                # its settings, and would never stream); the first fork it missed decides.
                self.behind.setdefault(node, fork)
                continue
            self._follow(node, fork)  # one the promotion's measure missed may be past the fork
        return new

    def _promote(self, node: int) -> None:
        """Promote standby ``node`` and return once it has left recovery. Not
        ``pg_promote(wait => true)``: that statement holds its snapshot while replay finishes,
        and replay resumed after ``hold_replay`` cancelled it as a recovery conflict though the
        promotion went on (seen in a main job: the harness then took the old primary for the
        current one). Each poll is a statement of its own."""
        if self.sql(node, "SELECT pg_promote(false)") != "t":
            raise ProvisioningError(f"postgres-ha: {node_name(node)} refused to be promoted")

        def promoted() -> bool:
            try:
                return not self.in_recovery(node)
            except ProvisioningError:
                return False  # a poll cancelled by a recovery conflict: ask again

        patience.poll_until(
            promoted, what=f"postgres-ha: {node_name(node)} to leave recovery", bound_name="settle-ceiling"
        )

    def _fork_point(self, node: int) -> int:
        """Where ``node``'s newest timeline forked off its parent: the switchpoint on the last
        line of its newest timeline history file (``parentTLI <tab> LSN <tab> reason``)."""
        history = self.sql(
            node,
            "SELECT pg_read_file('pg_wal/' || name) FROM pg_ls_waldir() "
            "WHERE name LIKE '%.history' ORDER BY name DESC LIMIT 1",
        )
        lines = [line.split("\t") for line in history.splitlines() if line.strip()]
        if not lines or len(lines[-1]) < 2:
            raise ProvisioningError(f"postgres-ha: {node_name(node)} has no timeline history after its promotion")
        high, low = lines[-1][1].split("/")
        return (int(high, 16) << 32) + int(low, 16)

    def __repr__(self) -> str:
        primary = node_name(self.primary)
        return f"PostgresHaCluster({self.size} nodes, primary {primary}, network {self.network.token[:8]})"


class PostgresHaProvisioner(PostgresProvisioner):
    """A private primary with ``nodes - 1`` streaming standbys; ``synchronous`` makes every
    commit wait until one standby has flushed it (``ANY 1``), else replication is asynchronous."""

    def __init__(self, *, nodes: int = 3, synchronous: bool = True) -> None:
        if nodes < 2:
            raise ValueError("postgres-ha needs a primary and at least one standby")
        self.nodes = nodes
        self.synchronous = synchronous
        mode = "synchronous" if synchronous else "asynchronous"
        self.server_name = f"postgres primary with {nodes - 1} {mode} standbys"

    def probe(self, ctx: ProvisionContext) -> Availability:
        if ctx.url is None and (reason := namespaces_unavailable_reason()) is not None:
            return Availability.unavailable(f"postgres-ha runs one node per network namespace: {reason}")
        if ctx.url is None and shutil.which("setpriv") is None:
            return Availability.unavailable("postgres-ha needs setpriv (util-linux) to run nodes as postgres")
        availability = super().probe(ctx)
        if availability.via is Via.CONTAINER:  # no container recipe: nodes run in namespaces here
            return Availability.unavailable(f"no postgres binary found; install: {self.install_hint}")
        return availability

    def _settings(self, host: Host, network: Network) -> list[str]:
        names = ", ".join(node_name(n) for n in range(self.nodes))
        settings = {
            "listen_addresses": host.address,
            "port": str(PORT),
            "unix_socket_directories": "",
            "fsync": "on",
            "full_page_writes": "on",
            "shared_buffers": "32MB",
            "wal_level": "logical",  # the change feed decodes the WAL on the primary
            "max_wal_senders": "16",
            "max_replication_slots": "64",
            "wal_keep_size": "128MB",  # a re-pointed standby finds the WAL it needs on the new primary
            "hot_standby": "on",
            "wal_receiver_timeout": "5s",  # after a partition heals, streams resume within seconds
            "wal_sender_timeout": "5s",
            "wal_retrieve_retry_interval": "500ms",
            "synchronous_commit": "on",
            # ANY 1 of all nodes (a node never streams from itself): after a failover the
            # remaining standby confirms commits for the new primary without a reconfiguration.
            "synchronous_standby_names": f"ANY 1 ({names})" if self.synchronous else "",
        }
        argv = []
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        if ctx.lazy_data_dir:  # refused before three nodes start for nothing
            raise NotSupported(ctx.backend, "power loss", "its nodes' data dirs are not on a lazy filesystem")
        initdb = self._initdb(binary)
        if initdb is None:
            raise ProvisioningError(f"postgres-ha: no initdb beside {binary}")
        user = OS_USER if os.geteuid() == 0 else None
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        homes = [workdir / node_name(n) for n in range(self.nodes)]
        for home in homes:
            home.mkdir(exist_ok=True)
            if user is not None:
                account = pwd.getpwnam(user)
                os.chown(home, account.pw_uid, account.pw_gid)
        if user is not None:
            _make_traversable(workdir, user)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        started = time.monotonic()
        init_cluster(initdb, homes[0] / "data", user, env, "postgres-ha")
        network = Network.create(self.nodes, recording_dir() or workdir)
        try:
            assert network.subnet is not None
            with open(homes[0] / "data" / "pg_hba.conf", "a") as hba:
                # trust inside the run's private /24 only: the nodes and the bridge (the harness)
                hba.write(f"host all all {network.subnet} trust\nhost replication all {network.subnet} trust\n")
            servers = [self._server(binary, host, network, homes[host.index], env, user) for host in network.hosts]
        except BaseException:
            network.close()
            raise
        cluster = PostgresHaCluster(servers, network, probe_port=PORT, settle_timeout=READY_TIMEOUT)
        cluster.setup(bin_dir=binary.parent, os_user=user)
        try:
            cluster._start([0])
            # clone the standbys one after the other (each base backup checkpoints the primary),
            # then start them together
            for node in cluster.standbys():
                cluster.clone(node)
            cluster._start(cluster.standbys())
            for node in range(self.nodes):  # every node holds a slot for the others: any can be promoted
                for other in range(self.nodes):
                    if other != node and node != 0:
                        cluster._ensure_slot(node, other)
        except BaseException:
            cluster.close()
            raise
        cluster.time_to_ready = time.monotonic() - started
        hosts = ",".join(f"{h.address}:{PORT}" for h in network.hosts)
        url = f"postgresql://{PRIVATE_USER}@{hosts}/{PRIVATE_DATABASE}?target_session_attrs=read-write"
        return Endpoint(
            url=url,
            via=Via.BINARY,
            cluster=cluster,  # its process control too
            options={
                "replicas": self.nodes,
                "synchronous": self.synchronous,
                "start_seconds": cluster.time_to_ready,
            },
            teardown=cluster.close,
            # a fault proxy stands in front of the primary, wherever a failover moved it
            direct=lambda: f"postgresql://{PRIVATE_USER}@{cluster.address(cluster.primary)}:{PORT}/{PRIVATE_DATABASE}",
        )

    def _server(
        self, binary: Path, host: Host, network: Network, home: Path, env: dict[str, str], user: str | None
    ) -> ServerProcess:
        argv = [str(binary), "-D", str(home / "data"), *self._settings(host, network)]
        if user is not None:  # ip netns exec needs root; the server refuses it: drop after entering
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--pdeathsig=SIGKILL", *argv]
        return NamespacedPostgres(
            f"postgres {node_name(host.index)}",
            host.argv(argv),
            host=host.address,
            port=PORT,
            log_path=home / "postgres.log",
            env=env,
            cwd=home,
            ready=functools.partial(accepts_sessions, host.address, PORT, PRIVATE_USER, PRIVATE_DATABASE),
            ready_timeout=READY_TIMEOUT,
            stop_signal=signal.SIGINT,  # fast shutdown
        )

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise ProvisioningError("postgres-ha is not provisioned in containers")
