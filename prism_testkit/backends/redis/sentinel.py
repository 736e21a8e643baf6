"""Provisioning of ``redis-sentinel``: a Redis primary, replicas and three Sentinels, as users
deploy them: three hosts (network namespaces), each running a ``redis-server`` and a Sentinel
(``redis-server --sentinel``), so cutting a host off takes its Sentinel with it.

Every node persists with ``appendfsync always`` and replicates asynchronously; the Sentinels
watch the primary under the service name :data:`SERVICE` with a quorum of two and mark it down
after :data:`DOWN_AFTER_MS`. Clients find the primary through the Sentinels (the endpoint's URL
is ``redis+sentinel://host:port,host:port,host:port/prism``), as redis-py's ``Sentinel`` does.

Administration speaks RESP over a socket (:func:`command`): provisioning never imports redis-py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from prism_testkit import Availability, Endpoint, ProvisionContext, ServerProcess, Via, patience
from prism_testkit.clusters import FailoverCluster, Host, Network, namespaces_unavailable_reason, recording_dir
from prism_testkit.errors import NotSupported, ProvisioningError

from .provision import AOF_DIR, READY_TIMEOUT, RedisProvisioner, answers_ping

PORT = 6379  # every host has its own namespace: every redis-server listens on the same port
SENTINEL_PORT = 26379
SERVICE = "prism"  # the name the Sentinels monitor the primary under
QUORUM = 2  # of three Sentinels
# Unanswered for this long, the primary is subjectively down: long enough that a loaded
# 2-core machine's stall of the primary (over 1 s) is not taken for a crash mid-test.
DOWN_AFTER_MS = 2500
FAILOVER_TIMEOUT_MS = 10_000
# Seconds a failover may take until clients find the new primary. A Sentinel retries a split
# election only after twice failover-timeout (20 s): room for one retry. Polled, so a quick
# failover returns at once.
FAILOVER_WAIT = 60.0
# A Sentinel's flags for the primary while it is not settled on it (SENTINEL MASTER's "flags").
UNSETTLED_FLAGS = {"s_down", "o_down", "failover_in_progress", "promoted", "disconnected"}
ADMIN_TIMEOUT = 2.0

Reply = str | int | list["Reply"] | None


class ReplyError(ProvisioningError):
    """The server answered a command with an error."""


def _read_reply(stream: BinaryIO) -> Reply:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ReplyError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line[:40]!r}")


def command(host: str, port: int, *args: str | int, timeout: float = ADMIN_TIMEOUT) -> Reply:
    """Send one command to ``host:port`` on a fresh connection and return its reply."""
    parts = [str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as stream:
            return _read_reply(stream)


def _pairs(flat: Reply) -> dict[str, str]:
    """A Sentinel's flat ``[key, value, key, value ...]`` reply as a dict."""
    items = flat if isinstance(flat, list) else []
    return {str(k): str(v) for k, v in zip(items[::2], items[1::2], strict=False)}


class RedisSentinelCluster(FailoverCluster):
    """The data nodes (``servers``, one per host), the Sentinels beside them and the failover:
    the primary is lost (SIGKILL), the Sentinels agree it is down, elect a leader among
    themselves, promote the replica with the most data and re-point the others. A fenced former
    primary is started again as a replica of the new one, as a careful operator restarts it (a
    full resync discards what it alone held). Started as it was, it would serve as a primary
    with its old data until a Sentinel's next ``INFO`` of it (every 10 s) turned it into a
    replica: no client that finds the primary through the Sentinels would reach it, and every
    restore would wait those 10 s."""

    sentinels: list[ServerProcess]
    can_isolate = True
    can_lag = True

    def setup(self, sentinels: list[ServerProcess]) -> None:
        self.setup_failover()
        self.sentinels = sentinels
        self.settled = self._settled

    def address(self, node: int) -> str:
        return self.network.hosts[node].address

    def node_of(self, address: str) -> int | None:
        return next((h.index for h in self.network.hosts if h.address == address), None)

    def sentinel(self, node: int, *args: str | int) -> Reply:
        return command(self.address(node), SENTINEL_PORT, "SENTINEL", *args)

    def redis(self, node: int, *args: str | int) -> Reply:
        return command(self.address(node), PORT, *args)

    def sentinel_views(self) -> list[int | None]:
        """The primary each running Sentinel names (None: it did not answer)."""
        return list(self._views_by_node().values())

    def _views_by_node(self) -> dict[int, int | None]:
        views: dict[int, int | None] = {}
        for node, sentinel in enumerate(self.sentinels):
            if not sentinel.alive:
                continue
            try:
                reply = self.sentinel(node, "get-master-addr-by-name", SERVICE)
            except (OSError, ConnectionError, ProvisioningError):
                views[node] = None
                continue
            views[node] = self.node_of(str(reply[0])) if isinstance(reply, list) and reply else None
        return views

    def current_primary(self) -> int | None:
        named = [v for v in self.sentinel_views() if v is not None]
        if not named:
            return self.primary
        return max(set(named), key=named.count)

    def role(self, node: int) -> list[Reply]:
        try:
            reply = self.redis(node, "ROLE")
        except (OSError, ConnectionError, ProvisioningError):
            return []
        return reply if isinstance(reply, list) else []

    def _settled(self) -> bool:
        """The Sentinels agree on a primary (they may have failed over on their own, after a
        partition: it becomes :attr:`primary`), it is a primary, every running replica streams
        from it, and every running Sentinel knows every running replica and sees a quorum."""
        views = self.sentinel_views()
        if not views or views[0] is None or any(v != views[0] for v in views):
            return False
        self.primary = views[0]
        primary = self.address(self.primary)
        if self.role(self.primary)[:1] != ["master"]:
            return False
        running = [n for n in self.replicas() if self.servers[n].alive and n not in self.paused]
        for node in running:
            role = self.role(node)
            if role[:2] != ["slave", primary] or role[3:4] != ["connected"]:
                return False
        for node, sentinel in enumerate(self.sentinels):
            if not sentinel.alive:
                continue
            try:
                named = self.sentinel(node, "get-master-addr-by-name", SERVICE)
                watched = self.sentinel(node, "master", SERVICE)
                known = self.sentinel(node, "replicas", SERVICE)
                self.sentinel(node, "ckquorum", SERVICE)
            except (OSError, ConnectionError, ProvisioningError):
                return False
            if not isinstance(named, list) or named[:1] != [primary]:
                return False
            # Still marked down (a partition just healed), or a failover under way: the Sentinels
            # would promote a replica after this returned, and the next example's clients would
            # meet a primary closing their connections with no fault injected.
            if UNSETTLED_FLAGS & set(_pairs(watched).get("flags", "").split(",")):
                return False
            healthy = {
                _pairs(r).get("ip")
                for r in (known if isinstance(known, list) else [])
                if not {"s_down", "o_down", "disconnected"} & set(_pairs(r).get("flags", "").split(","))
            }
            if not {self.address(n) for n in running} <= healthy:
                return False
        return True

    def _start(self, nodes: Sequence[int]) -> None:
        for node in self.fenced.intersection(nodes) - {self.primary}:
            self._replica_of_primary(node)
        super()._start(nodes)
        self.fenced.difference_update(nodes)

    def _replica_of_primary(self, node: int) -> None:
        """Point ``node``'s config file at the current primary (the Sentinels rewrite the same
        line when they re-point a node)."""
        config = self._home(node) / "redis.conf"
        kept = [line for line in config.read_text().splitlines() if not line.startswith(("replicaof ", "slaveof "))]
        config.write_text("\n".join([*kept, f"replicaof {self.address(self.primary)} {PORT}"]) + "\n")

    def lag_node(self, node: int) -> None:
        """Pause replica ``node``; return once another running replica has processed what the
        primary had written at that moment and every running Sentinel sees the paused one down
        (a Sentinel passes over a replica it sees down; one it still counted on would stall the
        failover it sent REPLICAOF NO ONE to). Resumed, the Sentinels re-point it themselves."""
        self.pause_node(node)
        offset = self.role(self.primary)[1:2]
        others = [n for n in self.replicas() if n not in self.paused and self.servers[n].alive]
        deadline = time.monotonic() + self.settle_timeout
        while not (self._caught_up(others, offset) and self._seen_down(node)):
            if time.monotonic() > deadline:
                raise ProvisioningError(
                    f"redis-sentinel: n{node} paused, but no replica caught up or it is not seen down"
                )
            time.sleep(0.05)

    def _caught_up(self, replicas: Sequence[int], offset: list[Reply]) -> bool:
        """Some of ``replicas`` processed the primary's stream up to ``offset`` (``ROLE``'s)."""
        if not replicas or not offset or not isinstance(offset[0], int):
            return True
        return any(len(role := self.role(n)) > 4 and int(str(role[4])) >= offset[0] for n in replicas)

    def _seen_down(self, node: int) -> bool:
        for sentinel_node, sentinel in enumerate(self.sentinels):
            if not sentinel.alive:
                continue
            try:
                known = self.sentinel(sentinel_node, "replicas", SERVICE)
            except (OSError, ConnectionError, ProvisioningError):
                return False
            flags = {
                _pairs(r).get("ip"): set(_pairs(r).get("flags", "").split(","))
                for r in (known if isinstance(known, list) else [])
            }
            if "s_down" not in flags.get(self.address(node), set()):
                return False
        return True

    def replica_position(self, node: int) -> tuple[int, int]:
        """(read, processed) replication offsets of replica ``node`` (``INFO replication``);
        the primary's ``master_repl_offset`` twice. A replica applies a command as it reads it,
        so the two differ only by what is in flight."""
        info = self.redis(node, "INFO", "replication")
        fields = dict(
            line.split(":", 1) for line in (info if isinstance(info, str) else "").splitlines() if ":" in line
        )
        if fields.get("role") == "master":
            offset = int(fields["master_repl_offset"])
            return offset, offset
        processed = int(fields.get("slave_repl_offset", "0"))
        return int(fields.get("slave_read_repl_offset", processed)), processed

    def await_positions_seen(self) -> None:
        """Return once every running Sentinel knows where each running replica is now: it took
        an ``INFO`` of it after this call, or the offset of its last one is already the
        replica's, or it sees the replica down (so would pass it over). A Sentinel ranks
        replicas by the offsets of its last ``INFO``, polled every 10 s while the primary is up,
        so a primary lost sooner may promote a replica by where it was seconds ago
        (docs/findings.md); a Sentinel in TILT mode (its own timer starved) polls nothing for
        30 s. The bound is the settle bound scaled by the machine's slowness, as settling is.

        Also returns once a Sentinel names another primary: the Sentinels failed over on their
        own (a primary that missed their pings for down-after-milliseconds on a loaded machine),
        so the choice this waits to be well informed has been made, and whoever asked is to judge
        it (the failover that follows finds the node they promoted). Waiting on would wait for
        the promoted node to be listed as a replica, which it never is again."""
        started = time.monotonic()
        deadline = started + self.settle_timeout * patience.slowness()
        running = [n for n in self.replicas() if self.servers[n].alive and n not in self.paused]
        offsets = {self.address(n): self.replica_position(n)[1] for n in running}
        while True:
            if self._failed_over_on_their_own():
                return
            asked_after_ms = (time.monotonic() - started) * 1000
            stale = [
                f"sentinel n{node}{self._tilt(node)}: {view}"
                for node, sentinel in enumerate(self.sentinels)
                if sentinel.alive
                for view in self._stale_views(node, offsets, asked_after_ms)
            ]
            if not stale:
                return
            if time.monotonic() > deadline:
                raise patience.Unsettled(
                    "redis-sentinel: every Sentinel to know each replica's offset",
                    time.monotonic() - started,
                    "stall",
                    "; ".join(stale),
                    f"replicas' own offsets {offsets}",
                )
            time.sleep(0.1)

    def _failed_over_on_their_own(self) -> bool:
        """A running Sentinel names a primary other than :attr:`primary`: a Sentinel names a new
        one only once a majority of them elected a leader that promoted it."""
        return any(view is not None and view != self.primary for view in self._views_by_node().values())

    def _stale_views(self, node: int, offsets: dict[str, int], asked_after_ms: float) -> list[str]:
        """How Sentinel ``node`` sees each replica of ``offsets`` (address: its offset now) that
        it neither asked for ``INFO`` within ``asked_after_ms`` nor knows at that offset, nor
        sees down."""
        try:
            known = self.sentinel(node, "replicas", SERVICE)
        except (OSError, ConnectionError, ProvisioningError) as exc:
            return [f"no answer ({exc})"]
        replies = known if isinstance(known, list) else []
        views = {(fields := _pairs(reply)).get("ip", ""): fields for reply in replies}
        stale = []
        for address, offset in offsets.items():
            view = views.get(address)
            if view is None:
                stale.append(f"{address} not known")
                continue
            refreshed = int(view.get("info-refresh", "0") or 0)
            seen = int(view.get("slave-repl-offset", "0") or 0)
            if "s_down" in view.get("flags", "").split(",") or 0 < refreshed < asked_after_ms or seen >= offset:
                continue
            stale.append(f"{address} at {seen} by an INFO {refreshed} ms old, flags {view.get('flags')}")
        return stale

    def _tilt(self, node: int) -> str:
        """`` (TILT)`` while Sentinel ``node`` is in TILT mode, else nothing."""
        try:
            info = command(self.address(node), SENTINEL_PORT, "INFO", "sentinel")
        except (OSError, ConnectionError, ProvisioningError):
            return ""
        return " (TILT)" if "sentinel_tilt:1" in str(info) else ""

    def _failover(self, to: int | None, isolate: bool) -> int:
        """Kill the primary (or, ``isolate``, cut its host off from the others: its Sentinel
        with it) and wait until the Sentinels on the other hosts name a new primary that says
        it is one. ``to``: the other replicas get replica-priority 0 for this failover."""
        old = self.primary
        others = [n for n in self.replicas() if n != to] if to is not None else []
        for node in others:
            self.redis(node, "CONFIG", "SET", "replica-priority", 0)
        try:
            if isolate:
                self.partition([[old], self.replicas()])
            else:
                self.fence(old)
            new = self._promoted(old)
        finally:
            for node in others:
                if self.servers[node].alive:
                    self.redis(node, "CONFIG", "SET", "replica-priority", 100)
        self.primary = new
        return new

    def _promoted(self, old: int) -> int:
        deadline = time.monotonic() + FAILOVER_WAIT
        while True:
            views = [v for n, v in self._views_by_node().items() if n != old]
            new = views[0] if views else None
            if new is not None and new != old and all(v == new for v in views) and self.role(new)[:1] == ["master"]:
                return new
            if time.monotonic() > deadline:
                # what each Sentinel last said: why none of them acted
                said = "; ".join(f"sentinel n{n}: {self.sentinels[n].log_tail(8)}" for n in range(self.size))
                raise ProvisioningError(
                    f"redis-sentinel: nothing promoted {FAILOVER_WAIT:.0f}s after n{old} was lost ({said})"
                )
            time.sleep(0.02)

    def close(self) -> None:
        try:
            self._each(ServerProcess.stop, self.sentinels)
        finally:
            super().close()

    def __repr__(self) -> str:
        return f"RedisSentinelCluster({self.size} nodes, primary n{self.primary}, network {self.network.token[:8]})"


class RedisSentinelProvisioner(RedisProvisioner):
    """``nodes`` hosts, each with a redis-server (the first one the primary) and a Sentinel.
    ``wait_replicas``: the driver follows every write with ``WAIT`` for that many replicas."""

    server_name = "redis-server primary, replicas and Sentinels"

    def __init__(self, *, nodes: int = 3, wait_replicas: int = 0) -> None:
        if nodes < 2:
            raise ValueError("redis-sentinel needs a primary and at least one replica")
        super().__init__(("--appendonly", "yes", "--appendfsync", "always"), durable=True)
        self.nodes = nodes
        self.wait_replicas = wait_replicas

    def probe(self, ctx: ProvisionContext) -> Availability:
        if ctx.url is None and (reason := namespaces_unavailable_reason()) is not None:
            return Availability.unavailable(f"redis-sentinel runs one host per network namespace: {reason}")
        availability = super().probe(ctx)
        if availability.via is Via.CONTAINER:  # no container recipe: hosts are namespaces here
            return Availability.unavailable(f"no redis-server found; install: {self.install_hint}")
        return availability

    def url_endpoint(self, ctx: ProvisionContext, url: str) -> Endpoint:
        return Endpoint(url=url, via=Via.URL, options={"wait_replicas": self.wait_replicas})

    def _server_config(self, host: Host, home: Path, primary: Host) -> Path:
        data = home / "data"
        (data / AOF_DIR).mkdir(parents=True, exist_ok=True)  # on disk before the first fsync in it
        lines = [
            f"bind {host.address}",
            f"port {PORT}",
            "protected-mode no",
            f"dir {data}",
            'save ""',
            "appendonly yes",
            "appendfsync always",
            "repl-diskless-sync-delay 0",  # a (re)joining replica syncs at once, not after 5 s
            "client-output-buffer-limit pubsub 256mb 64mb 60",
        ]
        if host.index != primary.index:
            lines.append(f"replicaof {primary.address} {PORT}")
        config = home / "redis.conf"  # a file: the Sentinels rewrite it when they re-point a node
        config.write_text("\n".join(lines) + "\n")
        return config

    def _sentinel_config(self, host: Host, home: Path, primary: Host) -> Path:
        work = home / "sentinel"
        work.mkdir(exist_ok=True)
        config = home / "sentinel.conf"
        config.write_text(
            f"bind {host.address}\nport {SENTINEL_PORT}\nprotected-mode no\ndir {work}\n"
            f"sentinel monitor {SERVICE} {primary.address} {PORT} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} {self.nodes}\n"
        )
        return config

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        if ctx.lazy_data_dir:  # refused before three nodes start for nothing
            raise NotSupported(ctx.backend, "power loss", "its nodes' data dirs are not on a lazy filesystem")
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        network = Network.create(self.nodes, recording_dir() or workdir)
        try:
            primary = network.hosts[0]
            servers, sentinels = [], []
            for host in network.hosts:
                home = workdir / f"n{host.index}"
                home.mkdir(exist_ok=True)
                config = self._server_config(host, home, primary)
                servers.append(self._process(f"redis n{host.index}", host, [str(binary), str(config)], home, PORT))
                config = self._sentinel_config(host, home, primary)
                argv = [str(binary), str(config), "--sentinel"]
                sentinels.append(self._process(f"sentinel n{host.index}", host, argv, home, SENTINEL_PORT))
        except BaseException:
            network.close()
            raise
        cluster = RedisSentinelCluster(servers, network, probe_port=PORT, settle_timeout=READY_TIMEOUT)
        cluster.setup(sentinels)
        try:
            # the data nodes first, so each Sentinel finds every replica in its first INFO
            for server in servers:  # from this thread: a process dies with the thread that forked it
                server.spawn()
            cluster._each(ServerProcess.ready, servers)
            for sentinel in sentinels:
                sentinel.spawn()
            cluster._each(ServerProcess.ready, sentinels)
            cluster.wait_settled()
        except BaseException:
            cluster.close()
            raise
        cluster.time_to_ready = time.monotonic() - started
        hosts = ",".join(f"{h.address}:{SENTINEL_PORT}" for h in network.hosts)
        return Endpoint(
            url=f"redis+sentinel://{hosts}/{SERVICE}",
            via=Via.BINARY,
            cluster=cluster,  # its process control too
            options={
                "wait_replicas": self.wait_replicas,
                "start_seconds": cluster.time_to_ready,
            },
            teardown=cluster.close,
            # a fault proxy stands in front of the primary itself, reached without the Sentinels
            direct=lambda: f"redis://{cluster.address(cluster.primary)}:{PORT}/0",
        )

    def _process(self, name: str, host: Host, argv: list[str], home: Path, port: int) -> ServerProcess:
        return ServerProcess(
            name,
            host.argv(argv),
            host=host.address,
            port=port,
            log_path=home / f"{name.split()[0]}.log",
            cwd=home,
            ready=lambda: answers_ping(host.address, port),
            ready_timeout=READY_TIMEOUT,
        )

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise ProvisioningError("redis-sentinel is not provisioned in containers")
