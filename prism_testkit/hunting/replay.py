"""``prism-testkit replay FILE``: run a schedule file's test again by issuing its recorded steps.

It runs pytest in this process on the schedule's test, with its backends, the combination it
failed on, the ``-p`` plugins its run loaded (imported from that run's directory) and
``--prism-replay=FILE``, then prints pytest's output and one last line: ``reproduced: ...`` or
``did not reproduce: ...``, each with the replay's own verdict, and the recorded failure.

Exit codes: 1 the failure reproduced (the test fails, as pytest would say), 0 it did not,
2 bad input (a file that cannot be read, is not a schedule, or names a test that is not there),
3 the replay could not run (pytest stopped before the test ran: a backend could not be provisioned).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from prism_testkit.errors import BadBinary
from prism_testkit.hunting.schedule import Schedule, ScheduleError, read
from prism_testkit.provision.binaries import OPTION, binaries_of
from prism_testkit.redaction import printable, redact

if TYPE_CHECKING:
    from prism_testkit.options import PrismOptions

NOT_REPRODUCED, REPRODUCED, USAGE, NOT_RUN = 0, 1, 2, 3
# PRISM_* variables that change only what a run prints, never what it does: left out of replays
DISPLAY_ONLY = frozenset({"PRISM_PROGRESS_EVERY", "PRISM_HUNT_PROGRESS_EVERY"})


def run_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``PRISM_*`` environment settings that shaped this run (``PRISM_SLOWNESS``, a suite's
    ``PRISM_JUDGE_CUT_OFF_LEADERS``, ``PRISM_<NAME>_BINARY``...), by name; a URL's password is
    masked, so a replay line never carries a credential."""
    source = os.environ if environ is None else environ
    return {
        name: redact(value)
        for name, value in sorted(source.items())
        if name.startswith("PRISM_") and name not in DISPLAY_ONLY
    }


class Contradiction(NamedTuple):
    """An option that, beside ``--prism-replay``, asks for another run than the schedule recorded."""

    example: str  # a value of the option that contradicts :data:`RECORDED` (the tests use it)
    why: Callable[[Schedule, PrismOptions], str | None]  # what it contradicts, or None


def _other_load(schedule: Schedule, options: PrismOptions) -> str | None:
    from prism_testkit.faults.load import parse

    if options.load is None:
        return None
    recorded = parse(schedule.load) if schedule.load else None
    same = recorded is not None and replace(recorded, seed=None) == replace(options.load, seed=None)
    if same and recorded is not None and options.load.seed in (None, recorded.seed):  # no seed: the schedule's
        return None
    return f"the schedule was recorded under {schedule.load or 'no load'}"


# What a replay's run may not be given beside its schedule: the schedule decides the modes its
# steps run in (an option left out is the schedule's), so an option that asks for another one
# would be silently overruled, and a reader would believe the replay ran as the command says.
CONFLICTS: dict[str, Contradiction] = {
    "--prism-hunt": Contradiction(
        "--prism-hunt=10m",
        lambda schedule, options: (
            "a hunt draws new examples; a replay issues the recorded steps once" if options.hunt is not None else None
        ),
    ),
    "--prism-simulate": Contradiction(
        "--prism-simulate",
        lambda schedule, options: (
            "the schedule was recorded on real time" if options.simulate and not schedule.simulate else None
        ),
    ),
    "--prism-buggify": Contradiction(
        "--prism-buggify=late",
        lambda schedule, options: (
            f"the schedule was recorded under --prism-buggify={','.join(schedule.buggify) or 'none'}"
            if options.buggify and sorted(options.buggify) != sorted(schedule.buggify)
            else None
        ),
    ),
    "--prism-load": Contradiction("--prism-load=cpu:1", _other_load),
}
# A schedule every example above contradicts: recorded on real time, without misbehaviour or load.
RECORDED = {"simulate": False, "buggify": [], "load": None}


def contradictions(schedule: Schedule, options: PrismOptions) -> list[str]:
    """Each option of this run that contradicts ``schedule``, with what it contradicts."""
    return [f"{flag}: {why}" for flag, found in CONFLICTS.items() if (why := found.why(schedule, options))]


def binary_arguments(binaries: Mapping[str, Path]) -> list[str]:
    """``--prism-binary NAME=PATH`` for each binary the run chose, absolute (a replay may run elsewhere)."""
    return [part for name, path in sorted(binaries.items()) for part in (OPTION, f"{name}={path.absolute()}")]


def chosen_binaries(config: pytest.Config) -> dict[str, Path]:
    """The binaries ``--prism-binary`` (and the ``prism_binary`` ini lines) chose for this run."""
    try:
        return binaries_of(config.getini("prism_binary") or [], config.getoption("prism_binary", None) or [])
    except BadBinary:  # the plugin refused this run's options before any test ran
        return {}


def command_line(args: Sequence[str], settings: Mapping[str, str]) -> str:
    """``args`` as one shell line, preceded by the environment ``settings`` it needs."""
    return " ".join([*(f"{name}={shlex.quote(value)}" for name, value in settings.items()), shlex.join(args)])


def add_replay_command(commands: Any) -> None:  # argparse's subparsers action has no public type
    replay = commands.add_parser(
        "replay",
        help="run a schedule file's test again, issuing its recorded steps in order; exit 1 if the failure "
        "reproduced, 0 if not",
    )
    replay.add_argument("file", metavar="FILE", help="a schedule file a failing stateful test wrote")
    replay.add_argument(
        OPTION,
        dest="prism_binary",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the server binary the failing run chose for NAME (repeatable; its replay line says which)",
    )


def _say(line: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    print(printable(redact(line), stream), file=stream)


class _Outcome:
    """A pytest plugin that keeps what the replayed test reported."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == "prism_replay" and isinstance(value, dict):
                self.result = value


def _test_arguments(test: str) -> list[str]:
    """A schedule's test (``/abs/file.py::name[params]``) on the command line: a test of the
    harness's own suites by its identity under ``--pyargs``, so pytest names it the same from
    any directory (a path outside the root reads ``../../work/main/suites/...``); any other by
    its file's path."""
    from prism_testkit.hunting.identity import OWN_SUITES, module_identity

    file, separator, rest = test.partition("::")
    module = module_identity(Path(file)) if separator and Path(file).is_file() else ""
    if module.startswith(f"{OWN_SUITES}."):
        return ["--pyargs", f"{module}::{rest}"]
    return [test]


def pytest_arguments(schedule: Schedule, path: Path, binaries: Sequence[str] = ()) -> list[str]:
    """The pytest command line that replays ``schedule`` (stored at ``path``) on the server
    binaries ``binaries`` (``--prism-binary`` values, ``NAME=PATH``)."""
    args = [
        *_test_arguments(schedule.test),
        f"--prism-backend={','.join(schedule.backends)}",
        "--prism-combinations=all",  # the combination exists whatever the covering set
        f"--prism-replay={path}",
        *("-p", "no:randomly", "-p", "no:cacheprovider", "-q"),
        # this process imported prism_testkit before pytest could rewrite its asserts: expected here
        *("-W", "ignore::pytest.PytestAssertRewriteWarning"),
    ]
    for plugin in schedule.plugins:
        args += ["-p", plugin]
    if schedule.simulate:
        args.append("--prism-simulate")
    if schedule.buggify:
        args.append(f"--prism-buggify={','.join(schedule.buggify)}")
    if schedule.load:  # the same burners, and the failing process's stalls drawn again
        args.append(f"--prism-load={schedule.load}")
    for line in binaries:
        args += [OPTION, line]
    return args


def run_replay_command(args: argparse.Namespace) -> int:
    return replay(Path(args.file), args.prism_binary)


def replay(path: Path, binaries: Sequence[str] = ()) -> int:
    try:
        schedule = read(path)
    except ScheduleError as exc:
        _say(f"prism-testkit: error: {exc}", sys.stderr)
        return USAGE
    test_file = schedule.test.split("::", 1)[0]
    if not Path(test_file).is_file():
        _say(f"prism-testkit: error: {path}: its test file {test_file} does not exist", sys.stderr)
        return USAGE
    for folder in schedule.import_paths:  # where the recorded run imported its -p plugins from
        if folder not in sys.path:
            sys.path.append(folder)
    outcome = _Outcome()
    arguments = pytest_arguments(schedule, path.absolute(), binaries)
    # what runs, so a reader sees the recorded run's modes (--prism-simulate, --prism-buggify) again
    _say(f"prism-testkit replay: running {command_line(['pytest', *arguments], {})}")
    output, errors = io.StringIO(), io.StringIO()  # shown after the run, unless it is one usage error
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
        code = pytest.main(arguments, plugins=[outcome])
    if outcome.result is None and code == pytest.ExitCode.USAGE_ERROR:
        found = " ".join(errors.getvalue().split())[:300] or "no such test"
        _say(f"prism-testkit: error: {path}: its test {schedule.test} cannot be run: {found}", sys.stderr)
        return USAGE
    sys.stderr.write(errors.getvalue())
    if outcome.result is None:
        sys.stdout.write(output.getvalue())
        _say(f"prism-testkit: error: {path}: the replay did not run (pytest exit code {int(code)})", sys.stderr)
        return NOT_RUN
    sys.stdout.write(output.getvalue())
    reproduced = bool(outcome.result.get("reproduced"))
    head = "reproduced" if reproduced else "did not reproduce"
    _say(f"replay of {path}: {head}: {outcome.result.get('verdict')} (recorded: {schedule.failure})")
    return REPRODUCED if reproduced else NOT_REPRODUCED
