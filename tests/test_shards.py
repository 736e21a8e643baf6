"""``--prism-shard=K/N``: deterministic, balanced, every test in exactly one shard, the shards
together the unsharded run, and a merge of their reports equal to one run (#51)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit.cli import main
from prism_testkit.registry.shards import read_durations, select, split

SUITE = """
    from prism_testkit import PrismEnv, Slot, prism_suite

    pytestmark = prism_suite("kv", backend=Slot.needs("keyvalue"))

    async def test_put_get(prism_env: PrismEnv) -> None:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(prism_env.ns.name("k"), b"v")
        assert await kv.get(prism_env.ns.name("k")) == b"v"

    async def test_missing(prism_env: PrismEnv) -> None:
        assert await prism_env.driver("backend").keyvalue().get(prism_env.ns.name("nothing")) is None

    def test_plain() -> None:
        pass
"""
PLAIN = "\n".join(f"def test_{n}() -> None:\n    pass\n" for n in range(11))
BACKENDS = "--prism-backend=memstore,sqlite"


@given(st.dictionaries(st.text(max_size=6), st.floats(0, 100), max_size=40), st.integers(1, 6))
def test_every_unit_lands_in_exactly_one_shard_and_the_shards_balance(weights: dict[str, float], count: int) -> None:
    shards = split(weights, count)
    assert len(shards) == count
    placed = [unit for shard in shards for unit in shard]
    assert sorted(placed) == sorted(weights)  # each unit once: no overlap, none left out
    assert split(dict(reversed(weights.items())), count) == shards  # deterministic, whatever the order
    loads = [sum(weights[unit] for unit in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(weights.values(), default=0.0) + 1e-9  # within one unit


def test_equal_tests_split_by_count_and_a_group_stays_together() -> None:
    items: list[Any] = [SimpleNamespace(nodeid=f"t.py::test_{n}") for n in range(10)]
    cluster = {id(item) for item in items[:3]}

    def unit_of(item: Any) -> str | None:
        return "exclusive:jetstream-r3" if id(item) in cluster else None

    shards = [select(items, k, 3, lambda item: item.nodeid, unit_of, {})[0] for k in (1, 2, 3)]
    assert sorted(len(shard) for shard in shards) == [3, 3, 4]
    [holding] = [shard for shard in shards if cluster & {id(item) for item in shard}]  # one shard starts it
    assert items[:3] == holding[:3]
    assert sorted((item.nodeid for shard in shards for item in shard), key=lambda n: int(n.rpartition("_")[2])) == [
        item.nodeid for item in items
    ]


def test_recorded_durations_balance_the_shards(tmp_path: Path) -> None:
    items: list[Any] = [SimpleNamespace(nodeid=f"t.py::test_{n}") for n in range(6)]
    durations = {"t.py::test_0": 10.0, "t.py::test_1": 1.0, "t.py::test_2": 1.0}  # the rest: the median, 1 s
    first, rest = select(items, 1, 2, lambda item: item.nodeid, lambda item: None, durations)
    assert [item.nodeid for item in first] == ["t.py::test_0"]  # 10 s alone against 5 x 1 s
    assert len(rest) == 5
    report = {"suites": [{"tests": {"t.py::test_0": {"outcome": "passed", "duration_s": 10.0}}}]}
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert read_durations(tmp_path / "r.json") == {"t.py::test_0": 10.0}
    (tmp_path / ".test_durations").write_text(json.dumps({"t.py::test_1": 2}))  # pytest-split's
    assert read_durations(tmp_path / ".test_durations") == {"t.py::test_1": 2.0}


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", BACKENDS, *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return [line for line in result.stdout.lines if "::" in line]


def test_the_shards_are_the_unsharded_run_without_overlap(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kv=SUITE, test_plain=PLAIN)
    everything = collected(pytester)
    assert len(everything) == 16  # 2 suite tests x 2 backends, 1 + 11 plain
    shards = [collected(pytester, f"--prism-shard={k}/3") for k in (1, 2, 3)]
    assert sorted(test for shard in shards for test in shard) == sorted(everything)
    assert sorted(len(shard) for shard in shards) == [5, 5, 6]
    assert collected(pytester, "--prism-shard=2/3") == shards[1]  # the same split every time
    # What -k leaves is what is split.
    chosen = collected(pytester, "-k", "not test_1")
    parts = [collected(pytester, "-k", "not test_1", f"--prism-shard={k}/2") for k in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(chosen)
    assert not set(parts[0]) & set(parts[1])


def test_three_shards_merge_equal_to_one_run(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.makepyfile(test_kv=SUITE, test_plain=PLAIN)
    one = pytester.runpytest("-p", "no:cacheprovider", BACKENDS, "--prism-report=one.json")
    one.assert_outcomes(passed=16)
    for k in (1, 2, 3):
        shard = pytester.runpytest(
            "-p", "no:cacheprovider", BACKENDS, f"--prism-shard={k}/3", f"--prism-report={k}.json"
        )
        assert shard.ret == pytest.ExitCode.OK
        shard.stdout.fnmatch_lines([f"prism-testkit shard {k} of 3: * tests"])
        assert json.loads((pytester.path / f"{k}.json").read_text())["shard"]["index"] == k
    capsys.readouterr()
    reports = [str(pytester.path / f"{k}.json") for k in (1, 2, 3)]
    assert main(["report", "merge", *reports, "--json", str(pytester.path / "merged.json")]) == 0
    merged = json.loads((pytester.path / "merged.json").read_text())
    single = json.loads((pytester.path / "one.json").read_text())
    assert merged["totals"]["passed"] == single["totals"]["passed"] == 16
    assert [(r["suite"], r["combination"], r["passed"]) for r in merged["suites"]] == [
        (r["suite"], r["combination"], r["passed"]) for r in single["suites"]
    ]
    assert main(["report", "merge", *reports[:2]]) == 2  # a missing shard stops the merge
    assert "1 shard missing: 3 of 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "environ", "expected"),
    [
        (["--prism-shard=4/3"], {}, "*--prism-shard=4/3: shard 4 of 3 cannot be*"),
        (["--prism-shard=two"], {}, "*--prism-shard=two: expected K/N*"),
        (["--prism-shard=1/2"], {"PRISM_SHARD": "1/2"}, "*--prism-shard=1/2 splits the run itself*give one*"),
        # alone, the durations weigh the progress line's time left: read (and refused) all the same
        (["--prism-shard-durations=d.json"], {}, "*--prism-shard-durations: *d.json*"),
        (["--prism-shard=1/2", "--prism-shard-durations=nope.json"], {}, "*--prism-shard-durations: *nope.json*"),
    ],
)
def test_a_bad_shard_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], environ: dict[str, str], expected: str
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_plain=PLAIN)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


# -- the same tests collected in another order land in the same shards (issue 66) ----------
# Every machine of a matrix must split alike, and nothing promises they collect in one order:
# the files named in another order, a plugin that reorders (pytest-randomly), another file
# system's listing. A split that follows collection order puts a test in two shards, or none.


def shuffled(items: list[Any], seed: int) -> list[Any]:
    return random.Random(seed).sample(items, len(items))


ORDERS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "as-collected": lambda items: list(items),
    "reversed": lambda items: list(reversed(items)),
    **{f"shuffled-{seed}": partial(shuffled, seed=seed) for seed in (1, 2)},
}


def placement(
    items: list[Any], count: int, durations: dict[str, float], unit_of: Callable[[Any], str | None]
) -> dict[str, int]:
    """Each test's shard (from 1) when ``items`` are collected in this order."""
    placed: dict[str, int] = {}
    for index in range(1, count + 1):
        mine, others = select(items, index, count, lambda item: item.nodeid, unit_of, durations)
        assert len(mine) + len(others) == len(items)
        assert mine == [item for item in items if item in mine], "a shard's tests are not in collection order"
        for item in mine:
            assert item.nodeid not in placed, f"{item.nodeid} in shards {placed[item.nodeid]} and {index}"
            placed[item.nodeid] = index
    assert len(placed) == len(items), "a test in no shard"
    return placed


@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("recorded", [False, True], ids=["by-count", "by-duration"])
def test_the_same_tests_collected_in_any_order_land_in_the_same_shards(count: int, recorded: bool) -> None:
    # equal weights everywhere (ties are where an order-dependent split shows), a cluster's rows
    # as one unit, and with recorded durations some tests heavier and some unrecorded
    items: list[Any] = [SimpleNamespace(nodeid=f"t{n % 3}.py::test_{n}") for n in range(23)]
    cluster = {item.nodeid for item in items[4:8]}
    durations = {item.nodeid: float(1 + n % 2) for n, item in enumerate(items) if n % 4} if recorded else {}

    def unit_of(item: Any) -> str | None:
        return "exclusive:postgres-ha" if item.nodeid in cluster else None

    placements = {name: placement(order(items), count, durations, unit_of) for name, order in ORDERS.items()}
    expected = placements.pop("as-collected")
    for name, placed in placements.items():
        moved = sorted(test for test in expected if placed[test] != expected[test])
        assert not moved, f"collected {name}, these tests moved to another shard: {moved}"
    assert len({expected[test] for test in cluster}) == 1  # the cluster's rows stay together


REORDER = """
import os
import random

import pytest


@pytest.hookimpl(tryfirst=True)  # before any selection: the order pytest collected in
def pytest_collection_modifyitems(items):
    order = os.environ.get("SHARD_TEST_ORDER", "")
    if order == "reversed":
        items.reverse()
    elif order.startswith("shuffled-"):
        random.Random(int(order.removeprefix("shuffled-"))).shuffle(items)
"""


def test_a_run_collected_in_another_order_splits_the_same(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the files named in another order, and a plugin that reorders the tests."""
    pytester.makepyfile(test_kv=SUITE, test_plain=PLAIN, test_more=PLAIN.replace("test_", "test_more_"))
    pytester.makeconftest(REORDER)
    files = ["test_kv.py", "test_plain.py", "test_more.py"]
    runs = {"named-in-order": (files, ""), "named-backwards": (files[::-1], "")}
    runs |= {order: (files, order) for order in ("reversed", "shuffled-1", "shuffled-2")}
    placements: dict[str, dict[str, int]] = {}
    for name, (named, order) in runs.items():
        monkeypatch.setenv("SHARD_TEST_ORDER", order)
        collected_in = collected(pytester, *named)
        placed = {test: k for k in (1, 2, 3) for test in collected(pytester, *named, f"--prism-shard={k}/3")}
        assert sorted(placed) == sorted(collected_in)  # each test in exactly one shard
        placements[name] = placed
    expected = placements.pop("named-in-order")
    for name, placed in placements.items():
        moved = sorted(test for test in expected if placed[test] != expected[test])
        assert not moved, f"collected {name}, these tests moved to another shard: {moved}"


def test_report_durations_writes_every_test_s_seconds_for_the_shard_planner_and_the_progress_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prism-testkit report durations`: every test of two reports (rows, and tests outside
    them) by node id, the later report's time for a test in both, read back by
    --prism-shard-durations as written, compressed when the name says .gz, and byte-identical
    when written again."""
    saved = json.loads((Path(__file__).parent / "fixtures/reports/run-every-section.v1.json").read_text())
    later = json.loads(json.dumps(saved))
    row = later["suites"][-1]["tests"]
    slow = next(iter(row))
    row[slow]["duration_s"] = 123.456
    later["suites"][-1]["tests"] = {slow: row[slow]}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, report in zip(paths, (saved, later), strict=True):
        path.write_text(json.dumps(report))
    sections = [*saved["suites"], saved["without_combination"], saved["outside_suites"]]
    wanted = {test: round(entry.get("duration_s", 0.0), 2) for s in sections for test, entry in s["tests"].items()}
    wanted[slow] = 123.46
    assert len(wanted) > 3
    for name in ("d.json", "d.json.gz"):
        assert main(["report", "durations", *map(str, paths), "-o", str(tmp_path / name)]) == 0
        assert read_durations(tmp_path / name) == wanted
    first = (tmp_path / "d.json.gz").read_bytes()
    assert main(["report", "durations", *map(str, paths), "-o", str(tmp_path / "d.json.gz")]) == 0
    assert (tmp_path / "d.json.gz").read_bytes() == first
    (tmp_path / "no.json").write_text("[1, 2]")
    assert main(["report", "durations", str(tmp_path / "no.json")]) == 2
    assert "no.json" in capsys.readouterr().err


def test_a_durations_file_that_is_not_gzip_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "d.json.gz").write_text("{}")
    with pytest.raises(ValueError, match=r"d\.json\.gz: cannot be read"):
        read_durations(tmp_path / "d.json.gz")
