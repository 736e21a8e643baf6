"""``--prism-shard=K/N``: deterministic, balanced, every test in exactly one shard, the shards
together the unsharded run, and a merge of their reports equal to one run (#51)."""

from __future__ import annotations

import json
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
        (["--prism-shard-durations=d.json"], {}, "*--prism-shard-durations has no effect without --prism-shard*"),
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
