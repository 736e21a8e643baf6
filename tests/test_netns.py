"""Hosts as network namespaces: a partition cuts real TCP between them (and says so when it
does not), heal restores it, and nothing is left behind: not by close, not by a SIGKILLed
owner (the next run's sweep removes exactly what the dead run recorded, nothing else)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.provision import netns
from prism_testkit.provision.netns import FaultNotInjected, Network, namespaces_unavailable_reason
from prism_testkit.provision.workdirs import make_workdir, sweep_abandoned

PORT = 7000
LISTEN = (
    "import socket, sys, time\ns = socket.socket(); s.bind((sys.argv[1], {port})); s.listen(64)\n"
    "print('ok', flush=True); time.sleep(120)"
)


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    made = Network.create(3, tmp_path)
    listeners = []
    try:
        for host in made.hosts:
            code = LISTEN.format(port=PORT)
            proc = subprocess.Popen(host.argv([sys.executable, "-c", code, host.address]), stdout=subprocess.PIPE)
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ok\n"
            listeners.append(proc)
        yield made
    finally:
        for proc in listeners:
            proc.kill()
            proc.communicate()
        made.close()


def test_a_probe_runs_inside_the_hosts_namespace_and_leaves_the_callers_alone(network: Network) -> None:
    # A listener on this (root) namespace's loopback: inside host 0's namespace 127.0.0.1 is host
    # 0's own loopback, where nothing listens, so a probe that stayed here would connect.
    host, before = network.hosts[0], os.readlink("/proc/thread-self/ns/net")
    with socket.create_server(("127.0.0.1", 0)) as here:
        port = here.getsockname()[1]
        assert netns.connects_from(host.namespace, host.address, PORT, netns.PROBE_TIMEOUT)
        assert not netns.connects_from(host.namespace, "127.0.0.1", port, netns.PROBE_TIMEOUT)
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # it listens, from here
    assert os.readlink("/proc/thread-self/ns/net") == before
    with pytest.raises(FileNotFoundError):
        netns.connects_from("prism-testkit-no-such-namespace", host.address, PORT, netns.PROBE_TIMEOUT)


def test_hosts_reach_each_other_and_the_root_namespace_reaches_them(network: Network) -> None:
    assert all(network.reaches(a, b, PORT) for a in range(3) for b in range(3) if a != b)
    for host in network.hosts:
        probe = f"import socket; socket.create_connection(({host.address!r}, {PORT}), timeout=1).close()"
        subprocess.run([sys.executable, "-c", probe], check=True)


def test_a_partition_cuts_tcp_across_it_only_and_heal_restores_it(network: Network) -> None:
    network.partition([[0], [1, 2]], probe_port=PORT)
    assert not network.reaches(0, 1, PORT)
    assert not network.reaches(2, 0, PORT)
    assert network.reaches(1, 2, PORT)
    network.heal()
    assert network.reaches(0, 1, PORT)
    assert network.reaches(2, 0, PORT)
    assert (
        "blackhole"
        not in subprocess.run(["ip", "-n", network.hosts[0].namespace, "route"], capture_output=True, text=True).stdout
    )


def test_a_cut_that_lets_traffic_through_fails(network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    real = netns._ip

    def no_blackhole(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        if "blackhole" in args and "add" in args:
            return subprocess.CompletedProcess(list(args), 0, "", "")
        return real(*args, namespace=namespace, check=check)

    monkeypatch.setattr(netns, "_ip", no_blackhole)
    with pytest.raises(FaultNotInjected, match="host 0 still reaches host 1"):
        network.cut([(0, 1)], probe_port=PORT)


def test_close_leaves_no_namespace_or_link(tmp_path: Path) -> None:
    made = Network.create(2, tmp_path)
    assert made.token in namespaces()
    made.close()
    made.close()
    assert made.token not in namespaces()
    assert made.token[:8] not in links()
    assert list(tmp_path.iterdir()) == []  # its record went with it


def test_a_sigkilled_owners_network_is_swept_mid_partition_by_the_next_run(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from prism_testkit.provision.netns import Network
        from prism_testkit.provision.workdirs import make_workdir
        workdir = make_workdir("run", "gw0", {str(tmp_path)!r})
        network = Network.create(2, workdir)
        network.cut([(0, 1), (1, 0)])  # killed mid-partition: its routes live in its namespaces
        print(network.token, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    token = killed.stdout.strip()
    assert token in namespaces()

    assert len(sweep_abandoned(tmp_path).removed) == 1

    assert token not in namespaces()
    assert token[:8] not in links()


def test_the_sweep_never_touches_a_namespace_or_link_its_record_does_not_own(tmp_path: Path) -> None:
    foreign_ns, foreign_link = "prism-testkit-foreign", "pkforeign0"
    subprocess.run(["ip", "netns", "add", foreign_ns], check=True)
    subprocess.run(["ip", "link", "add", foreign_link, "type", "bridge"], check=True)
    try:
        make = "from prism_testkit.provision.workdirs import make_workdir; "
        make += f"print(make_workdir('r', 'g', {str(tmp_path)!r}))"
        dead = subprocess.run(
            [sys.executable, "-c", make],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        token = "0123456789abcdef"
        forged = {"token": token, "namespaces": [foreign_ns], "links": [foreign_link]}
        (Path(dead) / f"{netns.RECORD_PREFIX}{token}.json").write_text(json.dumps(forged))
        assert len(sweep_abandoned(tmp_path).removed) == 1
        assert foreign_ns in namespaces()
        assert foreign_link in links()
    finally:
        subprocess.run(["ip", "netns", "del", foreign_ns], check=False)
        subprocess.run(["ip", "link", "del", foreign_link], check=False)


def test_workdirs_of_live_runs_keep_their_networks(tmp_path: Path) -> None:
    workdir = make_workdir("run", "gw0", tmp_path)
    made = Network.create(2, workdir)
    try:
        sweep_abandoned(tmp_path)
        assert made.token in namespaces()
    finally:
        made.close()


def test_a_runtime_closes_the_networks_recorded_in_its_work_dir_before_removing_it(tmp_path: Path) -> None:
    """A cluster whose stop failed leaves its network up: the runtime must close it before the
    work dir (and the record in it) goes, or a SIGKILL in between leaves namespaces no sweep can
    find. A network recorded elsewhere (another runtime's in this process) is not its to close."""
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    from prism_testkit.isolation import NamespaceFactory
    from prism_testkit.registry.backends import build_registry, make_plugin_manager
    from prism_testkit.runtime import PrismRuntime

    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry["memstore"]], {}, NamespaceFactory(worker="netns-close"))
    left_up = Network.create(2, runtime.workdir)  # as a cluster whose stop raised leaves it
    elsewhere = Network.create(2, tmp_path)
    try:
        runtime.close()
        listed = namespaces()
        assert not any(host.namespace in listed for host in left_up.hosts), "the runtime left its network up"
        assert all(host.namespace in listed for host in elsewhere.hosts), "the runtime closed another's network"
    finally:
        left_up.close()
        elsewhere.close()


@pytest.mark.parametrize("calls", [[[(0, 1), (0, 2)]], [[(0, 1)], [(0, 2)]]], ids=["one-call", "two-calls"])
def test_a_second_cut_whose_route_is_listed_but_lets_traffic_through_fails(
    network: Network, calls: list[list[tuple[int, int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cut 0 -> 2 is made (its blackhole route is in host 0's main table, so every part is
    # listed as in force) and then undone by a policy rule that looks host 2 up in another
    # table first: only a connection across it shows the cut is not there. The first cut is
    # real, so a proof that probes only the first cut lets this one through.
    real_block = network._block
    namespace, address = network.hosts[0].namespace, network.hosts[2].address

    def block_then_bypass(a: int, b: int) -> None:
        real_block(a, b)
        if (a, b) == (0, 2):
            netns._ip("route", "add", f"{address}/32", "dev", "eth0", "table", "100", namespace=namespace)
            netns._ip("rule", "add", "to", f"{address}/32", "lookup", "100", "pref", "100", namespace=namespace)

    monkeypatch.setattr(network, "_block", block_then_bypass)
    *before, last = calls
    for pairs in before:
        network.cut(pairs, probe_port=PORT)
    with pytest.raises(FaultNotInjected, match="host 0 still reaches host 2"):
        network.cut(last, probe_port=PORT)
    assert (0, 2) in network.cuts  # listed, so the heal removes its route
    assert not network.reaches(0, 1, PORT)


def test_networks_created_at_once_by_two_workers_never_share_a_subnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A main job's first minute starts six clusters on six workers. Two that picked the same
    free /24 before either's bridge held it gave the root namespace two routes to one address:
    every connection to the second cluster's nodes went to the first's bridge, and 150 tests
    of postgres-ha-async errored with "n0 was not ready" while its log said it was. Here both
    creators see the same candidates in the same order and dawdle after looking."""
    monkeypatch.setattr(random, "shuffle", lambda candidates: None)  # netns shuffles with it
    look = netns._free_subnet

    def dawdling() -> object:
        found = look()
        time.sleep(0.3)  # the other creator looks meanwhile
        return found

    monkeypatch.setattr(netns, "_free_subnet", dawdling)
    made: list[Network] = []
    errors: list[BaseException] = []

    def create(into: Path) -> None:
        try:
            made.append(Network.create(1, into))
        except BaseException as exc:
            errors.append(exc)

    dirs = [tmp_path / "a", tmp_path / "b"]
    for path in dirs:
        path.mkdir()
    threads = [threading.Thread(target=create, args=(path,)) for path in dirs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        first, second = (network.subnet for network in made)
        assert first is not None
        assert second is not None
        assert not first.overlaps(second)
    finally:
        for network in made:
            network.close()
