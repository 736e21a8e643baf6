"""How xdist deals the tests: an exclusive backend's rows found by their node ids alone, and the
heaviest tests first by an earlier run's durations."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prism_testkit.registry.xdist_scheduler import (
    EXCLUSIVE_SCOPE,
    MAX_PARTS,
    exclusive_backend,
    exclusive_parts,
    heaviest_first,
)

NAMES = ["memstore", "jetstream", "jetstream-r3", "jetstream-r3-lazy-sync", "nats", "redis", "redis-aof"]


@pytest.mark.parametrize(
    ("nodeid", "exclusive", "expected"),
    [
        ("s/test_wal.py::test_a[log=jetstream-r3-target=memstore]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_wal.py::test_a[log=memstore-target=jetstream-r3]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_wal.py::test_a[log=memstore-target=jetstream-r3-7]", {"jetstream-r3"}, "jetstream-r3"),  # own param
        ("s/test_wal.py::test_a[log=jetstream-r3-lazy-sync-target=memstore]", {"jetstream-r3"}, None),
        (
            "s/test_wal.py::test_a[log=jetstream-r3-lazy-sync-target=jetstream-r3]",
            {"jetstream-r3", "jetstream-r3-lazy-sync"},
            "jetstream-r3-lazy-sync",  # the first: a row of two clusters goes with its first
        ),
        ("s/test_wal.py::test_a[log=jetstream-target=redis-aof]", {"jetstream-r3"}, None),
        ("s/test_kv.py::test_b[ns=orders-backend=jetstream-r3]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_kv.py::test_b[backend=redis-aof]", {"redis"}, None),
        ("s/test_kv.py::test_b", {"jetstream-r3"}, None),
        ("tests/test_x.py::test_c[jetstream-r3]", {"jetstream-r3"}, None),  # not a combination
    ],
)
def test_a_rows_backends_are_read_from_its_id(nodeid: str, exclusive: set[str], expected: str | None) -> None:
    assert exclusive_backend(nodeid, NAMES, exclusive) == expected


def test_units_are_dealt_heaviest_first_by_their_tests_recorded_seconds() -> None:
    units = {"a": ["a"], "b": ["b"], "cluster": ["c1", "c2", "c3"], "d": ["d"]}
    recorded = {"a": 1.0, "b": 30.0, "c1": 10.0, "c2": 10.0, "c3": 5.0, "d": 2.0}
    assert heaviest_first(units, recorded) == ["b", "cluster", "d", "a"]


def test_a_test_never_recorded_weighs_the_median_of_those_recorded() -> None:
    """A new test is neither first (as if it were the longest) nor last (as if it took nothing):
    the median of 1, 2, 3, 40 and 50 is 3, so the new test goes after 40 and 50 and before 2."""
    units = {name: [name] for name in ("one", "two", "new", "forty", "fifty", "three")}
    recorded = {"one": 1.0, "two": 2.0, "three": 3.0, "forty": 40.0, "fifty": 50.0}
    order = heaviest_first(units, recorded)
    assert order[:2] == ["fifty", "forty"]
    assert order.index("new") < order.index("two") < order.index("one"), order


def test_equal_weights_and_no_recordings_keep_the_given_order() -> None:
    units = {name: [name] for name in ("z", "a", "m")}
    assert heaviest_first(units, {}) == ["z", "a", "m"]
    assert heaviest_first(units, {"z": 1.0, "a": 1.0, "m": 1.0}) == ["z", "a", "m"]


ORDER_LOG = """
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("xdist_order", backend=Slot.needs("keyvalue"))

@pytest.mark.parametrize("n", range(6))
def test_order(prism_env: PrismEnv, n: int) -> None:
    with open("ran.log", "a") as log:
        log.write(f"{n}\\n")
"""


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "none-recorded"])
def test_a_worker_runs_the_tests_an_earlier_run_recorded_longest_first(
    pytester: pytest.Pytester, recorded: bool
) -> None:
    """The whole path: the durations file read on the controller reorders what xdist deals. One
    worker runs what it is dealt in the order dealt, so its log is the order."""
    pytester.makepyfile(test_order=ORDER_LOG)
    seconds = {5: 90.0, 2: 60.0, 0: 30.0}
    durations = {f"test_order.py::test_order[backend=memstore-{n}]": seconds.get(n, 1.0) for n in range(6)}
    (pytester.path / "durations.json").write_text(json.dumps(durations))
    given = ["--prism-shard-durations=durations.json"] if recorded else []
    result = pytester.runpytest_subprocess("-n", "1", "--prism-backend=memstore", "-p", "no:randomly", *given)
    result.assert_outcomes(passed=6)
    ran = [int(n) for n in (pytester.path / "ran.log").read_text().split()]
    assert ran == ([5, 2, 0, 1, 3, 4] if recorded else [0, 1, 2, 3, 4, 5])


def rows(module: str, backend: str, count: int) -> list[str]:
    return [f"s/{module}.py::test_it[backend={backend}-{n}]" for n in range(count)]


def test_a_cluster_heavier_than_a_workers_share_is_split_by_module() -> None:
    """A main job's jetstream-r3 rows took 1,084 s of its 1,123 s on one worker while the run's
    share per worker was under 900 s: split into parts of whole modules, each a scope (a cluster
    of its own), balanced by recorded seconds."""
    collection = [
        *rows("test_power", "jetstream-r3", 4),
        *rows("test_snapshot", "jetstream-r3", 2),
        *rows("test_leader", "jetstream-r3", 4),
        *rows("test_wal", "jetstream-r3-lazy-sync", 2),
        *rows("test_kv", "memstore", 40),
    ]
    recorded = dict.fromkeys(collection, 1.0)
    recorded |= dict.fromkeys(rows("test_power", "jetstream-r3", 4), 60.0)
    recorded |= dict.fromkeys(rows("test_snapshot", "jetstream-r3", 2), 100.0)
    recorded |= dict.fromkeys(rows("test_leader", "jetstream-r3", 4), 10.0)
    # 240 + 200 + 40 = 480 s of jetstream-r3 in a run of 480 + 2 + 40 = 522 s on 4 workers: 130 s a share
    scopes = exclusive_parts(collection, NAMES, {"jetstream-r3", "jetstream-r3-lazy-sync"}, recorded, 4)
    parts = {scopes[nodeid] for nodeid in collection if "jetstream-r3-" in nodeid and "lazy" not in nodeid}
    assert parts == {f"{EXCLUSIVE_SCOPE}:jetstream-r3:{k}" for k in (1, 2, 3)}  # 480 / 130: 4, at most 3
    for module in ("test_power", "test_snapshot", "test_leader"):  # a module stays whole
        assert (
            len({scopes[nodeid] for nodeid in rows(module, "jetstream-r3", 4 if module != "test_snapshot" else 2)}) == 1
        )
    assert {scopes[nodeid] for nodeid in rows("test_wal", "jetstream-r3-lazy-sync", 2)} == {
        f"{EXCLUSIVE_SCOPE}:jetstream-r3-lazy-sync"  # light: one cluster
    }
    assert not any(nodeid in scopes for nodeid in rows("test_kv", "memstore", 40))


def test_without_recordings_or_within_a_share_a_cluster_stays_whole() -> None:
    collection = [*rows("test_power", "jetstream-r3", 4), *rows("test_leader", "jetstream-r3", 4)]
    collection += rows("test_kv", "memstore", 40)
    whole = {f"{EXCLUSIVE_SCOPE}:jetstream-r3"}
    cluster = [nodeid for nodeid in collection if "jetstream" in nodeid]
    assert {exclusive_parts(collection, NAMES, {"jetstream-r3"}, {}, 4)[n] for n in cluster} == whole
    light = dict.fromkeys(collection, 1.0)  # 8 of 48 s on 4 workers: under the 12 s share
    assert {exclusive_parts(collection, NAMES, {"jetstream-r3"}, light, 4)[n] for n in cluster} == whole
    one_module = rows("test_power", "jetstream-r3", 8) + rows("test_kv", "memstore", 2)
    heavy = dict.fromkeys(one_module, 1.0) | dict.fromkeys(rows("test_power", "jetstream-r3", 8), 50.0)
    assert {exclusive_parts(one_module, NAMES, {"jetstream-r3"}, heavy, 4)[n] for n in one_module[:8]} == whole


def test_a_cluster_whose_rows_were_never_recorded_stays_whole() -> None:
    """An out-of-tree cluster beside recorded built-in rows: its rows weigh the median, a guess,
    and a guess starts no second cluster."""
    collection = [*rows("test_power", "jetstream-r3", 20), *rows("test_leader", "jetstream-r3", 20)]
    collection += rows("test_kv", "memstore", 10)
    recorded = dict.fromkeys(rows("test_kv", "memstore", 10), 1.0)  # 40 unrecorded rows of 50: 40 s of 50
    scopes = exclusive_parts(collection, NAMES, {"jetstream-r3"}, recorded, 4)
    assert {scopes[nodeid] for nodeid in collection[:40]} == {f"{EXCLUSIVE_SCOPE}:jetstream-r3"}


def test_rows_recorded_as_taking_nothing_stay_whole() -> None:
    """Rows skipped where they were recorded weigh 0 s: a census run over them hit a division by
    zero inside xdist's scheduler (an internal error, the whole run lost)."""
    collection = [*rows("test_power", "jetstream-r3", 4), *rows("test_leader", "jetstream-r3", 4)]
    scopes = exclusive_parts(collection, NAMES, {"jetstream-r3"}, dict.fromkeys(collection, 0.0), 2)
    assert set(scopes.values()) == {f"{EXCLUSIVE_SCOPE}:jetstream-r3"}


@settings(max_examples=300)  # pure and quick: a wide search
@example(modules=[("test_a", "jetstream-r3", 2, 0.0)], workers=2)  # every row recorded as taking nothing
@given(
    modules=st.lists(
        st.tuples(
            st.sampled_from(["test_a", "test_b", "test_c", "test_d"]),
            st.sampled_from(["jetstream-r3", "jetstream-r3-lazy-sync", "memstore", "redis"]),
            st.integers(1, 5),
            st.sampled_from([None, 0.0, 0.0, 1.0, 50.0, 1000.0]),  # not recorded, recorded as nothing, ...
        ),
        max_size=12,
    ),
    workers=st.integers(1, 16),
)
def test_every_exclusive_row_gets_one_scope_and_a_module_stays_whole(
    modules: list[tuple[str, str, int, float | None]], workers: int
) -> None:
    collection: list[str] = []
    recorded: dict[str, float] = {}
    for at, (module, backend, count, seconds) in enumerate(modules):
        ids = [f"s/{module}.py::test_it[backend={backend}-{at}-{n}]" for n in range(count)]
        collection += ids
        if seconds is not None:
            recorded |= dict.fromkeys(ids, seconds)
    exclusive = {"jetstream-r3", "jetstream-r3-lazy-sync"}
    scopes = exclusive_parts(collection, NAMES, exclusive, recorded, workers)
    assert set(scopes) == {nodeid for nodeid in collection if exclusive_backend(nodeid, NAMES, exclusive)}
    by_module: dict[tuple[str, str], set[str]] = {}
    for nodeid, scope in scopes.items():
        its = exclusive_backend(nodeid, NAMES, exclusive)
        assert scope.startswith(f"{EXCLUSIVE_SCOPE}:{its}")
        by_module.setdefault((nodeid.split("::")[0], str(its)), set()).add(scope)
    assert all(len(found) == 1 for found in by_module.values()), by_module
    assert len(set(scopes.values())) <= MAX_PARTS * len(exclusive)


def test_a_test_never_recorded_weighs_what_recorded_tests_that_ran_took() -> None:
    """A main job records its skipped rows at 0 s, most of its tests: their median made a cluster
    never recorded weigh nothing, dealt last, and its 451 s became the run's tail."""
    units = {f"skipped{n}": [f"skipped{n}"] for n in range(10)} | {"ran": ["ran"], "ran too": ["ran too"]}
    units["new cluster"] = ["c1", "c2"]
    recorded = {f"skipped{n}": 0.0 for n in range(10)} | {"ran": 4.0, "ran too": 6.0}
    assert heaviest_first(units, recorded)[0] == "new cluster"  # 2 x 5 s, the median of 4 and 6
