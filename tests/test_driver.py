"""The Driver base class: undeclared interfaces are refused by construction."""

from __future__ import annotations

import pytest

from prism_testkit import Capability, NotSupported
from prism_testkit.driver import implemented_interfaces
from tests.outoftree.bagstore import BagDriver


def test_an_overridden_accessor_still_refuses_when_the_interface_is_not_declared() -> None:
    driver = BagDriver("shared-code", frozenset(), {})
    with pytest.raises(NotSupported, match="backend 'shared-code' does not support 'keyvalue'"):
        driver.keyvalue()


def test_a_declared_interface_is_handed_out() -> None:
    driver = BagDriver("bag", frozenset({Capability.KEYVALUE}), {})
    assert driver.keyvalue().data is driver.data


@pytest.mark.parametrize("accessor", ["pubsub", "queue", "log", "objects", "transactions"])
def test_accessors_a_driver_does_not_override_always_refuse(accessor: str) -> None:
    driver = BagDriver("bag", frozenset(Capability), {})  # even when (wrongly) declared
    with pytest.raises(NotSupported):
        getattr(driver, accessor)()


def test_implemented_interfaces_sees_through_the_guard() -> None:
    assert implemented_interfaces(BagDriver) == {Capability.KEYVALUE}
