"""Capabilities are facts, checked both ways: every interface a backend declares is handed out
and satisfies its protocol; every interface it does not declare raises NotSupported.

(Durability across a restart is checked later, with process control.)
"""

from __future__ import annotations

from collections.abc import Collection

import pytest

from prism_testkit import (
    BackendProperties,
    Capability,
    ChangeFeed,
    KeyValue,
    Log,
    Message,
    NotSupported,
    ObjectStore,
    PrismEnv,
    PubSub,
    Queue,
    Slot,
    Transactions,
    prism_suite,
)
from prism_testkit.capabilities import INTERFACES
from prism_testkit.driver import ACCESSORS, Driver
from prism_testkit.isolation import Namespace

from ._helpers import check_purge

pytestmark = prism_suite("capabilities", backend=Slot())

PROTOCOLS: dict[Capability, type] = {
    Capability.KEYVALUE: KeyValue,
    Capability.PUBSUB: PubSub,
    Capability.QUEUE: Queue,
    Capability.LOG: Log,
    Capability.OBJECTS: ObjectStore,
    Capability.TRANSACTIONS: Transactions,
    Capability.CHANGEFEED: ChangeFeed,
}


def test_every_interface_has_a_protocol_and_an_accessor() -> None:
    """Guards the parametrisation below: a new interface must be added to this suite."""
    assert set(PROTOCOLS) == set(INTERFACES) == set(ACCESSORS)


@pytest.mark.parametrize("interface", INTERFACES, ids=[c.value for c in INTERFACES])
async def test_interface_is_handed_out_exactly_when_declared(prism_env: PrismEnv, interface: Capability) -> None:
    spec, driver = prism_env.spec("backend"), prism_env.driver("backend")
    accessor = getattr(driver, ACCESSORS[interface])
    if interface in driver.withheld:
        # declared, but this instance lacks it (a server given by URL): refused, with the reason
        with pytest.raises(NotSupported, match="not on this instance") as refused:
            accessor()
        assert refused.value.capability == interface.value
        return
    if interface in spec.interfaces:
        facet = accessor()
        assert isinstance(facet, PROTOCOLS[interface]), (
            f"{spec.name}.{ACCESSORS[interface]}() returned {type(facet).__name__}, "
            f"which lacks methods of {PROTOCOLS[interface].__name__}"
        )
        assert isinstance(driver.facet(interface), PROTOCOLS[interface])
        return
    with pytest.raises(NotSupported) as raised:
        accessor()
    assert raised.value.backend == spec.name
    assert raised.value.capability == interface.value
    with pytest.raises(NotSupported):
        driver.facet(interface)


@pytest.mark.parametrize("capability", list(Capability), ids=[c.value for c in Capability])
async def test_driver_supports_exactly_the_declared_capabilities(prism_env: PrismEnv, capability: Capability) -> None:
    spec, driver = prism_env.spec("backend"), prism_env.driver("backend")
    declared = capability in spec.capabilities and capability not in driver.withheld
    assert driver.supports(capability) is declared
    if declared:
        driver.require(capability)
        assert capability.interface in spec.interfaces, "a sub-capability without its interface"
    else:
        with pytest.raises(NotSupported):
            driver.require(capability)


async def test_registration_describes_its_driver(prism_env: PrismEnv) -> None:
    spec, driver = prism_env.spec("backend"), prism_env.driver("backend")
    assert isinstance(spec.properties, BackendProperties)
    assert isinstance(driver, Driver)
    assert isinstance(driver, spec.driver_class)
    assert driver.name == spec.name
    assert driver.capabilities | set(driver.withheld) == spec.capabilities
    assert all(driver.withheld.values()), "a capability withheld without a reason"
    assert spec.interfaces, "a backend that declares no interface is useless"
    if spec.properties.max_payload is not None:
        assert spec.properties.max_payload > 0


# --- cleanup -------------------------------------------------------------------------------


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    """Something stored through every declared storing interface is listed, then purged."""
    driver = prism_env.driver("backend")

    async def create(ns: Namespace) -> Collection[str]:
        created: list[str] = []
        if driver.supports(Capability.KEYVALUE):
            created.append(ns.name("kv"))
            await driver.keyvalue().put(created[-1], b"v")
        if driver.supports(Capability.QUEUE):
            created.append(ns.name("queue"))
            await driver.queue().send(created[-1], Message(b"m"))
        if driver.supports(Capability.LOG):
            created.append(ns.name("log"))
            await driver.log().append(created[-1], Message(b"m"))
        if driver.supports(Capability.OBJECTS):
            created.append(ns.name("bucket"))
            await driver.objects().create_bucket(created[-1])
            await driver.objects().put(created[-1], "k", b"v")
        return created

    if not ({Capability.KEYVALUE, Capability.QUEUE, Capability.LOG, Capability.OBJECTS} & driver.capabilities):
        # Only ephemeral pub/sub: nothing is stored, and nothing may be left over.
        assert await prism_env.leftovers() == {}
        return
    await check_purge(prism_env, "backend", create)
