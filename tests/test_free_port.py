"""free_port hands out ports a restarted server can bind again: below the kernel's ephemeral
range (an outgoing connection of a busy machine may take an ephemeral port between a server's
kill and its restart: "address already in use"), split between xdist workers, never the same
one twice in a process, and free when handed out."""

from __future__ import annotations

import itertools
import random
import socket

import pytest

from prism_testkit.errors import ProvisioningError
from prism_testkit.provision import processes
from prism_testkit.provision.processes import PortPicker, ephemeral_range, free_port, port_band


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_port with a picker of its own, seeded, outside any xdist worker."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    monkeypatch.setattr(processes, "_PICKER", PortPicker(random.Random(11)))


def test_ports_are_outside_the_ephemeral_range_and_distinct() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert all(not low <= port <= high for port in ports), sorted(p for p in ports if low <= p <= high)[:5]
    assert all(port >= 1024 for port in ports)
    assert len(set(ports)) == len(ports), "a port was handed out twice"


def test_the_ephemeral_range_is_read_from_the_kernel() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(v) for v in f.read().split())
    assert ephemeral_range() == (low, high)
    band = port_band(worker="")
    assert band.stop <= low or band.start > high


def test_a_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # raises if it was taken


def test_a_port_in_use_is_skipped(fresh: None) -> None:
    first = PortPicker(random.Random(11)).take()  # what the fresh picker (same seed) would hand out first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        port = free_port()
    assert port != first, "free_port handed out a port a server was listening on"
    assert port in port_band()


def test_a_port_bound_on_another_address_is_skipped(fresh: None) -> None:
    """A server listening on 127.0.0.2:P makes a later bind of every address on P fail."""
    first = PortPicker(random.Random(11)).take()
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", first))
        taken.listen()
        assert free_port() != first


def test_two_workers_never_share_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pickers seeded alike, as two workers of one run that drew the same start: without a
    share of its own per worker, they would hand out the very same ports."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    handed: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        picker = PortPicker(random.Random(5))
        handed[worker] = {picker.take() for _ in range(200)}
        assert all(port in port_band() for port in handed[worker])
    assert len(handed["gw0"]) == len(handed["gw1"]) == 200
    assert not handed["gw0"] & handed["gw1"], sorted(handed["gw0"] & handed["gw1"])[:5]


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_the_workers_shares_are_disjoint_and_below_the_ephemeral_range(workers: int) -> None:
    low, _ = ephemeral_range()
    shares = [port_band(f"gw{i}", workers) for i in range(workers)]
    assert all(len(share) >= 100 for share in shares)
    assert all(share.stop <= low for share in shares)
    for a, b in itertools.pairwise(shares):
        assert a.stop <= b.start, (a, b)


def test_a_used_up_share_is_an_error_not_a_port_handed_out_again(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the walk wraps around its share, the ports it handed out (their servers perhaps
    not listening yet, or stopped for a restart) must not come back."""
    start = PortPicker(random.Random(11)).take()
    while not all(processes._bindable("127.0.0.1", port) for port in range(start, start + 4)):
        start += 4  # another server holds one of these: a block that is free now
    small = range(start, start + 4)
    monkeypatch.setattr(processes, "port_band", lambda: small)
    ports = [free_port() for _ in range(4)]
    assert sorted(ports) == list(small)  # all four free now: each handed out once
    with pytest.raises(ProvisioningError, match=f"no free port left in {small.start}-{small.stop - 1}"):
        free_port()
