"""A replicated registration names its single-node twin: its rows that only repeat the twin's
are skipped as "covered by <twin>" where the twin runs in the same run; what replication can
change (stateful, failover, capabilities suites, one round trip per interface) still runs on it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from prism_testkit.errors import RegistrationError
from prism_testkit.options import Expansion
from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.registry.combinations import Combination, NoCombination, expand
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.slots import Slot
from prism_testkit.registry.twins import ROUND_TRIPS, backends_covered_by_twins, expand_with_twins
from prism_testkit.report.matrix import compliance_matrix, render_markdown
from prism_testkit.report.shape import parse
from tests.conftest import OUT_OF_TREE

SUITES = Path(__file__).parent.parent / "prism_testkit" / "suites"

# A third party's cluster: the out-of-tree bagstore driver registered twice, the second
# registration naming the first as its twin (as a cluster package would name its server's).
BAG_CLUSTER = """
from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner, hookimpl
from bagdriver import BagDriver


@hookimpl
def prism_register_backends():
    def spec(name, twin=None):
        return BackendSpec(name=name, capabilities=frozenset({Capability.KEYVALUE}),
                           properties=BackendProperties(durable=False), provisioner=EmbeddedProvisioner(),
                           driver=BagDriver, twin=twin)
    return [spec("bag"), spec("bag-cluster", twin="bag")]
"""

ROW = """
    from prism_testkit import PrismEnv, Slot, prism_suite

    pytestmark = prism_suite({suite!r}, backend=Slot.needs("keyvalue"))

    async def {first}(prism_env: PrismEnv) -> None:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(prism_env.ns.name("k"), b"v")
        assert await kv.get(prism_env.ns.name("k")) == b"v"

    async def test_second(prism_env: PrismEnv) -> None:
        assert await prism_env.driver("backend").keyvalue().get(prism_env.ns.name("none")) is None
"""


def suite(name: str, first: str = "test_first") -> str:
    return ROW.format(suite=name, first=first)


PAIR = """
    from prism_testkit import PrismEnv, Slot, prism_suite

    pytestmark = prism_suite("pair", first=Slot.needs("keyvalue"), second=Slot.needs("keyvalue"))

    def test_pair(prism_env: PrismEnv) -> None:
        pass
"""


@pytest.fixture
def sandbox(pytester: pytest.Pytester, third_party: Callable[..., None]) -> pytest.Pytester:
    """bag and bag-cluster installed; a plain suite, a stateful one, a failover one and one
    named after the key-value interface (whose round trip is test_put_then_get)."""
    modules = {"bagcluster": BAG_CLUSTER, "bagdriver": (OUT_OF_TREE / "bagstore.py").read_text()}
    third_party("prism-bagcluster", modules, {"bagcluster": "bagcluster"})
    pytester.makepyfile(
        test_plain=suite("plain"),
        test_stateful=suite("stateful_plain"),
        test_failover=suite("failover"),
        test_kv=suite("keyvalue", first="test_put_then_get"),
    )
    return pytester


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test id -> PASSED / SKIPPED / FAILED, from ``-v`` lines."""
    found = {}
    for line in result.stdout.lines:
        match = re.match(r"^(\S+::\S+) (PASSED|SKIPPED|FAILED|ERROR)", line)
        if match:
            found[match.group(1).split("/")[-1]] = match.group(2)
    return found


def test_a_twins_rows_are_skipped_as_covered_and_what_replication_changes_runs(sandbox: pytest.Pytester) -> None:
    result = sandbox.runpytest("-v", "-rs", "--prism-backend=bag,bag-cluster,memstore", "--prism-report=r.json")
    seen = outcomes(result)
    # the plain suite's rows on the cluster are covered; on the twin and on memstore they run
    for test in ("test_first", "test_second"):
        assert seen[f"test_plain.py::{test}[backend=bag-cluster]"] == "SKIPPED"
        assert seen[f"test_plain.py::{test}[backend=bag]"] == "PASSED"
        assert seen[f"test_plain.py::{test}[backend=memstore]"] == "PASSED"
    # the suites whose outcome replication can change run every row on the cluster
    for module in ("test_stateful", "test_failover"):
        for test in ("test_first", "test_second"):
            assert seen[f"{module}.py::{test}[backend=bag-cluster]"] == "PASSED"
    # an interface's contract suite keeps its round trip on the cluster, and only that
    assert seen["test_kv.py::test_put_then_get[backend=bag-cluster]"] == "PASSED"
    assert seen["test_kv.py::test_second[backend=bag-cluster]"] == "SKIPPED"
    result.assert_outcomes(passed=21, skipped=3)
    result.stdout.fnmatch_lines(["*prism-testkit: 3 tests covered by their single-node twin (bag 3)*"])
    assert result.stdout.str().count("covered by their single-node twin") == 1  # once, in the summary
    result.stdout.fnmatch_lines(
        ["SKIPPED [[]2[]] test_plain.py*: covered by bag (the single-node twin of bag-cluster*"]
    )
    result.stdout.fnmatch_lines(["plain*backend=bag-cluster*0*0*2*0*", "*covered by bag"])

    report = json.loads((sandbox.path / "r.json").read_text())
    assert report["covered_by_twins"] == {"bag": 3}
    assert report["totals"]["skipped"] == 3  # pytest's count: covered tests are skipped, never passed
    rows = {(r["suite"], r["combination"]["backend"]): r for r in report["suites"]}
    plain = rows[("plain", "bag-cluster")]
    assert (plain["passed"], plain["skipped"], plain["covered"]) == (0, 2, 2)
    assert plain["covered_by"] == {"bag-cluster": "bag"}
    assert all(entry["covered_by"] == {"bag-cluster": "bag"} for entry in plain["tests"].values())
    kv = rows[("keyvalue", "bag-cluster")]
    assert (kv["passed"], kv["covered"]) == (1, 1)
    assert "covered" not in rows[("plain", "bag")]
    assert "covered" not in rows[("failover", "bag-cluster")]

    matrix = compliance_matrix(parse(report))
    assert matrix.cells["plain"]["bag-cluster"].status == "covered"
    assert matrix.cells["plain"]["bag"].status == "passed"
    assert matrix.cells["keyvalue"]["bag-cluster"].status == "passed"
    markdown = render_markdown(parse(report))
    assert "covered by bag" in markdown
    assert "1 passed, 1 covered by bag" in markdown


@pytest.mark.parametrize("option", ["--prism-twins=run", "--prism-combinations=all"])
def test_an_option_runs_the_covered_rows(sandbox: pytest.Pytester, option: str) -> None:
    result = sandbox.runpytest("-v", "--prism-backend=bag,bag-cluster,memstore", option)
    assert outcomes(result)["test_plain.py::test_second[backend=bag-cluster]"] == "PASSED"
    result.assert_outcomes(passed=24)
    assert "covered by" not in result.stdout.str()


def test_without_the_twin_selected_the_replicated_rows_run(sandbox: pytest.Pytester) -> None:
    result = sandbox.runpytest("-v", "--prism-backend=bag-cluster,memstore")
    assert outcomes(result)["test_plain.py::test_second[backend=bag-cluster]"] == "PASSED"
    result.assert_outcomes(passed=16)
    assert "covered by" not in result.stdout.str()


def test_xdist_reports_covered_rows_as_a_single_run_does(sandbox: pytest.Pytester) -> None:
    selection = "--prism-backend=bag,bag-cluster,memstore"
    result = sandbox.runpytest_subprocess("-n", "2", selection, "--prism-report=r.json")
    result.assert_outcomes(passed=21, skipped=3)
    result.stdout.fnmatch_lines(["*prism-testkit: 3 tests covered by their single-node twin (bag 3)*"])
    assert result.stdout.str().count("covered by their single-node twin") == 1
    assert json.loads((sandbox.path / "r.json").read_text())["covered_by_twins"] == {"bag": 3}


def test_a_row_holding_a_cluster_does_not_take_its_other_backend_with_it(
    pytester: pytest.Pytester, third_party: Callable[..., None]
) -> None:
    """Every backend still runs in every slot: memstore and sqlite too, though the full
    covering set paired one of them with the cluster."""
    modules = {"bagcluster": BAG_CLUSTER, "bagdriver": (OUT_OF_TREE / "bagstore.py").read_text()}
    third_party("prism-bagcluster", modules, {"bagcluster": "bagcluster"})
    pytester.makepyfile(test_pair=PAIR)
    result = pytester.runpytest("-v", "--prism-backend=bag,bag-cluster,memstore,sqlite")
    ran = [test for test, outcome in outcomes(result).items() if outcome == "PASSED"]
    covered = [test for test, outcome in outcomes(result).items() if outcome == "SKIPPED"]
    for slot in ("first", "second"):
        for backend in ("bag", "memstore", "sqlite"):
            assert any(f"{slot}={backend}-" in t or f"{slot}={backend}]" in t for t in ran), (slot, backend, ran)
        assert not any(f"{slot}=bag-cluster" in t for t in ran)
        assert any(f"{slot}=bag-cluster" in t for t in covered)


# --- the built-in registrations ------------------------------------------------------------

BUILT_IN = build_registry(make_plugin_manager())


@pytest.mark.parametrize(
    ("replicated", "twin"),
    [
        ("jetstream-r3", "jetstream"),
        ("jetstream-r3-lazy-sync", "jetstream"),
        ("jetstream-r5", "jetstream"),
        ("postgres-ha", "postgres"),
        ("postgres-ha-async", "postgres"),
        ("redis-sentinel", "redis-aof"),
        ("redis-sentinel-wait", "redis-aof"),
    ],
)
def test_each_built_in_cluster_names_a_twin_that_fits_wherever_it_does(replicated: str, twin: str) -> None:
    spec, single = BUILT_IN[replicated], BUILT_IN[twin]
    assert spec.twin == twin
    assert single.twin is None
    # so its twin can stand in for it in every slot: same capabilities, durable where it is
    assert single.capabilities == spec.capabilities
    assert single.properties.durable or not spec.properties.durable


@pytest.mark.parametrize(
    "slots",
    [
        {"messaging": Slot.one_of("queue", "log", "pubsub"), "objects": Slot.needs("objects")},
        {"store": Slot.needs("transactions", "keyvalue.cas", "log"), "sink": Slot.one_of("queue", "log", "pubsub")},
        {"source": Slot.needs("changefeed", "keyvalue.scan", "transactions"), "sink": Slot.one_of("queue", "log")},
        {"log": Slot.needs("log", durable=True), "target": Slot.needs("keyvalue")},
    ],
    ids=["claim_check", "outbox", "cdc", "wal"],
)
def test_covering_keeps_every_slot_and_backend_of_the_built_ins(slots: dict[str, Slot]) -> None:
    available = [spec for spec in BUILT_IN if not spec.opt_in]
    full = expand("s", slots, available, Expansion.COVERING)
    rows = expand_with_twins("s", slots, available, Expansion.COVERING)
    assert isinstance(full, list)
    assert isinstance(rows, list)
    running = [c for c in rows if not c.covered_by]
    left_out = backends_covered_by_twins(slots, available)
    for slot in slots:
        for spec in available:
            if not slots[slot].fits(spec):
                continue
            placed = any(c[slot] == spec.name for c in running)
            # a cluster's rows are left to its twin; every other backend runs in every slot it fits
            assert placed != (spec.name in left_out.get(slot, {})), (slot, spec.name)
    # every row of the full covering set that holds a cluster is shown, as covered
    shown = {c.assignment for c in rows if c.covered_by}
    assert shown == {c.assignment for c in full if any(b in left_out[s] for s, b in c.assignment)}
    assert len(running) < len(full)


def test_a_twin_not_available_keeps_the_clusters_rows() -> None:
    slots = {"backend": Slot.needs("keyvalue")}
    available = [spec for spec in BUILT_IN if spec.name in ("postgres-ha", "memstore")]
    rows = expand_with_twins("s", slots, available, Expansion.COVERING)
    assert rows == expand("s", slots, available, Expansion.COVERING)
    assert isinstance(rows, list)
    assert not any(isinstance(c, Combination) and c.covered_by for c in rows)


def test_no_combination_stays_no_combination() -> None:
    assert isinstance(
        expand_with_twins("s", {"b": Slot.needs("objects")}, [BUILT_IN["redis"]], Expansion.COVERING), NoCombination
    )


@pytest.mark.parametrize(("interface", "test"), sorted(ROUND_TRIPS.items()))
def test_each_round_trip_is_a_test_of_its_interfaces_contract_suite(interface: str, test: str) -> None:
    source = (SUITES / f"test_contract_{interface}.py").read_text()
    assert f'prism_suite("{interface}"' in source
    assert re.search(rf"^async def {test}\(", source, re.MULTILINE), f"{test} is gone from its contract suite"


@pytest.mark.parametrize(
    ("twin", "message"),
    [("nowhere", "twin 'nowhere' is not a registered backend"), ("a", "twin must name another"), ("b", "has a twin")],
)
def test_a_twin_must_be_another_registered_single_backend(twin: str, message: str) -> None:
    from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner
    from tests.outoftree.bagstore import BagDriver

    def spec(name: str, twin: str | None = None) -> BackendSpec:
        return BackendSpec(
            name=name,
            capabilities=frozenset({Capability.KEYVALUE}),
            properties=BackendProperties(durable=False),
            provisioner=EmbeddedProvisioner(),
            driver=BagDriver,
            twin=twin,
        )

    plugin = SimpleNamespace(prism_register_backends=hookimpl(lambda: [spec("a", twin), spec("b", "c"), spec("c")]))
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="twins")
    with pytest.raises(RegistrationError, match=message):
        build_registry(pm)


@pytest.mark.parametrize(
    ("slot", "twin_capabilities", "twin_durable"),
    [
        (Slot.needs("keyvalue.ttl"), {"keyvalue"}, True),  # the twin lacks a capability
        (Slot.needs("keyvalue", durable=True), {"keyvalue", "keyvalue.ttl"}, False),  # the twin is not durable
    ],
    ids=["capability", "durable"],
)
def test_a_twin_that_fits_fewer_slots_covers_none_of_the_others(
    slot: Slot, twin_capabilities: set[str], twin_durable: bool
) -> None:
    """A third party's twin need not be the same shape as its cluster: in a slot the cluster
    fits and its twin does not, nothing stands in for the cluster, so its rows run there."""
    from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner
    from tests.outoftree.bagstore import BagDriver

    def spec(name: str, capabilities: set[str], durable: bool, twin: str | None = None) -> BackendSpec:
        return BackendSpec(
            name=name,
            capabilities=frozenset(map(Capability, capabilities)),
            properties=BackendProperties(durable=durable),
            provisioner=EmbeddedProvisioner(),
            driver=BagDriver,
            twin=twin,
        )

    cluster = spec("bag-cluster", {"keyvalue", "keyvalue.ttl"}, True, twin="bag")
    twin = spec("bag", twin_capabilities, twin_durable)
    other = spec("other", {"keyvalue"}, False)
    available = [cluster, twin, other]
    assert slot.fits(cluster)
    assert not slot.fits(twin)
    slots = {"backend": slot, "plain": Slot.needs("keyvalue")}
    # in the slot both fit, the twin covers the cluster; in the other, it does not
    assert backends_covered_by_twins(slots, available) == {"plain": {"bag-cluster": "bag"}}
    rows = expand_with_twins("s", {"backend": slot}, available, Expansion.COVERING)
    assert rows == expand("s", {"backend": slot}, available, Expansion.COVERING)
    assert isinstance(rows, list)
    assert [c["backend"] for c in rows if isinstance(c, Combination) and not c.covered_by] == ["bag-cluster"]
