"""The census: chosen suite files, R runs each under load, on chosen backends; which rows went red.

    python -m benchmarks.census              # every prism_testkit/suites/test_*.py, 5 runs, calibrated load
    python -m benchmarks.census prism_testkit/suites/test_consumer.py --runs 3 --load cpu:4,stall:500ms@1s \\
        --backends memstore,postgres,jetstream-r3 -n 2 --out census.md --json census.json
    python -m benchmarks.census --changed-since origin/main -n 2 --depth 2   # what a landing touches

A red that appears in one run of three, on a different test each time, is found by luck in the
main job; here it is found on purpose. Each run is one pytest process per suite file, with a
fresh seed for the load's stalls and for Hypothesis (printed as it starts), and its results are
read from its JUnit XML. Runs go round by round (every file once, then every file again), so a
change in the machine's own load over the census does not fall on one file's runs only.

The table lists every row (test x parametrised combination) that was red in any run, with the
first line of its first error and the command that replays it (node id, backends, the load with
the seed of the process that ran it, the Hypothesis seed), and one summary line per suite file.
A file where no test ran on any chosen backend is listed as such and fails the census like a
red: a census that skipped everything proved nothing. Exit code: 0 green, 1 a red or a file
where nothing ran, 2 usage error (also a backend or option pytest refuses).

A census takes hours; one that stopped (Ctrl-C, a reboot, a kill) goes on where it stopped:

    python -m benchmarks.census --runs 5 --keep census-runs/ --json census.json    # stopped in round 4
    python -m benchmarks.census --resume census-runs/ --json census.json           # runs what is missing

``--keep DIR`` writes, beside each run's JUnit XML and output, a record of the run once the census
has judged it (seed, wall time, exit code, what went wrong, the XML's SHA-256), and at the start a
manifest (``census-manifest.json``: suite files, backends, load, ``-n``, ``-k``, ``--depth``, runs, timeout).
``--resume DIR`` reads the runs whose record and XML are complete back (their seeds, so their
replay lines stay right; a red is read back red, never run again) and runs only the (file, round)
pairs that lack one: a run cut short (no record, no XML, an XML that is partial or not the one the
record names) is run again, its seed drawn anew. Options left out are the kept census's; a suite
file list, ``--backends``, ``--load``, ``-n`` or ``-k`` that differs from them is a usage error
naming the difference, so two censuses are never mixed (``--runs`` may grow: more rounds).
``--keep`` into a directory that already holds a census is refused: resume it, or use another.

Parsing, the table and the records are pure functions (``tests/test_census.py``); only :func:`run_file`
starts a process. This module is also the pytest plugin each run loads (``-p benchmarks.census``)
so that under xdist a testcase records the worker that ran it: the replay, run without xdist,
needs that worker's stall seed (:func:`prism_testkit.faults.load.jitter_seed`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks import touched
from prism_testkit.faults.load import CALIBRATED, LoadSpec, LoadSpecError, jitter_seed, parse

ROOT = Path(__file__).resolve().parent.parent
CALIBRATED_LOAD = CALIBRATED  # the default strength; set in one place, beside the load mode itself
DEFAULT_RUNS = 5
# one embedded, one server, one replicated backend; a suite that a cluster does not fit simply has
# no rows on it (the runs pass -o prism_require_fit=false, as the main job does)
DEFAULT_BACKENDS = "memstore,postgres,jetstream-r3"
WORKER_PROPERTY = "census_worker"
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
RED = (FAILED, ERROR)
RUN_PROBLEM = "(the pytest run)"  # the pseudo-test of a run that went wrong outside any testcase
COLLECTION = "(collection)"  # the pseudo-test of a file that failed to import
MESSAGE_WIDTH = 200  # a first error longer than this is cut: the table is for reading
INTERNAL_ERROR, USAGE_ERROR, NO_TESTS = 3, 4, 5  # pytest's exit codes
STOP_GRACE = 60.0  # seconds a timed-out run gets after SIGINT to write its XML and stop its servers
MANIFEST = "census-manifest.json"  # in a --keep directory: what census its runs belong to
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Case:
    """One testcase of one run, as its JUnit XML tells it."""

    test: str  # the test function, with its classes (``TestX::test_y``)
    row: str  # the parametrised id between the brackets ('' without)
    outcome: str  # passed, failed, error or skipped
    message: str = ""  # the first line of the failure or error
    worker: str | None = None  # the xdist worker that ran it (None: a serial run)

    @property
    def name(self) -> str:
        return f"{self.test}[{self.row}]" if self.row else self.test


@dataclass
class Run:
    """One pytest process over one suite file."""

    file: str
    round: int  # 1-based
    seed: int
    seconds: float
    returncode: int
    cases: list[Case]
    problem: str | None = None  # what went wrong outside every testcase (no XML, a crash, a timeout)


@dataclass
class Row:
    """One test x row of one file over every run: a line of the table when it was red."""

    file: str
    test: str
    row: str
    runs: int = 0  # runs it ran in (skipped runs not counted)
    reds: int = 0
    first_error: str = ""
    replay: str = ""
    red_seeds: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.test}[{self.row}]" if self.row else self.test


@dataclass
class FileSummary:
    file: str
    runs: int
    tests: int  # distinct test x row collected in any run
    ran: int  # of those, run (not skipped) in at least one run
    reds: int  # red test runs, summed over the runs
    red_rows: int
    seconds: float  # wall time of every run, summed
    run_seconds: list[float] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.red_rows:
            return "red"
        return "no test ran" if self.ran == 0 else "green"


@dataclass
class Census:
    load: str  # the spec without a seed
    backends: str
    runs: int
    workers: int
    keyword: str | None
    files: list[FileSummary]
    rows: list[Row]  # every row seen; the table shows the red ones
    seeds: dict[str, list[int]]  # file -> the seed of each run, in order
    interrupted: bool = False
    kept: int = 0  # runs read back from a resumed census's directory (the others ran now)
    depth: str | None = None  # --prism-depth of every run (None: the suites' default)

    @property
    def red_rows(self) -> list[Row]:
        return [row for row in self.rows if row.reds]

    @property
    def green(self) -> bool:
        return not self.interrupted and all(summary.verdict == "green" for summary in self.files)


def first_line(text: str | None, width: int = MESSAGE_WIDTH) -> str:
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def module_name(file: str) -> str:
    """How pytest's JUnit XML names a file in ``classname``:
    ``prism_testkit/suites/test_x.py`` -> ``prism_testkit.suites.test_x``."""
    return file.removesuffix(".py").replace("/", ".").replace("\\", ".")


def split_name(name: str) -> tuple[str, str]:
    """``test_x[backend=memstore]`` -> (``test_x``, ``backend=memstore``)."""
    test, bracket, rest = name.partition("[")
    return (test, rest[:-1] if rest.endswith("]") else rest) if bracket else (name, "")


_RANK = {SKIPPED: 0, PASSED: 1, ERROR: 2, FAILED: 3}  # a testcase written twice keeps the worst


def parse_junit(text: str, file: str) -> list[Case]:
    """The testcases of one run of ``file`` (as given to pytest, relative to the rootdir)."""
    module = module_name(file)
    found: dict[tuple[str, str], Case] = {}
    for element in ET.fromstring(text).iter("testcase"):
        classname, name = element.get("classname", ""), element.get("name", "")
        if not classname and name == module:  # the file did not import: pytest's collection error
            test, row = COLLECTION, ""
        elif (classname, name) == ("pytest", "internal"):  # pytest's own crash: the run's problem
            test, row = RUN_PROBLEM, ""
        else:
            classes = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
            test, row = split_name(name)
            test = "::".join([*classes.split("."), test]) if classes else test
        outcome, message = PASSED, ""
        for child in element:
            if child.tag in ("failure", "error") and outcome not in RED:
                outcome = FAILED if child.tag == "failure" else ERROR
                message = first_line(child.get("message") or child.text)
            elif child.tag == "skipped" and outcome == PASSED:
                outcome = SKIPPED
        properties = {p.get("name"): p.get("value") for p in element.iter("property")}
        case = Case(test, row, outcome, message, properties.get(WORKER_PROPERTY))
        before = found.get((test, row))
        if before is None or _RANK[case.outcome] > _RANK[before.outcome]:
            found[(test, row)] = case
    return list(found.values())


_TELLING = re.compile(r"^(?:INTERNALERROR>\s*)?(?:E\s+)?(?P<line>(?:ERROR\b|[\w.]*(?:Error|Exception|Interrupt)\b).*)")


def telling_line(output: str) -> str:
    """The line of a run's output that says best what went wrong: the last error or exception
    named (pytest's usage error, an internal error's exception), else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _TELLING.match(line)
        if found:
            return first_line(found.group("line"))
    return first_line(lines[-1] if lines else "")


def run_problem(returncode: int, cases: Sequence[Case], xml_found: bool, output: str) -> str | None:
    """What went wrong in a run that no testcase says: no XML, pytest's own crash, or an exit
    code the testcases do not explain (a session-level error, an interrupt)."""
    if not xml_found:
        return f"no JUnit XML (exit code {returncode}): {telling_line(output)}"
    if returncode == INTERNAL_ERROR or any(case.test == RUN_PROBLEM for case in cases):
        return f"pytest internal error: {telling_line(output)}"
    if returncode in (0, NO_TESTS):
        return None
    if returncode == 1 and any(case.outcome in RED for case in cases):
        return None
    return f"exit code {returncode} beyond its testcases: {telling_line(output)}"


def command_args(
    target: str,
    backends: str,
    load: str,
    hypothesis_seed: int,
    keyword: str | None = None,
    workers: int = 0,
    depth: str | None = None,
) -> list[str]:
    """The arguments of one run (also of a replay, with a node id as ``target`` and no workers)."""
    args = [target, f"--prism-backend={backends}", f"--prism-load={load}", f"--hypothesis-seed={hypothesis_seed}"]
    args += ["-p", "no:cacheprovider", "-o", "prism_require_fit=false"]
    if depth:
        args.append(f"--prism-depth={depth}")
    if keyword:
        args += ["-k", keyword]
    if workers:
        args += ["-n", str(workers)]
    return args


def python_command() -> list[str]:
    """This interpreter, as the replay shows it: relative to the checkout when it is the venv's."""
    executable = Path(sys.executable)
    try:
        shown = str(executable.relative_to(ROOT))
    except ValueError:
        shown = str(executable)
    return [shown, "-m", "pytest"]


def replay_command(
    file: str, case_name: str, backends: str, spec: LoadSpec, seed: int, worker: str | None, depth: str | None = None
) -> str:
    """The command that runs one red test again alone: without xdist, so the load's seed is the
    stall seed of the process that ran it (the worker's under xdist), and Hypothesis's seed the run's."""
    target = file if case_name in (RUN_PROBLEM, COLLECTION) else f"{file}::{case_name}"
    load = spec.argument(jitter_seed(seed, worker))
    return shlex.join([*python_command(), *command_args(target, backends, load, seed, depth=depth)])


def aggregate(
    files: Sequence[str], runs: Sequence[Run], backends: str, spec: LoadSpec, depth: str | None = None
) -> tuple[list[FileSummary], list[Row]]:
    """Per file, every test x row over its runs, and the file's summary."""
    summaries, rows = [], []
    for file in files:
        mine = sorted((run for run in runs if run.file == file), key=lambda run: run.round)
        table: dict[tuple[str, str], Row] = {}
        for run in mine:
            cases = [case for case in run.cases if case.test != RUN_PROBLEM]  # said by run.problem
            if run.problem is not None:
                cases.append(Case(RUN_PROBLEM, "", ERROR, run.problem))
            for case in cases:
                row = table.setdefault((case.test, case.row), Row(file, case.test, case.row))
                if case.outcome == SKIPPED:
                    continue
                row.runs += 1
                if case.outcome in RED:
                    row.reds += 1
                    row.red_seeds.append(run.seed)
                    if not row.first_error:  # runs are in order: the first red run's
                        row.first_error = case.message or case.outcome
                        row.replay = replay_command(file, case.name, backends, spec, run.seed, case.worker, depth)
        problem = table.get((RUN_PROBLEM, ""))
        if problem is not None:
            problem.runs = len(mine)  # every run was a run of the process, not only the red ones
        tested = [row for key, row in table.items() if key != (RUN_PROBLEM, "")]
        summaries.append(
            FileSummary(
                file=file,
                runs=len(mine),
                tests=len(tested),
                ran=sum(1 for row in tested if row.runs),
                reds=sum(row.reds for row in table.values()),
                red_rows=sum(1 for row in table.values() if row.reds),
                seconds=round(sum(run.seconds for run in mine), 1),
                run_seconds=[round(run.seconds, 1) for run in mine],
            )
        )
        rows.extend(sorted(table.values(), key=lambda row: (row.test, row.row)))
    return summaries, rows


def _cell(text: str) -> str:
    """``text`` as a code span in a Markdown table cell."""
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    padded = f" {text} " if fence == "``" else text
    return f"{fence}{padded}{fence}".replace("|", "\\|")


def markdown(census: Census) -> str:
    """The census as Markdown: what was run, a summary line per suite file, every red row."""
    how = f"-n {census.workers}" if census.workers else "serial"
    selected = f", `-k {census.keyword}`" if census.keyword else ""
    selected += f", `--prism-depth={census.depth}`" if census.depth else ""
    lines = [
        f"Census: {len(census.files)} suite file(s) x {census.runs} run(s) under `--prism-load={census.load}` "
        f"(a fresh seed a run), backends `{census.backends}`, {how}{selected}.",
        "",
        "| suite | tests | ran | runs | reds | wall s (a run) | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    if census.kept:
        done = sum(summary.runs for summary in census.files)
        lines[1:1] = ["", f"Resumed: {census.kept} of these {done} run(s) were read back from their kept results."]
    for summary in census.files:
        each = summary.seconds / summary.runs if summary.runs else 0.0
        verdict = summary.verdict if summary.verdict != "red" else f"red ({summary.red_rows} row(s))"
        lines.append(
            f"| {summary.file} | {summary.tests} | {summary.ran} | {summary.runs} | {summary.reds} "
            f"| {summary.seconds:.1f} ({each:.1f}) | {verdict} |"
        )
    lines.append("")
    red = census.red_rows
    if red:
        lines += ["| suite | row | runs | reds | first error | replay |", "|---|---|---:|---:|---|---|"]
        for row in red:
            lines.append(
                f"| {row.file} | {_cell(row.name)} | {row.runs} | {row.reds} "
                f"| {_cell(row.first_error)} | {_cell(row.replay)} |"
            )
    else:
        lines.append("No row was red.")
    empty = [summary.file for summary in census.files if summary.verdict == "no test ran"]
    if empty:
        lines += ["", f"No test ran on `{census.backends}` in: {', '.join(empty)} (not green: nothing was tested)."]
    if census.interrupted:
        lines += ["", "Interrupted: the runs above are the ones that finished."]
    return "\n".join(lines) + "\n"


def as_json(census: Census) -> dict[str, Any]:
    data = asdict(census)
    data["green"] = census.green
    for summary, raw in zip(census.files, data["files"], strict=True):
        raw["verdict"] = summary.verdict
    return data


def child_environment() -> dict[str, str]:
    """This environment for a run, less what would make it think it is an xdist worker (a census
    started from inside a test run inherits its worker's variables)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT"))}
    env.pop("PYTEST_VERSION", None)
    return env


def run_stem(file: str, round_: int) -> str:
    """The name of one run's files in the work directory (XML, output, record): the file's path,
    not only its name, so ``prism_testkit/suites/test_x.py`` and ``tests/test_x.py`` do not share them."""
    return f"{module_name(file).lstrip('.')}-{round_}"


@dataclass(frozen=True)
class Settings:
    """What makes the runs of one census comparable: a resume must have the same."""

    files: tuple[str, ...]
    backends: str
    load: str  # the spec as :meth:`LoadSpec.argument` writes it, no seed ("calibrated" resolved)
    workers: int
    keyword: str | None
    depth: str | None = None  # absent from a manifest written before the option: the default depth


@dataclass(frozen=True)
class Manifest:
    """A --keep directory's census: its settings, and an id its run records carry."""

    id: str
    settings: Settings
    runs: int
    timeout: float | None = None


class ResumeError(Exception):
    """A --keep or --resume directory that cannot be used as asked: a usage error."""


def _write_json(path: Path, data: object) -> None:
    """``data`` as JSON at ``path``, whole or not at all (a kill never leaves half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def write_manifest(workdir: Path, manifest: Manifest) -> None:
    settings = asdict(manifest.settings)
    settings["files"] = list(manifest.settings.files)
    data = {"format": MANIFEST_FORMAT, "id": manifest.id, **settings}
    _write_json(workdir / MANIFEST, {**data, "runs": manifest.runs, "timeout": manifest.timeout})


def read_manifest(workdir: Path) -> Manifest | None:
    """The census kept in ``workdir``; None when it holds none; :class:`ResumeError` when its
    manifest cannot be read."""
    path = workdir / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data["format"] != MANIFEST_FORMAT:
            raise ResumeError(f"{path} is of manifest format {data['format']!r}, this census reads {MANIFEST_FORMAT}")
        files, timeout, keyword = data["files"], data["timeout"], data["keyword"]
        if not (isinstance(files, list) and all(isinstance(file, str) for file in files)):
            raise TypeError("files")
        settings = Settings(
            tuple(files),
            _typed(data["backends"], str),
            _typed(data["load"], str),
            _typed(data["workers"], int),
            None if keyword is None else _typed(keyword, str),
            None if (depth := data.get("depth")) is None else _typed(depth, str),
        )
        runs = _typed(data["runs"], int)
        return Manifest(_typed(data["id"], str), settings, runs, None if timeout is None else float(timeout))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResumeError(f"{path} is not a census manifest ({type(exc).__name__}: {exc})") from exc


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r} is not {kind.__name__}")
    return value


def settings_differences(kept: Settings, now: Settings) -> list[str]:
    """How ``now`` differs from the census kept: one phrase per option, empty when they agree.
    The suite files are compared as a set (their order changes no result)."""
    found = []
    added = [file for file in now.files if file not in kept.files]
    dropped = [file for file in kept.files if file not in now.files]
    if added or dropped:
        parts = ([f"{', '.join(added)} added"] if added else []) + (
            [f"{', '.join(dropped)} left out"] if dropped else []
        )
        found.append(f"suite files: {'; '.join(parts)}")
    options = (
        ("--backends", "backends"),
        ("--load", "load"),
        ("-n", "workers"),
        ("-k", "keyword"),
        ("--depth", "depth"),
    )
    for option, name in options:
        before, after = getattr(kept, name), getattr(now, name)
        if before != after:
            found.append(
                f"{option} {after if after is not None else '(none)'} "
                f"(kept: {before if before is not None else '(none)'})"
            )
    return found


def save_run(run: Run, workdir: Path, census_id: str) -> None:
    """The record that says a run is done and judged: what its XML does not say (its seed, wall
    time, exit code, problem) and the SHA-256 of that XML, so a later XML is never taken for it."""
    junit = workdir / f"{run_stem(run.file, run.round)}.xml"
    digest = hashlib.sha256(junit.read_bytes()).hexdigest() if junit.is_file() else None
    record = {"census": census_id, "file": run.file, "round": run.round, "seed": run.seed}
    record |= {"seconds": run.seconds, "returncode": run.returncode, "problem": run.problem, "junit_sha256": digest}
    _write_json(workdir / f"{run_stem(run.file, run.round)}.json", record)


def kept_run(workdir: Path, file: str, round_: int, census_id: str) -> Run | None:
    """The run of ``file`` in round ``round_`` as the census judged it, read back from its record
    and JUnit XML; None when it is not complete on disk (no record, a record of another census,
    a partial or foreign XML): that run is run again."""
    stem = run_stem(file, round_)
    try:
        record = json.loads((workdir / f"{stem}.json").read_text())
        if not isinstance(record, dict) or (record.get("census"), record.get("file"), record.get("round")) != (
            census_id,
            file,
            round_,
        ):
            return None
        seed, returncode = _typed(record["seed"], int), _typed(record["returncode"], int)
        seconds = record["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            return None
        problem, digest = record["problem"], record["junit_sha256"]
        if problem is not None:
            _typed(problem, str)
        if digest is None:  # pytest wrote no XML: the run is red by its problem, or it is not whole
            return Run(file, round_, seed, float(seconds), returncode, [], problem) if problem else None
        xml = (workdir / f"{stem}.xml").read_bytes()
        if hashlib.sha256(xml).hexdigest() != digest:
            return None
        cases = parse_junit(xml.decode(), file)
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError):
        return None
    return Run(file, round_, seed, float(seconds), returncode, cases, problem)


def kept_runs(workdir: Path, files: Sequence[str], runs: int, census_id: str) -> dict[tuple[str, int], Run]:
    """Every (file, round) of the census that is done on disk, with its run read back."""
    found = {}
    for round_ in range(1, runs + 1):
        for file in files:
            run = kept_run(workdir, file, round_, census_id)
            if run is not None:
                found[(file, round_)] = run
    return found


def run_file(
    file: str,
    round_: int,
    seed: int,
    spec: LoadSpec,
    backends: str,
    workdir: Path,
    keyword: str | None = None,
    workers: int = 0,
    timeout: float | None = None,
    depth: str | None = None,
) -> Run:
    """One pytest process over ``file``, its results read from its JUnit XML."""
    stem = run_stem(file, round_)
    junit, log = workdir / f"{stem}.xml", workdir / f"{stem}.log"
    junit.unlink(missing_ok=True)  # a run cut short before may have left one: never read it as this run's
    args = command_args(file, backends, spec.argument(seed), seed, keyword, workers, depth)
    argv = [sys.executable, "-m", "pytest", *args, "-p", "benchmarks.census", "-q", f"--junitxml={junit}"]
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=child_environment())
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            # Ctrl-C as a user would: pytest writes its XML and the harness stops its servers
            process.send_signal(signal.SIGINT)
            try:
                returncode = process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
            timed_out = True
        except BaseException:  # Ctrl-C: the run got it too (same process group); let it stop
            process.wait()
            raise
    seconds = time.monotonic() - started
    output = log.read_text(errors="replace")
    xml_found = junit.is_file()
    cases = parse_junit(junit.read_text(), file) if xml_found else []
    problem = run_problem(returncode, cases, xml_found, output)
    if timed_out:
        problem = f"timed out after {timeout:g} s; " + (problem or "the testcases that finished are counted")
    return Run(file, round_, seed, seconds, returncode, cases, problem)


def default_files() -> list[str]:
    return [str(path.relative_to(ROOT)) for path in sorted((ROOT / "prism_testkit" / "suites").glob("test_*.py"))]


def _as_given(path: str) -> str:
    """A suite file as pytest in the checkout names it: relative to the checkout when inside it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(ROOT))
    except ValueError:
        return str(resolved)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.census", description=__doc__.split("\n")[0])
    # the options a resume may leave out default to None here, then to the kept census's (see main)
    parser.add_argument(
        "files", nargs="*", metavar="SUITE_FILE", help="suite files (default: every prism_testkit/suites/test_*.py)"
    )
    parser.add_argument(
        "--changed-since",
        metavar="REV",
        help="also the test files a change since REV touches (benchmarks/touched.py): edited, or importing "
        "what it edits; each printed with why",
    )
    parser.add_argument("--runs", type=int, help=f"runs of each file (default {DEFAULT_RUNS})")
    parser.add_argument("--load", help=f"--prism-load, no seed (default {CALIBRATED_LOAD})")
    parser.add_argument("--backends", help=f"--prism-backend (default {DEFAULT_BACKENDS})")
    parser.add_argument("-n", "--workers", type=int, help="xdist workers a run (default 0: serial)")
    parser.add_argument("-k", dest="keyword", help="pytest's -k: only the tests it selects")
    parser.add_argument(
        "--depth",
        help="--prism-depth of every run: the depth that catches what the change claims (default: the suites')",
    )
    parser.add_argument("--seed", type=int, help="the first run's seed, then +1 a run (default: drawn)")
    parser.add_argument("--timeout", type=float, help="seconds a run may take before it is stopped (default: none)")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write every row, run and seed as JSON here")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep each run's JUnit XML, output and record in DIR (resumable)"
    )
    where.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="go on with the census kept in DIR: read its finished runs back, run the rest "
        "(options left out are the kept census's; others must match them)",
    )
    return parser


class RefusedError(Exception):
    """pytest refused a run's arguments (a usage error): every other run would be refused too."""


def _told(run: Run) -> str:
    counts = {outcome: sum(1 for case in run.cases if case.outcome == outcome) for outcome in _RANK}
    told = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count) or "no tests"
    return f"{told} in {run.seconds:.1f} s" + (f"; {run.problem}" if run.problem else "")


def _take(
    files: Sequence[str],
    args: argparse.Namespace,
    spec: LoadSpec,
    workdir: Path,
    census_id: str,
    kept: dict[tuple[str, int], Run],
) -> tuple[list[Run], bool]:
    """Every run, round by round (those in ``kept`` read back, not run); whether Ctrl-C stopped
    them (the finished ones are kept)."""
    draw = random.SystemRandom()
    runs: list[Run] = []
    try:
        for round_ in range(1, args.runs + 1):
            for index, file in enumerate(files):
                done = kept.get((file, round_))
                if done is not None:
                    print(f"census: run {round_}/{args.runs} {file} seed={done.seed} kept: {_told(done)}")
                    runs.append(done)
                    continue
                given = args.seed is not None
                seed = args.seed + (round_ - 1) * len(files) + index if given else draw.getrandbits(32)
                print(f"census: run {round_}/{args.runs} {file} seed={seed} ...", flush=True)
                (workdir / f"{run_stem(file, round_)}.json").unlink(missing_ok=True)  # a record not whole
                run = run_file(
                    file,
                    round_,
                    seed,
                    spec,
                    args.backends,
                    workdir,
                    args.keyword,
                    args.workers,
                    args.timeout,
                    args.depth,
                )
                if run.returncode == USAGE_ERROR and not run.cases:
                    raise RefusedError(run.problem)
                save_run(run, workdir, census_id)
                runs.append(run)
                print(f"census:   {_told(run)}")
    except KeyboardInterrupt:
        return runs, True
    return runs, False


def _settle(args: argparse.Namespace) -> Manifest | None:
    """The census kept in ``--resume DIR`` (None without), its options put where ``args`` left
    them out, and every other default filled in; :class:`ResumeError` for a directory that
    cannot be used as asked."""
    kept = None
    if args.resume is not None:
        kept = read_manifest(args.resume)
        if kept is None:
            raise ResumeError(f"--resume {args.resume}: no census is kept there (no {MANIFEST}; --keep DIR writes it)")
        settings = kept.settings
        args.load = settings.load if args.load is None else args.load
        args.backends = settings.backends if args.backends is None else args.backends
        args.workers = settings.workers if args.workers is None else args.workers
        args.keyword = settings.keyword if args.keyword is None else args.keyword
        args.depth = settings.depth if args.depth is None else args.depth
        args.runs = kept.runs if args.runs is None else args.runs
        args.timeout = kept.timeout if args.timeout is None else args.timeout
    elif args.keep is not None and (args.keep / MANIFEST).exists():
        raise ResumeError(
            f"--keep {args.keep} already holds a census ({MANIFEST}): --resume {args.keep} goes on with it, "
            "another directory starts a new one"
        )
    args.load = CALIBRATED_LOAD if args.load is None else args.load
    args.backends = DEFAULT_BACKENDS if args.backends is None else args.backends
    args.workers = 0 if args.workers is None else args.workers
    args.runs = DEFAULT_RUNS if args.runs is None else args.runs
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        kept = _settle(args)
    except ResumeError as exc:
        print(f"census: {exc}", file=sys.stderr)
        return 2
    try:
        spec = parse(args.load)
    except LoadSpecError as exc:
        print(f"census: --load: {exc}", file=sys.stderr)
        return 2
    if spec.seed is not None:
        print("census: --load takes no seed: each run draws its own (--seed fixes the first)", file=sys.stderr)
        return 2
    if args.runs < 1 or args.workers < 0:
        print("census: --runs must be at least 1 and -n at least 0", file=sys.stderr)
        return 2
    # a kept census's files are as given then: relative to the checkout, not to the cwd now
    files = [_as_given(path) for path in args.files]
    if args.changed_since is not None:
        try:
            changed = touched.changed_since(args.changed_since)
        except ValueError as exc:
            print(f"census: --changed-since: {exc}", file=sys.stderr)
            return 2
        found = touched.touched(changed, touched.sources_of_the_test_side(), touched.project_modules())
        for file, why in found.items():
            print(f"census: {file}: {why}")
        for mutant in touched.changed_mutants(changed):
            print(f"census: mutant {mutant} changed: its proof is tests/test_mutants.py -k {mutant}")
        files += [file for file in found if file not in files]
        if not files:
            print(f"census: the change since {args.changed_since} touches no test file: nothing to run")
            return 0
    files = files or (list(kept.settings.files) if kept else default_files())
    missing = [file for file in files if not (ROOT / file).is_file()]
    if missing:
        print(f"census: no such suite file: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings = Settings(tuple(files), args.backends, spec.argument(), args.workers, args.keyword, args.depth)
    if kept is not None:
        differences = settings_differences(kept.settings, settings)
        if differences:
            print(
                f"census: --resume {args.resume} holds a census of other settings: {'; '.join(differences)}. "
                "Leave those options out to go on with the kept ones, or --keep another directory for a new census",
                file=sys.stderr,
            )
            return 2
    saved = args.resume or args.keep
    workdir = saved or Path(tempfile.mkdtemp(prefix="prism-census-"))
    workdir.mkdir(parents=True, exist_ok=True)
    census_id = kept.id if kept is not None else uuid.uuid4().hex
    if saved is not None:
        write_manifest(workdir, Manifest(census_id, settings, args.runs, args.timeout))
    done = kept_runs(workdir, files, args.runs, census_id) if kept is not None else {}
    print(f"census: {len(files)} file(s) x {args.runs} run(s), load {args.load}, backends {args.backends}", flush=True)
    if kept is not None:
        print(f"census: resuming {workdir}: {len(done)} run(s) done, {len(files) * args.runs - len(done)} to run")
    try:
        runs, interrupted = _take(files, args, spec, workdir, census_id, done)
    except RefusedError as exc:
        print(f"census: pytest refused the arguments, stopping: {exc}", file=sys.stderr)
        if saved is not None and kept is None and not kept_runs(workdir, files, args.runs, census_id):
            (workdir / MANIFEST).unlink(missing_ok=True)  # a census of no run: --keep DIR may start it again
        return 2
    finally:
        if saved is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summaries, rows = aggregate(files, runs, args.backends, spec, args.depth)
    seeds = {file: [run.seed for run in runs if run.file == file] for file in files}
    census = Census(
        args.load,
        args.backends,
        args.runs,
        args.workers,
        args.keyword,
        summaries,
        rows,
        seeds,
        interrupted=interrupted,
        kept=len(done),
        depth=args.depth,
    )
    table = markdown(census)
    print()
    print(table, end="")
    if args.out:
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(as_json(census), indent=2) + "\n")
    if interrupted and saved is not None:
        print(f"census: --resume {saved} goes on from here", file=sys.stderr)
    return 0 if census.green else 1


# The plugin half: loaded into each run with ``-p benchmarks.census``.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, each testcase records its worker in the JUnit XML (see :func:`replay_command`)."""
    worker_input = getattr(config, "workerinput", None)
    if worker_input:
        for item in items:
            item.user_properties.append((WORKER_PROPERTY, str(worker_input["workerid"])))


if __name__ == "__main__":
    sys.exit(main())
