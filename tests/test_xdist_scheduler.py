"""How xdist deals the tests: an exclusive backend's rows found by their node ids alone, and the
heaviest tests first by an earlier run's durations."""

from __future__ import annotations

import json

import pytest

from prism_testkit.registry.xdist_scheduler import exclusive_backend, heaviest_first

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
