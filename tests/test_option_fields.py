"""Every field of every option given twice is refused, naming the field (issue 66 item 3).

A seeded bug that let ``--prism-load`` take one of its fields twice got through: only ``cpu``
was ever repeated in a test. The cases here are generated from each parser's own table of
fields (``faults.load.FIELDS``, ``hunting.depth.LEVELS``, ``config.units.DURATION_UNITS``,
``registry.shards.FIELDS``, the registered provisioners' binary names and the registered
backends), so a field added to a table is covered without a new line here, and a field the
parser reads without its table's check is refused by nothing but these tests.
"""

from __future__ import annotations

import itertools
import stat
from pathlib import Path
from typing import Any

import pytest

from prism_testkit.config.units import DURATION_UNITS
from prism_testkit.errors import BadBinary, RepeatedField
from prism_testkit.faults import load
from prism_testkit.hunting import depth, hunt, replay
from prism_testkit.provision import binaries
from prism_testkit.registry import shards
from prism_testkit.registry.backends import build_registry, make_plugin_manager

# -- --prism-load: cpu, io, stall, seed ----------------------------------------------------

LOAD_FIELDS = sorted(load.FIELDS)


def load_item(name: str) -> str:
    return f"{name}:{load.FIELDS[name].example}"


def spec_of(names: tuple[str, ...]) -> str:
    """The fields ``names``, each once, and a burner beside them when none of them is load itself."""
    burning = [name for name in ("cpu", "io") if name not in names]
    asks = any(name != "seed" for name in names)
    return ",".join([*(load_item(name) for name in names), *([] if asks else [load_item(burning[0])])])


def test_every_load_field_reads_alone_and_beside_every_other() -> None:
    """The table is the parser's: each field it names parses, and no two distinct ones clash."""
    for count in (1, 2, len(LOAD_FIELDS)):
        for names in itertools.combinations(LOAD_FIELDS, count):
            spec = load.parse(spec_of(names))
            assert load.parse(spec.argument()) == spec


@pytest.mark.parametrize("name", LOAD_FIELDS)
@pytest.mark.parametrize("between", [False, True], ids=["adjacent", "apart"])
def test_a_load_field_given_twice_is_refused_naming_it(name: str, between: bool) -> None:
    others = [load_item(other) for other in LOAD_FIELDS if other != name] if between else []
    text = ",".join([load_item(name), *others, load_item(name)])
    with pytest.raises(load.LoadSpecError) as raised:
        load.parse(text)
    assert isinstance(raised.value, RepeatedField), raised.value
    assert (raised.value.option, raised.value.field) == ("--prism-load", name)
    assert f"{name} is given twice" in str(raised.value)


@pytest.mark.parametrize("name", sorted({item.partition(":")[0] for item in load.CALIBRATED.split(",")}))
def test_a_field_calibrated_already_names_is_refused_beside_it(name: str) -> None:
    with pytest.raises(RepeatedField) as raised:
        load.parse(f"calibrated,{load_item(name)}")
    assert raised.value.field == name
    assert "'calibrated' is" in str(raised.value)  # why a field given once reads as twice


# -- --prism-depth: one depth, a number or a level -----------------------------------------

DEPTHS = [*depth.LEVELS, "5"]


@pytest.mark.parametrize(("first", "second"), list(itertools.product(DEPTHS, repeat=2)))
@pytest.mark.parametrize("separator", [",", " "], ids=["comma", "space"])
def test_two_depths_are_refused(first: str, second: str, separator: str) -> None:
    depth.parse(first)  # each reads alone
    with pytest.raises(depth.BadDepth) as raised:
        depth.parse(f"{first}{separator}{second}")
    assert isinstance(raised.value, RepeatedField)
    assert (raised.value.option, raised.value.field) == ("--prism-depth", depth.FIELD)
    assert "takes one depth, not 2" in str(raised.value)


# -- --prism-hunt: one budget --------------------------------------------------------------


@pytest.mark.parametrize("unit", DURATION_UNITS)
@pytest.mark.parametrize("separator", [",", " ", ""], ids=["comma", "space", "joined"])
def test_two_hunt_budgets_are_refused(unit: str, separator: str) -> None:
    assert hunt.parse_budget(f"2{unit}") > 0  # one reads
    with pytest.raises(hunt.HuntError) as raised:
        hunt.parse_budget(f"1{unit}{separator}2{unit}")
    assert isinstance(raised.value, RepeatedField)
    assert (raised.value.option, raised.value.field) == ("--prism-hunt", hunt.FIELD)


# -- --prism-shard: K/N --------------------------------------------------------------------


# each field doubled with each separator that cannot be read as the next field (a slash, for all but the last)
SHARD_CASES = [
    (position, separator)
    for position in range(len(shards.FIELDS))
    for separator in [",", " ", *(["/"] if position == len(shards.FIELDS) - 1 else [])]
]


@pytest.mark.parametrize(
    ("position", "separator"), SHARD_CASES, ids=[f"{shards.FIELDS[p]}{s!r}" for p, s in SHARD_CASES]
)
def test_a_shard_field_given_twice_is_refused_naming_it(position: int, separator: str) -> None:
    parts = [str(n) for n in range(1, len(shards.FIELDS) + 1)]
    assert shards.parse("/".join(parts)) == (1, 2)
    parts[position] = f"{parts[position]}{separator}{parts[position]}"
    with pytest.raises(RepeatedField) as raised:
        shards.parse("/".join(parts))
    assert raised.value.field == shards.FIELDS[position]
    assert f"{shards.FIELDS[position]} is given twice" in str(raised.value)


@pytest.mark.parametrize("given", ["--prism-shard", "PRISM_SHARD"])
def test_a_shard_given_twice_is_one_usage_error_however_it_is_given(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    args = ["--prism-shard=1/2,2/2"] if given == "--prism-shard" else []
    if given == "PRISM_SHARD":
        monkeypatch.setenv("PRISM_SHARD", "1,2/2")
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"*{given}=*{'N' if args else 'K'} is given twice*"])


# -- --prism-binary NAME=PATH, and --prism-url NAME=URL ------------------------------------

REGISTRY = build_registry(make_plugin_manager())
BINARY_NAMES = sorted({key for spec in REGISTRY if (key := getattr(spec.provisioner, "binary_key", None))})


@pytest.fixture
def executable(tmp_path: Path) -> Path:
    path = tmp_path / "server"
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_every_provisioner_that_starts_a_binary_is_covered() -> None:
    assert {"redis", "postgres", "nats", "kafka"} <= set(BINARY_NAMES)


@pytest.mark.parametrize("name", BINARY_NAMES)
def test_a_binary_name_given_twice_is_refused_naming_it(name: str, executable: Path) -> None:
    others = [f"{other}={executable}" for other in BINARY_NAMES if other != name]
    assert binaries.parse_binary_options([f"{name}={executable}", *others]).keys() == set(BINARY_NAMES)
    with pytest.raises(BadBinary) as raised:
        binaries.parse_binary_options([f"{name}={executable}", *others, f" {name} = {executable}"])
    assert isinstance(raised.value, RepeatedField)
    assert (raised.value.option, raised.value.field) == ("--prism-binary", name)
    assert f"--prism-binary {name}" in str(raised.value)


def test_a_binary_option_wins_over_its_ini_line(executable: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    chosen = binaries.binaries_of([f"{name}={executable}" for name in BINARY_NAMES], [f"redis={other}"])
    assert chosen["redis"] == other.absolute()
    assert all(chosen[name] == executable.absolute() for name in BINARY_NAMES if name != "redis")


@pytest.mark.parametrize("where", ["option", "ini"])
def test_a_repeated_binary_or_url_is_one_usage_error(pytester: pytest.Pytester, executable: Path, where: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    lines = {"prism_binary": [f"redis={executable}"] * 2, "prism_url": ["memstore=memory://a", "memstore=memory://b"]}
    for ini, given in lines.items():
        if where == "ini":
            pytester.makeini(f"[pytest]\n{ini} =\n" + "".join(f"    {line}\n" for line in given))
            result = pytester.runpytest("-p", "no:cacheprovider")
        else:
            flag = "--" + ini.replace("_", "-")
            result = pytester.runpytest(*(part for line in given for part in (flag, line)), "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        name = given[0].partition("=")[0]
        result.stderr.fnmatch_lines([f"*--{ini.replace('_', '-')} {name}*"])
        assert "memory://" not in result.stderr.str()  # a URL may carry credentials: never echoed


# -- through pytest: each parser's refusal is one usage error line naming the field -----------


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        *((f"--prism-load={load_item(n)},{load_item(n)}", f"*--prism-load: {n} is given twice*") for n in LOAD_FIELDS),
        ("--prism-depth=quick,deep", "*--prism-depth takes one depth, not 2*"),
        ("--prism-hunt=1h30m", "*--prism-hunt takes one budget, not 2*"),
        ("--prism-shard=1/2/2", "*--prism-shard=*N is given twice*"),
    ],
)
def test_a_repeated_field_is_one_usage_error(pytester: pytest.Pytester, option: str, expected: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(option, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([expected])


# -- conflicts: an option that contradicts the schedule --prism-replay runs -------------------


def recorded_schedule(folder: Path, **modes: Any) -> Path:
    from prism_testkit.hunting.schedule import Schedule

    schedule = Schedule("t.py::test_x", "t.py::test_x", ["memstore"], {"backend": "memstore"}, "x", [], [], **modes)
    path = folder / "schedule.json"
    path.write_text(schedule.to_json())
    return path


@pytest.mark.parametrize("flag", sorted(replay.CONFLICTS))
def test_an_option_that_contradicts_the_replayed_schedule_is_refused(pytester: pytest.Pytester, flag: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    path = recorded_schedule(pytester.path, **replay.RECORDED)
    result = pytester.runpytest(f"--prism-replay={path}", replay.CONFLICTS[flag].example, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"*--prism-replay {path}: {flag}: *: leave the option out*"])


def test_the_modes_a_schedule_recorded_may_be_given_again(pytester: pytest.Pytester) -> None:
    """What ``prism-testkit replay`` passes (the schedule's own modes) contradicts nothing."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    path = recorded_schedule(pytester.path, simulate=True, buggify=["late"], load="stall:10ms@30s,seed:3")
    result = pytester.runpytest(
        f"--prism-replay={path}", "--prism-simulate", "--prism-buggify=late", "--prism-load=stall:10ms@30s,seed:3"
    )
    assert "leave the option out" not in result.stderr.str()
    result.stderr.fnmatch_lines(["*--prism-replay * its test t.py::test_x was not collected*"])
