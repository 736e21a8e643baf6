"""``--junitxml`` carries each test's suite and combination as testcase properties, for CI UIs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

PAIR = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("junit_pair", a=Slot.needs("keyvalue"), b=Slot.needs("objects"))

def test_pair(prism_env: PrismEnv) -> None:
    assert prism_env.combination["b"] != "sqlite"

def test_plain() -> None:
    pass
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_every_suite_testcase_names_its_suite_and_combination(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(test_pair=PAIR)
    result = pytester.runpytest_subprocess(*workers, "--prism-backend=memstore,sqlite,localfs", "--junitxml=out.xml")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    found = []
    for case in ET.parse(pytester.path / "out.xml").getroot().iter("testcase"):
        properties = {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}
        if properties.get("prism_suite") is None:
            continue
        found.append(properties)
    assert found, "no testcase carried prism properties"
    for properties in found:
        assert properties["prism_suite"] == "junit_pair"
        a, b = properties["prism_slot_a"], properties["prism_slot_b"]
        assert properties["prism_combination"] == f"a={a} b={b}"
        assert json.loads(properties["prism"])["combination"] == {"a": a, "b": b}  # JSON, not a repr
    pairs = sorted((p["prism_slot_a"], p["prism_slot_b"]) for p in found)
    # every key-value backend in slot a and every object store in slot b at least once
    assert {a for a, _ in pairs} == {"memstore", "sqlite"}
    assert {b for _, b in pairs} == {"memstore", "localfs"}
