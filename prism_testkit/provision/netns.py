"""Hosts on one machine: a network namespace per cluster node, joined by veth pairs to a bridge.

Each node of a cluster gets its own namespace and address in a private /24 the run picks and
removes (``10.213.X.0/24``); the bridge in the root namespace holds ``.1``, so the harness's
clients reach every node directly. A partition is a set of blackhole routes inside the
namespaces it separates (one direction per route, so asymmetric cuts come free), healed by
deleting them: no netfilter, no ``tc``. Every cut is proved: after the routes go in, a TCP
connection across the cut must fail, or :class:`FaultNotInjected` is raised.

What a network creates is recorded before it is created (:func:`record_network`, a file in
the process's work dir naming the owner, a random token and every namespace and link), so the
sweep of a dead run's work dir removes exactly those, by name and token, and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import ipaddress
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prism_testkit.errors import ProvisioningError

SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")  # the /24s a run picks from
FIRST_HOST = 10  # node i gets .(10 + i); the bridge is .1
NAME_PREFIX = "prism-testkit-"  # + token: namespace names (what `ip netns` lists)
LINK_PREFIX = "pk"  # + 8 hex of the token: links (interface names have 15 bytes at most)
RECORD_PREFIX = ".prism-testkit-network-"  # + token + .json, in the owner's work dir
PROBE_TIMEOUT = 0.5  # s: a connection across a cut must fail within this (blackhole: at once)
NETNS_DIR = Path("/run/netns")  # where `ip netns add` binds each namespace
# Held by whoever picks a /24 until its bridge holds the address: two workers that picked the
# same free /24 gave the root namespace two routes to one address, one cluster unreachable.
SUBNET_LOCK = Path("/run/prism-testkit-subnets.lock")
CLONE_NEWNET = 0x40000000
_LIVE: set[Network] = set()


class FaultNotInjected(ProvisioningError):
    """A fault the harness meant to inject did not take effect (traffic still flows)."""


def namespaces_unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the ip command is not installed (Debian: apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (or CAP_NET_ADMIN)"
    return None


def pairs_across(groups: Sequence[Iterable[int]]) -> list[tuple[int, int]]:
    """Every (from, to) pair of hosts in different groups, both directions."""
    sides = [set(group) for group in groups]
    across = [(a, b) for i, one in enumerate(sides) for other in sides[i + 1 :] for a in one for b in other]
    return across + [(b, a) for a, b in across]


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ProvisioningError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    index: int
    namespace: str
    address: str
    link: str  # the veth end on the bridge, in the root namespace

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def connects_from(namespace: str, address: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to ``address:port`` made inside ``namespace`` succeeds.

    Made by a thread of this process that enters the namespace (``setns`` moves only the calling
    thread) and ends with the probe: no ``ip netns exec`` and no interpreter per probe, which
    cost a process, a mount namespace and a Python start-up each (hundreds per run)."""
    outcome: list[bool | BaseException] = []

    def attempt() -> None:
        try:
            with open(NETNS_DIR / namespace, "rb") as handle:
                if _libc().setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into network namespace {namespace} failed")
            try:
                socket.create_connection((address, port), timeout=timeout).close()
            except OSError:
                outcome.append(False)
            else:
                outcome.append(True)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name=f"prism-probe-{namespace}", daemon=True)
    thread.start()
    thread.join()
    (found,) = outcome
    if isinstance(found, BaseException):
        raise found
    return found


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def _subnet_claim() -> Iterator[None]:
    """The machine's lock on picking a /24 (:data:`SUBNET_LOCK`; the kernel drops it when its
    holder dies, so a killed run never leaves it held)."""
    fd = os.open(SUBNET_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of :data:`SUPERNET` no address or route of the root namespace touches yet."""
    used = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    taken = [ipaddress.IPv4Network(word, strict=False) for word in used.split() if _looks_like_net(word)]
    candidates = list(SUPERNET.subnets(new_prefix=24))
    random.shuffle(candidates)  # concurrent workers rarely try the same one first
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise ProvisioningError(f"no free /24 left in {SUPERNET} for a cluster network")


def _looks_like_net(word: str) -> bool:
    try:
        return word[0].isdigit() and ipaddress.IPv4Network(word, strict=False).overlaps(SUPERNET)
    except ValueError:
        return False


class ProvedCuts:
    """Cuts between a network's hosts, each proved part by part. A partition is several cuts and
    a cut may be several parts (a route, a proxy per direction): after :meth:`cut` every part of
    every new cut must be in force (:meth:`_parts`) and, with a probe port, a connection across
    each cut (:meth:`reaches`) must fail; after :meth:`heal` no part of any cut may be left. Any
    one part that did not take effect raises :class:`FaultNotInjected` naming it."""

    cuts: set[tuple[int, int]]  # (from, to): from cannot reach to
    UNCUT = "host {a} still reaches host {b} after the cut"
    UNHEALED = "host {a} is still cut from host {b} after the heal"

    def _block(self, a: int, b: int) -> None:
        raise NotImplementedError

    def _unblock_all(self) -> None:
        raise NotImplementedError

    def _parts(self, pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], dict[str, bool]]:
        """For each cut ``(a, b)``: each part that makes it, and whether it is in force now."""
        raise NotImplementedError

    def reaches(self, a: int, b: int, port: int) -> bool:
        raise NotImplementedError

    def cut(self, pairs: Iterable[tuple[int, int]], *, probe_port: int | None = None) -> None:
        """Cut each ``(a, b)``: ``a`` no longer reaches ``b``. Every part of every new cut must
        be in force; with ``probe_port`` (a port the hosts listen on) each new cut is also
        proved by a connection that must fail."""
        new = [pair for pair in pairs if pair not in self.cuts and pair[0] != pair[1]]
        for a, b in new:
            self._block(a, b)
            self.cuts.add((a, b))
        for (a, b), parts in self._parts(new).items():
            missing = [part for part, held in parts.items() if not held]
            if missing:
                raise FaultNotInjected(self.UNCUT.format(a=a, b=b) + f": not in force: {', '.join(missing)}")
        if probe_port is not None:
            for a, b in new:
                if self.reaches(a, b, probe_port):
                    raise FaultNotInjected(self.UNCUT.format(a=a, b=b))

    def partition(self, groups: Sequence[Iterable[int]], *, probe_port: int | None = None) -> None:
        """Hosts in different groups cannot reach each other, in both directions."""
        self.cut(pairs_across(groups), probe_port=probe_port)

    def heal(self) -> None:
        """Remove every cut. No part of any may be left: a heal that left one raises
        :class:`FaultNotInjected` naming it (and keeps it, so the next heal tries again)."""
        healed = sorted(self.cuts)
        self._unblock_all()
        left = {pair: [part for part, held in parts.items() if held] for pair, parts in self._parts(healed).items()}
        left = {pair: parts for pair, parts in left.items() if parts}
        self.cuts = set(left)
        if left:
            raise FaultNotInjected(
                "; ".join(
                    self.UNHEALED.format(a=a, b=b) + f": still in force: {', '.join(parts)}"
                    for (a, b), parts in sorted(left.items())
                )
            )


@dataclass
class Network(ProvedCuts):
    """A bridge and ``size`` hosts, made by :meth:`create` and removed by :meth:`close`."""

    size: int
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    hosts: list[Host] = field(default_factory=list)
    subnet: ipaddress.IPv4Network | None = None
    cuts: set[tuple[int, int]] = field(default_factory=set)  # (from, to): from cannot reach to
    _record: Path | None = None

    @property
    def bridge(self) -> str:
        return self.link("b")

    def link(self, suffix: str) -> str:
        return f"{LINK_PREFIX}{self.token[:8]}{suffix}"

    def __hash__(self) -> int:
        return hash(self.token)

    @classmethod
    def create(cls, size: int, record_dir: Path | None) -> Network:
        reason = namespaces_unavailable_reason()
        if reason is not None:
            raise ProvisioningError(f"cannot make a network of {size} hosts: {reason}")
        network = cls(size)
        with _subnet_claim():
            network.subnet = _free_subnet()
            addresses = list(network.subnet.hosts())
            network.hosts = [
                Host(i, f"{NAME_PREFIX}{network.token}-n{i}", str(addresses[FIRST_HOST - 1 + i]), network.link(f"h{i}"))
                for i in range(size)
            ]
            if record_dir is not None:
                network._record = record_network(record_dir, network)
            _LIVE.add(network)
            try:
                _ip("link", "add", network.bridge, "type", "bridge")
                _ip("addr", "add", f"{addresses[0]}/24", "dev", network.bridge)  # the /24 is taken from here on
            except BaseException:
                network.close()
                raise
        try:
            network._build(str(addresses[0]))
        except BaseException:
            network.close()
            raise
        return network

    def _build(self, gateway: str) -> None:
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            peer = self.link(f"p{host.index}")  # renamed eth0 inside
            _ip("netns", "add", host.namespace)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", host.namespace)
            _ip("link", "set", host.link, "master", self.bridge, "up")
            _ip("link", "set", "lo", "up", namespace=host.namespace)
            _ip("link", "set", peer, "name", "eth0", namespace=host.namespace)
            _ip("addr", "add", f"{host.address}/24", "dev", "eth0", namespace=host.namespace)
            _ip("link", "set", "eth0", "up", namespace=host.namespace)
            _ip("route", "add", "default", "via", gateway, namespace=host.namespace)

    # --- partitions ----------------------------------------------------------------------

    def _block(self, a: int, b: int) -> None:
        """Drop every packet host ``a`` sends to host ``b``."""
        _ip("route", "add", "blackhole", f"{self.hosts[b].address}/32", namespace=self.hosts[a].namespace)

    def _unblock_all(self) -> None:
        for a, b in sorted(self.cuts):
            # a route already gone is no error here: what is left is proved by _parts
            _ip(
                "route",
                "del",
                "blackhole",
                f"{self.hosts[b].address}/32",
                namespace=self.hosts[a].namespace,
                check=False,
            )

    def _parts(self, pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], dict[str, bool]]:
        """Each cut is one blackhole route in the sender's namespace, listed by the kernel."""
        routes: dict[int, set[str]] = {}
        for a in sorted({a for a, _ in pairs}):
            listed = _ip("-j", "route", "show", "type", "blackhole", namespace=self.hosts[a].namespace).stdout
            routes[a] = {str(route.get("dst", "")).removesuffix("/32") for route in json.loads(listed or "[]")}
        return {
            (a, b): {f"blackhole route to {self.hosts[b].address} in host {a}": self.hosts[b].address in routes[a]}
            for a, b in pairs
        }

    def reaches(self, a: int, b: int, port: int) -> bool:
        """Whether a TCP connection from host ``a`` to host ``b``'s ``port`` succeeds."""
        return connects_from(self.hosts[a].namespace, self.hosts[b].address, port, PROBE_TIMEOUT)

    # --- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every namespace and link this network made; safe to call twice."""
        remove_network(self.token, [h.namespace for h in self.hosts], [self.bridge, *(h.link for h in self.hosts)])
        if self._record is not None:
            with contextlib.suppress(FileNotFoundError):
                self._record.unlink()
        _LIVE.discard(self)


def record_network(record_dir: Path, network: Network) -> Path:
    from prism_testkit.provision.process_identity import stamp

    owner = stamp(os.getpid())
    assert owner is not None  # this process is running
    path = record_dir / f"{RECORD_PREFIX}{network.token}.json"
    record = {
        "owner": owner.as_record(),
        "token": network.token,
        "namespaces": [h.namespace for h in network.hosts],
        "links": [network.bridge, *(h.link for h in network.hosts)],
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    return path


def remove_network(token: str, namespaces: Sequence[str], links: Sequence[str]) -> None:
    """Delete the namespaces and links a network of ``token`` made. Only names that carry the
    token are touched, whatever a record says: a record cannot name someone else's link."""
    for namespace in namespaces:
        if namespace.startswith(f"{NAME_PREFIX}{token}-") and namespace in _namespaces():
            _ip("netns", "del", namespace, check=False)  # its veth ends go with it
    for link in links:
        if link.startswith(f"{LINK_PREFIX}{token[:8]}"):
            _ip("link", "del", link, check=False)


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def sweep_networks(workdir: Path) -> list[str]:
    """Remove the networks recorded in a dead run's work dir; returns their tokens."""
    swept = []
    for path in workdir.glob(f"{RECORD_PREFIX}*.json"):
        if path.is_symlink():
            continue
        try:
            record = json.loads(path.read_text())
            token = record["token"]
            namespaces, links = list(record["namespaces"]), list(record["links"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not (isinstance(token, str) and path.name == f"{RECORD_PREFIX}{token}.json" and len(token) == 16):
            continue
        if shutil.which("ip") is not None:
            remove_network(token, [str(n) for n in namespaces], [str(link) for link in links])
        swept.append(token)
    return swept


def close_all(recorded_in: Path | None = None) -> None:
    """Close this process's live networks (only those recorded in ``recorded_in``, if given)."""
    for network in list(_LIVE):
        if recorded_in is None or (network._record is not None and network._record.parent == recorded_in):
            with contextlib.suppress(Exception):
                network.close()


atexit.register(close_all)
