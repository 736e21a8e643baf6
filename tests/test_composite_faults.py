"""Faults built of several parts fail loudly when any one part does not take effect (#41, kind 3).

A partition is several cuts (a blackhole route per direction between namespaces, or a link proxy
per direction on loopback), a heal removes several, and a power cut of a cluster cuts every
node's lazy filesystem. Each test sabotages exactly one part, at every position in turn, and
requires :class:`FaultNotInjected`; the unsabotaged fault then still works.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.faults.linkproxies import LOOPBACK, LinkProxies
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.provision import netns
from prism_testkit.provision.lazymount import LazyMount, LazyMounts, fuse_unavailable_reason
from prism_testkit.provision.netns import FaultNotInjected, Network, namespaces_unavailable_reason, pairs_across

PORT = 7000
LISTEN = (
    "import socket, sys, time\ns = socket.socket(); s.bind((sys.argv[1], {port})); s.listen(64)\n"
    "print('ok', flush=True); time.sleep(600)"
)
SIDES = [[0], [1, 2]]  # four cuts: 0->1, 0->2, 1->0, 2->0


# ---- network namespaces -------------------------------------------------------------------


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    made = Network.create(3, tmp_path)
    listeners = []
    try:
        for host in made.hosts:
            proc = subprocess.Popen(
                host.argv([sys.executable, "-c", LISTEN.format(port=PORT), host.address]), stdout=subprocess.PIPE
            )
            listeners.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ok\n"
        yield made
    finally:
        for proc in listeners:
            proc.kill()
            proc.communicate()
        made.close()


def sabotage_nth(monkeypatch: pytest.MonkeyPatch, matches: Callable[[tuple[str, ...]], bool], n: int) -> list[str]:
    """The ``n``-th ``ip`` call that ``matches`` does nothing (and says it succeeded); the
    returned list names the call that was skipped once it happened."""
    real = netns._ip
    seen = [0]
    skipped: list[str] = []

    def ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        if matches(args):
            seen[0] += 1
            if seen[0] == n + 1:
                skipped.append(f"{namespace}: {' '.join(args)}")
                return subprocess.CompletedProcess(list(args), 0, "", "")
        return real(*args, namespace=namespace, check=check)

    monkeypatch.setattr(netns, "_ip", ip)
    return skipped


def is_add(args: tuple[str, ...]) -> bool:
    return args[:3] == ("route", "add", "blackhole")


def is_del(args: tuple[str, ...]) -> bool:
    return args[:3] == ("route", "del", "blackhole")


def all_reach(network: Network) -> bool:
    return all(network.reaches(a, b, PORT) for a in range(3) for b in range(3) if a != b)


@pytest.mark.parametrize("probe_port", [PORT, None], ids=["probed", "unprobed"])
def test_a_partition_with_any_one_cut_missing_fails(
    network: Network, monkeypatch: pytest.MonkeyPatch, probe_port: int | None
) -> None:
    """Every position, the asymmetric ones included: with 1->0 cut, a TCP probe 0->1 fails
    whether or not 0->1 was cut (the answer cannot come back), so the probe alone misses it."""
    cuts = len(pairs_across(SIDES))
    for n in range(cuts):
        skipped = sabotage_nth(monkeypatch, is_add, n)
        with pytest.raises(FaultNotInjected, match="still reaches"):
            network.partition(SIDES, probe_port=probe_port)
        assert len(skipped) == 1, f"cut {n} was never attempted"
        monkeypatch.undo()
        network.heal()
        assert all_reach(network)
    network.partition(SIDES, probe_port=probe_port)  # unsabotaged: every cut in force
    assert not network.reaches(0, 1, PORT)
    assert not network.reaches(2, 0, PORT)
    assert network.reaches(1, 2, PORT)
    network.heal()


def test_a_heal_with_any_one_route_left_fails_and_the_next_heal_ends_it(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts = len(pairs_across(SIDES))
    for n in range(cuts):
        network.partition(SIDES, probe_port=PORT)
        skipped = sabotage_nth(monkeypatch, is_del, n)
        with pytest.raises(FaultNotInjected, match="still cut") as failed:
            network.heal()
        assert len(skipped) == 1
        assert "still in force: blackhole route" in str(failed.value)
        assert len(network.cuts) == 1, "the cut left is kept for the next heal"
        monkeypatch.undo()
        network.heal()
        assert not network.cuts
        assert all_reach(network)


def test_a_heal_whose_route_deletion_fails_is_loud(network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deletion the kernel refuses (here: every one) is no quiet success either."""
    network.partition(SIDES, probe_port=PORT)
    real = netns._ip

    def refused(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        if is_del(args):
            return subprocess.CompletedProcess(list(args), 2, "", "RTNETLINK answers: Operation not permitted")
        return real(*args, namespace=namespace, check=check)

    monkeypatch.setattr(netns, "_ip", refused)
    with pytest.raises(FaultNotInjected, match="still cut"):
        network.heal()
    monkeypatch.undo()
    network.heal()
    assert all_reach(network)


# ---- link proxies ----------------------------------------------------------------------------


@pytest.fixture
def proxies() -> Iterator[LinkProxies]:
    """Three loopback 'nodes' whose peer port greets every connection (as NATS routes do)."""
    servers = []
    stop = threading.Event()
    for _ in range(3):
        server = socket.create_server((LOOPBACK, 0))
        server.settimeout(0.2)
        servers.append(server)

    def greet(server: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"INFO\r\n")
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(1)  # until the client goes

    threads = [threading.Thread(target=greet, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    links = LinkProxies.create([s.getsockname()[1] for s in servers])
    try:
        yield links
    finally:
        links.close()
        stop.set()
        for thread in threads:
            thread.join()
        for server in servers:
            server.close()


def proxy_reaches_all(links: LinkProxies) -> bool:
    return all(links.reaches(a, b, 0) for a in range(3) for b in range(3) if a != b)


def sabotage_proxy(monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, method: str) -> None:
    monkeypatch.setattr(proxy, method, lambda: None)  # this one link ignores the cut or the heal


def test_a_proxied_partition_with_any_one_link_left_open_fails(
    proxies: LinkProxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = sorted(pairs_across(SIDES))  # each cut pair's two directed links
    for link in parts:
        sabotage_proxy(monkeypatch, proxies.proxies[link], "blackhole")
        with pytest.raises(FaultNotInjected, match=rf"proxy of link {link[0]}->{link[1]}"):
            proxies.partition(SIDES, probe_port=1)
        monkeypatch.undo()
        proxies.heal()
        assert proxy_reaches_all(proxies)
    for a, b in [(0, 1), (1, 0)]:  # one direction asked: both links of the pair are its parts
        sabotage_proxy(monkeypatch, proxies.proxies[(b, a)], "blackhole")
        with pytest.raises(FaultNotInjected, match=rf"proxy of link {b}->{a}"):
            proxies.cut([(a, b)], probe_port=1)
        monkeypatch.undo()
        proxies.heal()
        proxies.cut([(a, b)], probe_port=1)  # unsabotaged: both links held
        assert not proxies.reaches(a, b, 0)
        assert not proxies.reaches(b, a, 0)
        proxies.heal()
    proxies.partition(SIDES, probe_port=1)
    assert not proxies.reaches(0, 1, 0)
    assert not proxies.reaches(2, 0, 0)
    assert proxies.reaches(1, 2, 0)
    proxies.heal()
    assert proxy_reaches_all(proxies)


def test_a_proxied_heal_with_any_one_link_still_blackholed_fails(
    proxies: LinkProxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    for link in sorted(pairs_across(SIDES)):
        proxies.partition(SIDES, probe_port=1)
        sabotage_proxy(monkeypatch, proxies.proxies[link], "heal")
        with pytest.raises(FaultNotInjected, match=rf"still in force: proxy of link {link[0]}->{link[1]}"):
            proxies.heal()
        monkeypatch.undo()
        proxies.heal()
        assert not proxies.cuts
        assert proxy_reaches_all(proxies)


# ---- a power cut of several nodes ------------------------------------------------------------


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[LazyMounts]:
    if (reason := fuse_unavailable_reason()) is not None:
        pytest.fail(f"FUSE is unavailable, the lazy filesystem cannot be tested: {reason}")
    made: list[LazyMount] = []
    try:
        for node in range(3):
            data = tmp_path / f"node{node}"
            data.mkdir()
            made.append(LazyMount.over(data))
        yield LazyMounts(made)
    finally:
        for mount in made:
            mount.unmount()


def test_a_power_cut_that_skips_any_one_node_fails(mounts: LazyMounts, monkeypatch: pytest.MonkeyPatch) -> None:
    for node, skipped in enumerate(mounts.mounts):

        def no_cut(fault: Any = None, skipped: LazyMount = skipped) -> dict[str, int]:
            skipped.faults.append({})  # as if it had cut: the fault is in the count, not the reply
            return {"unsynced_files": 0}

        monkeypatch.setattr(skipped, "power_cut", no_cut)
        with pytest.raises(FaultNotInjected, match=rf"node {node} took no cut"):
            mounts.power_cut()
        monkeypatch.undo()
    for mount in mounts.mounts:
        (mount.mountpoint / "unsynced").write_bytes(b"never fsynced")
    found = mounts.power_cut()
    assert found["unsynced_files"] >= len(mounts.mounts)
    assert not any((mount.mountpoint / "unsynced").exists() for mount in mounts.mounts)


def test_a_crash_armed_on_every_node_but_one_fails(mounts: LazyMounts, monkeypatch: pytest.MonkeyPatch) -> None:
    crash = StorageFault(kind="crash", op="fsync", nth=3)
    for fault in (crash, None):  # arming, then disarming
        for node, skipped in enumerate(mounts.mounts):
            mounts.arm(None if fault is not None else crash)  # the state the sabotaged call must change
            monkeypatch.setattr(skipped, "arm", lambda fault: None)
            with pytest.raises(FaultNotInjected, match=rf"node {node} is not"):
                mounts.arm(fault)
            monkeypatch.undo()
        mounts.arm(fault)  # unsabotaged: every node as asked
        assert all(mount.armed() == (None if fault is None else crash.as_dict()) for mount in mounts.mounts)
