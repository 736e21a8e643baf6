"""A printed replay carries what shaped the failing run beyond its options: the server binaries
chosen by ``--prism-binary`` and the ``PRISM_*`` environment settings (a suite's
``PRISM_JUDGE_CUT_OFF_LEADERS=1``, ``PRISM_SLOWNESS``...), credentials masked. Both printed
commands do: the seed replay (``pytest ...``) and the schedule's (``prism-testkit replay FILE``),
which takes ``--prism-binary`` too."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from prism_testkit.hunting.replay import binary_arguments, command_line, pytest_arguments, run_settings
from prism_testkit.hunting.schedule import Schedule
from tests.test_replay_settings import SUITE


def test_the_settings_are_the_prism_variables_that_change_what_a_run_does() -> None:
    environ = {
        "PRISM_JUDGE_CUT_OFF_LEADERS": "1",
        "PRISM_SLOWNESS": "2.5",
        "PRISM_PROGRESS_EVERY": "5",  # what the run prints, not what it does
        "PRISM_POSTGRES_URL": "postgresql://app:s3cret@db:5432/x",
        "HOME": "/root",
    }
    assert run_settings(environ) == {
        "PRISM_JUDGE_CUT_OFF_LEADERS": "1",
        "PRISM_POSTGRES_URL": "postgresql://app:***@db:5432/x",
        "PRISM_SLOWNESS": "2.5",
    }


def test_the_command_line_sets_them_before_the_command_and_quotes_what_needs_it(tmp_path: Path) -> None:
    line = command_line(
        ["pytest", "a b.py", *binary_arguments({"nats": Path("rel/nats-server")})],
        {"PRISM_A": "1", "PRISM_B": "two words"},
    )
    assert line.startswith("PRISM_A=1 PRISM_B='two words' pytest 'a b.py' --prism-binary nats=/")
    assert shlex.split(line)[-1] == f"nats={Path('rel/nats-server').absolute()}"


def test_the_replay_command_passes_its_binaries_to_pytest(tmp_path: Path) -> None:
    schedule = Schedule("t.py::test_x", "t.py::test_x[memstore]", ["memstore"], {"backend": "memstore"}, "x", [], [])
    args = pytest_arguments(schedule, tmp_path / "s.json", ["nats=/opt/nats-server"])
    assert args[-2:] == ["--prism-binary", "nats=/opt/nats-server"]
    assert "--prism-binary" not in pytest_arguments(schedule, tmp_path / "s.json")


def test_a_failure_prints_replays_with_the_binary_and_the_environment_of_its_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = tmp_path / "nats-server"
    server.write_text('#!/bin/sh\necho "nats-server: v2.12.1"\n')
    server.chmod(0o755)
    # the planted suite, asking for the binaries as a test that starts its own server does
    pytester.makepyfile(test_planted=SUITE.replace("request) -> None:", "request, prism_binaries) -> None:"))
    monkeypatch.setenv("PRISM_OBSERVED", str(pytester.path / "observed.jsonl"))
    monkeypatch.setenv("PRISM_JUDGE_CUT_OFF_LEADERS", "1")
    result = pytester.runpytest_subprocess(
        "--prism-backend=memstore",
        *("-p", "no:cacheprovider", "-p", "no:randomly", "--prism-schedules=schedules"),
        *("--prism-binary", f"nats={server}"),
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    out = result.stdout.str()
    seed = next(line for line in result.stdout.lines if re.search(r"\bpytest \S+ --prism-backend=", line))
    schedule = next(line for line in result.stdout.lines if "prism-testkit replay " in line)
    for line in (seed, schedule):
        assert "PRISM_JUDGE_CUT_OFF_LEADERS=1 " in line, line
        assert f"--prism-binary nats={server}" in line, line
    assert "has no effect" not in out
