"""Issue 53: a backend that offers pub/sub (with or without key-value) and nothing else fitted no
stateful suite, so a subscriber across a kill, a publish acknowledged then lost and a
redelivery were never judged. Every interface has a stateful suite that it alone fills."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner
from prism_testkit.capabilities import INTERFACES
from prism_testkit.suite import SuiteDeclaration
from tests.outoftree.bagstore import BagDriver

SUITES = Path(__file__).resolve().parent.parent / "prism_testkit" / "suites"
# interfaces a stateful suite of their own would judge: the messaging ones and key-value's
# patterns are judged through them; objects, transactions and change feeds fill slots of the
# pattern suites
ALONE = [Capability.PUBSUB, Capability.QUEUE, Capability.LOG]


def stateful_declarations() -> dict[str, SuiteDeclaration]:
    found = {}
    for path in sorted(SUITES.glob("test_stateful_*.py")):
        module = importlib.import_module(f"prism_testkit.suites.{path.stem}")
        marks = module.pytestmark if isinstance(module.pytestmark, list) else [module.pytestmark]
        for mark in marks:
            (decl,) = mark.args
            found[decl.name] = decl
    return found


def only(*caps: Capability) -> BackendSpec:
    return BackendSpec(
        name="alone",
        capabilities=frozenset(caps),
        properties=BackendProperties(durable=True),
        provisioner=EmbeddedProvisioner(),
        driver=BagDriver,
    )


@pytest.mark.parametrize("interface", ALONE, ids=str)
@pytest.mark.parametrize("with_keyvalue", [False, True], ids=["alone", "with-keyvalue"])
def test_a_backend_offering_one_messaging_interface_fits_a_stateful_suite(
    interface: Capability, with_keyvalue: bool
) -> None:
    assert interface in INTERFACES
    spec = only(interface, *([Capability.KEYVALUE] if with_keyvalue else []))
    fitting = [
        name for name, decl in stateful_declarations().items() if all(slot.fits(spec) for slot in decl.slots.values())
    ]
    assert fitting, f"no stateful suite fits a backend offering {sorted(spec.capabilities)}"
    if interface is Capability.PUBSUB:
        assert "stateful_pubsub" in fitting
