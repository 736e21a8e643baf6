"""Hosts without network namespaces: a cluster's nodes on loopback, a fault proxy on every link.

Where namespaces cannot be made (not root, no CAP_NET_ADMIN), every node runs in the root
namespace on ``127.0.0.1`` with ports of its own, and node ``a`` reaches node ``b``'s peer
port only through the proxy of link ``(a, b)``: the nodes' configs name those proxies as their
peers. A partition blackholes the proxies of the links it cuts: bytes are held, as a dropped
route holds them, and flow on at the heal. Cuts are symmetric here: two nodes share one TCP
connection, which may run through either link of the pair, so cutting one direction cuts
both. Every cut is proved: a new connection across it must not receive the peer's greeting
(:data:`~prism_testkit.provision.netns.PROBE_TIMEOUT`), or :class:`FaultNotInjected` is raised.

The proxies are threads of this process: they end with it, so nothing is left to sweep.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.provision.netns import PROBE_TIMEOUT, ProvedCuts

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LoopbackHost:
    """A node's host in this mode: the root namespace, on loopback."""

    index: int
    address: str = LOOPBACK

    def argv(self, argv: Sequence[str]) -> list[str]:
        return list(argv)


@dataclass
class LinkProxies(ProvedCuts):
    """``size`` loopback hosts and a started proxy per directed link, made by :meth:`create`
    and closed by :meth:`close`. Cutting ``(a, b)`` blackholes both links of the pair."""

    UNCUT = "node {a} still reaches node {b} through its link proxy after the cut"

    size: int
    proxies: dict[tuple[int, int], FaultProxy]
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    cuts: set[tuple[int, int]] = field(default_factory=set)  # (from, to) as asked; the pair is cut

    @classmethod
    def create(cls, peer_ports: Sequence[int]) -> LinkProxies:
        """Proxies to each node's peer port (``peer_ports[b]``) from every other node; the
        nodes may start after them (a proxy dials its upstream per connection)."""
        proxies: dict[tuple[int, int], FaultProxy] = {}
        try:
            for a in range(len(peer_ports)):
                for b, port in enumerate(peer_ports):
                    if a != b:
                        proxies[(a, b)] = FaultProxy(LOOPBACK, port).start()
        except BaseException:
            for proxy in proxies.values():
                proxy.close()
            raise
        return cls(len(peer_ports), proxies)

    @property
    def hosts(self) -> list[LoopbackHost]:
        return [LoopbackHost(i) for i in range(self.size)]

    def link_port(self, a: int, b: int) -> int:
        """The port node ``a`` dials to reach node ``b``."""
        return self.proxies[(a, b)].port

    def _block(self, a: int, b: int) -> None:
        self.proxies[(a, b)].blackhole()  # open connections hang, as behind a dropped route
        self.proxies[(b, a)].blackhole()

    def _unblock_all(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def _parts(self, pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], dict[str, bool]]:
        """A cut is the pair's two link proxies, each blackholed."""
        return {
            (a, b): {f"proxy of link {x}->{y}": self.proxies[(x, y)].state.blackhole for x, y in ((a, b), (b, a))}
            for a, b in pairs
        }

    def reaches(self, a: int, b: int, port: int) -> bool:
        """Whether a connection from ``a`` to ``b`` carries ``b``'s greeting (a peer port speaks
        first, as NATS routes do) within the probe timeout."""
        try:
            with socket.create_connection((LOOPBACK, self.link_port(a, b)), timeout=PROBE_TIMEOUT) as sock:
                sock.settimeout(PROBE_TIMEOUT)
                return bool(sock.recv(1))
        except OSError:
            return False

    def close(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.close()
