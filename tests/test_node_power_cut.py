"""A power cut of one chosen node of a cluster (an OS crash of that machine alone): its unsynced
writes are gone, every other node's stay, the other nodes run on untouched, and a cut that did
not take is refused (``FaultNotInjected``), never passed off as made."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit import clusters
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.cluster import Cluster
from prism_testkit.provision.lazymount import LazyMount, LazyMounts, fuse_unavailable_reason
from prism_testkit.provision.mounts import is_mounted
from prism_testkit.provision.netns import FaultNotInjected
from prism_testkit.provision.processes import ServerProcess, free_port

NODES = 3
IDLE = "import time\nwhile True: time.sleep(1)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three idle processes, each node's data dir on a lazy filesystem of its own."""
    if (reason := fuse_unavailable_reason()) is not None:  # loud: this is the proof the suite relies on
        pytest.fail(f"FUSE is unavailable, a node's power cut cannot be tested: {reason}")
    mounts: list[LazyMount] = []
    servers = []
    try:
        for node in range(NODES):
            data = tmp_path / f"n{node}" / "data"
            data.mkdir(parents=True)
            mounts.append(LazyMount.over(data))
            servers.append(
                ServerProcess(
                    f"idle n{node}",
                    [sys.executable, "-c", IDLE],
                    port=free_port(),
                    log_path=tmp_path / f"n{node}" / "idle.log",
                    cwd=tmp_path / f"n{node}",
                    ready=lambda: True,
                )
            )
    except BaseException:
        LazyMounts(mounts).unmount()
        raise
    made = Cluster(servers, clusters.LinkProxies(0, {}), probe_port=1, mounts=LazyMounts(mounts))
    try:
        made.start()
        yield made
    finally:
        made.close()
    assert not any(is_mounted(m.mountpoint) for m in mounts)


def unsynced(cluster: Cluster, node: int) -> Path:
    """A file on ``node`` whose name is durable and whose content is not."""
    mounts = cluster.mounts
    assert mounts is not None
    data = mounts.mounts[node].mountpoint
    path = data / "unsynced"
    path.write_bytes(b"")
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)  # the name is on disk, empty
    finally:
        os.close(fd)
    path.write_bytes(b"written, never fsynced")
    return path


def test_one_nodes_power_cut_loses_only_its_own_unsynced_writes(cluster: Cluster) -> None:
    files = [unsynced(cluster, node) for node in range(NODES)]
    pids = [server.pid for server in cluster.servers]
    report = cluster.power_cut_node(1)
    assert report["unsynced_bytes"] == len(b"written, never fsynced"), f"the cut discarded other writes: {report}"
    assert files[1].read_bytes() == b"", "node 1's unsynced write survived its power cut"
    assert [files[0].read_bytes(), files[2].read_bytes()] == [b"written, never fsynced"] * 2
    assert cluster.servers[1].alive, "node 1 was not started again"
    assert cluster.servers[1].pid != pids[1], "node 1 was not restarted"
    assert [cluster.servers[n].pid for n in (0, 2)] == [pids[0], pids[2]], "a node that was not cut restarted"
    assert cluster.kills == 1


def test_a_node_cut_without_start_stays_down_until_restored(cluster: Cluster) -> None:
    cluster.pause_node(0)
    cluster.power_cut_node(2, start=False)
    assert not cluster.servers[2].alive
    cluster.resume_node(0)  # returns at once: node 2 is still down
    assert cluster.paused == set()
    assert not cluster.servers[0].paused
    cluster.restore_node(2)
    assert cluster.servers[2].alive


def test_a_cut_that_did_not_take_is_refused(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = cluster.mounts
    assert mounts is not None
    file = unsynced(cluster, 1)
    monkeypatch.setattr(mounts.mounts[1], "power_cut", lambda fault=None: {})  # a cut that does nothing
    with pytest.raises(FaultNotInjected, match="node 1 took 0 cut"):
        cluster.power_cut_node(1)
    assert file.read_bytes() == b"written, never fsynced"


def test_a_cut_that_reached_another_node_is_refused(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = cluster.mounts
    assert mounts is not None
    right, wrong = mounts.mounts[1], mounts.mounts[0]
    monkeypatch.setattr(right, "power_cut", wrong.power_cut)  # the cut lands on node 0's filesystem
    with pytest.raises(FaultNotInjected, match=r"node 0 took 1 cut.*node 1 took 0 cut"):
        cluster.power_cut_node(1)


def test_a_cluster_without_a_lazy_filesystem_per_node_refuses_a_node_cut(cluster: Cluster) -> None:
    mounts = cluster.mounts
    assert mounts is not None
    cluster.mounts = LazyMounts(mounts.mounts[:2])  # one node short
    try:
        with pytest.raises(ProvisioningError, match="not on a lazy filesystem of its own"):
            cluster.power_cut_node(2)
        assert cluster.servers[2].alive, "a node was killed for a cut that could not be made"
    finally:
        cluster.mounts = mounts
