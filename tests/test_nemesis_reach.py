"""The nemesis never crashes a server the harness could not reconnect to: one whose own
address is its fault proxy (Kafka advertises it) while that proxy lets nothing through."""

from __future__ import annotations

from typing import cast

from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.provision.base import ServerControl
from prism_testkit.provision.processes import free_port
from prism_testkit.stateful.nemesis import FaultTarget, Nemesis


def test_a_server_reached_through_its_own_proxy_is_not_crashed_while_it_is_cut_off() -> None:
    nemesis = Nemesis.__new__(Nemesis)  # the choice only: no environment, no servers
    nemesis.paused = set()
    control = cast(ServerControl, object())
    proxy = FaultProxy("127.0.0.1", free_port()).start()
    try:
        advertised = FaultTarget("a", "kafka", control, True, True, proxy, connects_through_proxy=True)
        direct = FaultTarget("b", "redis", control, True, True, proxy)  # the harness reaches it directly
        assert nemesis.can_crash(advertised)
        assert nemesis.can_crash(direct)
        proxy.partition()
        assert not nemesis.can_crash(advertised), "a restart would reconnect through a partition"
        assert nemesis.can_crash(direct)
        proxy.heal()
        proxy.refuse()
        assert not nemesis.can_crash(advertised), "a restart would reconnect through a refusing proxy"
        proxy.heal()
        proxy.latency(0.05)
        assert nemesis.can_crash(advertised), "a slow way in is still a way in"
    finally:
        proxy.close()
