"""Under pytest-xdist the controller aggregates the workers' results into the same report."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import OUT_OF_TREE

SUITE = """
from hypothesis import given, strategies as st
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_kv", backend=Slot.needs("keyvalue"))

@given(value=st.binary(max_size=64))
async def test_round_trip(prism_env: PrismEnv, value: bytes) -> None:
    async with prism_env.example() as ns:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(ns.name("k"), value)
        assert await kv.get(ns.name("k")) == value

async def test_isolated(prism_env: PrismEnv) -> None:
    kv = prism_env.driver("backend").keyvalue()
    await kv.put(prism_env.ns.name("shared"), b"mine")
    assert await kv.get(prism_env.ns.name("shared")) == b"mine"
"""

PAIR = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_pair", a=Slot.needs("keyvalue"), b=Slot.needs("keyvalue"))

def test_pair(prism_env: PrismEnv) -> None:
    assert prism_env.combination["a"] != prism_env.combination["b"]
"""


def test_two_workers_report_the_same_totals_as_a_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kv=SUITE, test_pair=PAIR)
    serial = pytester.runpytest_subprocess("--prism-report=serial.json")
    parallel = pytester.runpytest_subprocess("-n", "2", "--prism-report=parallel.json")
    assert serial.parseoutcomes() == {"passed": 6}
    assert parallel.parseoutcomes() == {"passed": 6}
    serial_report = json.loads((pytester.path / "serial.json").read_text())
    parallel_report = json.loads((pytester.path / "parallel.json").read_text())
    # the same rows; their durations, measured on the workers, arrive with the reports (a row of
    # two memstore tests can take under the half millisecond that rounds to 0.0: only the sum is > 0)
    for report in (serial_report, parallel_report):
        durations = [row.pop("duration_s") for row in report["suites"]]
        for row in report["suites"]:
            for test in row["tests"].values():
                test.pop("duration_s")
        assert all(isinstance(d, float) and d >= 0 for d in durations), durations
        assert sum(durations) > 0, durations
    assert serial_report["suites"] == parallel_report["suites"]
    assert len(serial_report["suites"]) == 4  # 2 backends x xdist_kv + 2 covering pairs
    parallel.stdout.fnmatch_lines(["*prism-testkit: suites x combinations*"])


WORKER_LOG = """
import os
import pytest
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_where", backend=Slot.needs("keyvalue"))

@pytest.mark.parametrize("n", range(12))
def test_where(prism_env: PrismEnv, n: int) -> None:
    with open(f"ran-{os.environ['PYTEST_XDIST_WORKER']}.log", "a") as log:
        log.write(prism_env.combination["backend"] + "\\n")
"""

EXCLUSIVE = """
from prism_testkit import BackendProperties, BackendSpec, EmbeddedProvisioner, hookimpl
from bagdriver import BagDriver

@hookimpl
def prism_register_backends():
    return [
        BackendSpec(name=name, capabilities=frozenset({"keyvalue"}), properties=BackendProperties(durable=False),
                    provisioner=EmbeddedProvisioner(), driver=BagDriver, exclusive=name == "heavy")
        for name in ("heavy", "light")
    ]
"""


DEALT = """
from prism_testkit.plugin.harness import DEALT_SCOPES

def pytest_terminal_summary(terminalreporter, config):
    scopes = config.stash.get(DEALT_SCOPES, None)
    if scopes is not None and not hasattr(config, "workerinput"):
        terminalreporter.write_line(f"dealt: {len(scopes)} rows in {len(set(scopes.values()))} scope")
"""


def test_an_exclusive_backends_rows_all_run_on_one_worker(
    pytester: pytest.Pytester, third_party: Callable[..., None]
) -> None:
    """A cluster is started by every worker that runs one of its rows: marking it exclusive
    sends all of them to one worker, while the others' rows are still dealt out."""
    third_party(
        "prism-heavy", {"heavy": EXCLUSIVE, "bagdriver": (OUT_OF_TREE / "bagstore.py").read_text()}, {"heavy": "heavy"}
    )
    pytester.makepyfile(test_where=WORKER_LOG)
    pytester.makeconftest(DEALT)
    result = pytester.runpytest_subprocess("-n", "3", "--prism-backend=heavy,light")
    result.assert_outcomes(passed=24)
    # the controller's time left is told the scope the 12 rows share (they run one by one)
    result.stdout.fnmatch_lines(["*dealt: 12 rows in 1 scope*"])
    ran = {log.stem: log.read_text().split() for log in pytester.path.glob("ran-*.log")}
    heavy = {worker for worker, backends in ran.items() if "heavy" in backends}
    light = {worker for worker, backends in ran.items() if "light" in backends}
    assert len(heavy) == 1, ran
    assert sum(backends.count("heavy") for backends in ran.values()) == 12
    assert len(light) > 1, ran  # the check sees workers at all: an ordinary backend is spread


def test_an_exclusive_backend_heavier_than_a_workers_share_runs_on_two_workers_a_module_each(
    pytester: pytest.Pytester, third_party: Callable[..., None]
) -> None:
    """Recorded durations that make the heavy backend's rows more than a worker's share of the
    run split them by module: each module's rows on one worker, the two modules on two."""
    third_party(
        "prism-heavy", {"heavy": EXCLUSIVE, "bagdriver": (OUT_OF_TREE / "bagstore.py").read_text()}, {"heavy": "heavy"}
    )
    pytester.makepyfile(test_where=WORKER_LOG, test_there=WORKER_LOG.replace("xdist_where", "xdist_there"))
    durations = {
        f"{module}.py::test_where[backend={backend}-{n}]": 30.0 if backend == "heavy" else 1.0
        for module in ("test_where", "test_there")
        for backend in ("heavy", "light")
        for n in range(12)
    }
    (pytester.path / "durations.json").write_text(json.dumps(durations))
    # 720 s of heavy rows in a run of 744 s on 3 workers: 248 s a share, so parts of whole modules
    result = pytester.runpytest_subprocess(
        "-n", "3", "--prism-backend=heavy,light", "--prism-shard-durations=durations.json"
    )
    result.assert_outcomes(passed=48)
    ran = {log.stem: log.read_text().split() for log in pytester.path.glob("ran-*.log")}
    heavy = {worker: backends.count("heavy") for worker, backends in ran.items() if "heavy" in backends}
    assert sorted(heavy.values()) == [12, 12], ran
