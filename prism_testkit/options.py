"""Command-line options and ini settings (every option has an ini twin).

It reads what the layers below it define (a URL's problems and ``--prism-binary`` from
``provision``, :class:`~prism_testkit.registry.slots.Expansion`, ``--prism-load`` from
``faults.load``, ``--prism-buggify`` from ``simulation``), so none of those imports it back;
``hunting`` and the plugin read it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from prism_testkit.errors import BadBinary
from prism_testkit.provision.base import url_problem
from prism_testkit.provision.binaries import binaries_of
from prism_testkit.registry.slots import Expansion as Expansion  # re-exported: options name it

if TYPE_CHECKING:
    from prism_testkit.faults.load import LoadSpec

# This module is imported by the plugin in every pytest run: it must stay light (pytest only).

DEFAULT_BACKENDS = "embedded"  # the backends that need no server
OPTION_NAMES = (
    "prism_backend",
    "prism_pattern",
    "prism_combinations",
    "prism_report",
    "prism_report_html",
    "prism_metrics",
    "prism_url",
    "prism_binary",
    "prism_namespace",
    "prism_require_fit",
    "prism_hunt",
    "prism_hunt_db",
    "prism_workers",
    "prism_simulate",
    "prism_buggify",
    "prism_schedules",
    "prism_replay",
    "prism_load",
    "prism_twins",
    "prism_depth",
)


# What each option takes, for the message when it is given empty.
_EXPECTED = {
    "prism_backend": "give 'all', 'embedded' or a comma list of backend names",
    "prism_pattern": "give a comma list of suite names",
    "prism_combinations": "give 'covering' or 'all'",
    "prism_report": "give the path of the JSON report to write",
    "prism_report_html": "give the path of the HTML report to write",
    "prism_metrics": "give the path of the metrics file to write",
    "prism_namespace": "give the path of a namespace file",
    "prism_hunt": "give a duration such as 10m or 2h",
    "prism_hunt_db": "give a directory or a redis:// URL",
    "prism_workers": "give a number of worker processes, or 'auto'",
    "prism_schedules": "give the directory to write schedule files to",
    "prism_replay": "give the path of a schedule file",
    "prism_buggify": "give all, none or a comma list of late, unknown-outcome, ack-at-deadline",
    "prism_twins": "give 'cover' or 'run'",
    "prism_load": "give a comma list of cpu:N, io:N, stall:DUR@EVERY and seed:N, e.g. cpu:2,stall:200ms@2s",
    "prism_timelines": "give failing, all or none",
    "prism_depth": "give a number of examples per stateful row, or quick, default or deep",
}
TIMELINES = ("failing", "all", "none")  # --prism-timelines
# Workers per core under ``--prism-workers=auto``: the suites wait on servers, timeouts and
# restarts more than they compute, so more workers than cores keep the cores busy (measured:
# benchmarks/README's run profiles). Each selected exclusive backend (a cluster, whose rows one
# worker runs while it mostly waits on elections and failovers) adds one worker on top.
WORKERS_PER_CORE = 2


class TwinRows(StrEnum):
    """What a replicated registration's rows that only repeat its single-node twin's do."""

    COVER = "cover"  # skipped as "covered by <twin>" where the twin runs them in this run
    RUN = "run"  # run on the replicated registration too


def asked_for(config: pytest.Config) -> bool:
    """Whether this run names prism-testkit at all (an option or an ini setting): only then does
    the plugin provision and report before it knows whether any suite was collected."""
    defaults = {
        "prism_backend": DEFAULT_BACKENDS,
        "prism_combinations": Expansion.COVERING.value,
        "prism_twins": TwinRows.COVER.value,
        "prism_require_fit": False,
        "prism_simulate": False,
    }
    for name in OPTION_NAMES:
        if config.getoption(name) not in (None, []):
            return True
        if config.getini(name) not in ("", None, [], defaults.get(name)):
            return True
    return False


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prism", "prism-testkit: pattern acceptance suites")

    def add(flag: str, ini: str, help: str, default: str | None = None, **kwargs: object) -> None:
        group.addoption(flag, dest=ini, default=None, help=help, **kwargs)
        parser.addini(ini, help=help, default=default)

    add(
        "--prism-backend",
        "prism_backend",
        "backends to run the suites on: 'all', 'embedded' (default) or a comma list of names",
        default=DEFAULT_BACKENDS,
    )
    add(
        "--prism-pattern",
        "prism_pattern",
        "run only these suites (comma list of suite names, e.g. claim_check,keyvalue)",
    )
    add(
        "--prism-combinations",
        "prism_combinations",
        "'covering' (default): every compatible backend in every slot at least once; 'all': cross product",
        default=Expansion.COVERING.value,
    )
    add(
        "--prism-twins",
        "prism_twins",
        "'cover' (default): a replicated backend (a cluster naming its single-node twin) runs only what "
        "replication can change (stateful fault suites, failover, restart, power loss, capabilities, one round "
        "trip per interface); its other rows are skipped as 'covered by <twin>' when the twin runs them; "
        "'run': run them too (as --prism-combinations=all does)",
        default=TwinRows.COVER.value,
    )
    add("--prism-report", "prism_report", "write a JSON report of suites x combinations to this path")
    add(
        "--prism-report-html",
        "prism_report_html",
        "write the report as one self-contained HTML page to this path (the compliance matrix, each row's tests, "
        "faults, anomalies and replay commands, what could not be provisioned, the findings; no network needed)",
    )
    add(
        "--prism-metrics",
        "prism_metrics",
        "write every pattern's final metrics, per test, to this path (Prometheus text format)",
    )

    def add_pairs(flag: str, ini: str, metavar: str, help: str) -> None:
        """A repeatable NAME=VALUE option, and its ini twin of such lines."""
        group.addoption(flag, dest=ini, action="append", default=None, metavar=metavar, help=help)
        parser.addini(ini, type="linelist", help=f"{metavar} lines, like {flag}")

    add_pairs(
        "--prism-url",
        "prism_url",
        "NAME=URL",
        "connect backend NAME to an existing server at URL (repeatable; or PRISM_<NAME>_URL)",
    )
    add_pairs(
        "--prism-binary",
        "prism_binary",
        "NAME=PATH",
        "start server NAME (redis, postgres, nats, kafka...) from this binary (repeatable; or PRISM_<NAME>_BINARY)",
    )
    group.addoption(
        "--prism-namespace",
        dest="prism_namespace",
        action="append",
        default=None,
        metavar="FILE",
        help="also run each pattern suite on the backends a namespace file names for it (repeatable)",
    )
    parser.addini("prism_namespace", type="paths", help="namespace files, like --prism-namespace")
    fit_help = (
        "a collected suite that no selected backend fits fails (default: it is listed as not applicable "
        "to this selection, unless --prism-pattern names it)"
    )
    group.addoption("--prism-require-fit", dest="prism_require_fit", action="store_true", default=None, help=fit_help)
    parser.addini("prism_require_fit", type="bool", help=fit_help, default=False)
    simulate_help = (
        "run the stateful suites' examples on virtual time, in a seeded order, where every backend of the "
        "combination is simulable (in-process, no threads: memstore); other combinations run on real time"
    )
    group.addoption("--prism-simulate", dest="prism_simulate", action="store_true", default=None, help=simulate_help)
    parser.addini("prism_simulate", type="bool", help=simulate_help, default=False)
    add(
        "--prism-buggify",
        "prism_buggify",
        "under --prism-simulate, the in-contract misbehaviour a simulable backend may show, each a Hypothesis "
        "choice: 'all', 'none' (default) or a comma list of late, unknown-outcome, ack-at-deadline",
    )
    add(
        "--prism-depth",
        "prism_depth",
        "examples each stateful suite's row draws: a number, or 'quick' (1: every row runs once, a smoke test), "
        "'default' (12: the main job's depth; the kill-rate curve on seeded bugs that keeps it is in "
        "benchmarks/RESULTS.md) or 'deep' (48); a cluster's rows draw their declared count at the default, "
        "scaled in proportion; a hunt (--prism-hunt) searches by time instead",
    )
    add(
        "--prism-hunt",
        "prism_hunt",
        "hunt for this long (e.g. 10m, 2h) of test time per worker, not wall time: the selected tests of the "
        "stateful suites that run a machine share it, each running rounds of fresh examples until its share "
        "is spent, with the prism-hunt profile and progress lines",
    )
    add(
        "--prism-workers",
        "prism_workers",
        "run the tests in this many processes (pytest-xdist's -n), or 'auto' for two per core; -n, when given, wins",
    )
    group.addoption(
        "--prism-shard",
        dest="prism_shard",
        default=None,
        metavar="K/N",
        help="run only shard K (from 1) of N of the selected tests: every machine splits the same way, each test "
        "in exactly one shard, balanced by recorded durations (--prism-shard-durations) or by count; an "
        "exclusive backend's rows stay on one shard; the report names the shard for 'report merge'",
    )
    group.addoption(
        "--prism-shard-durations",
        dest="prism_shard_durations",
        default=None,
        metavar="PATH",
        help="recorded test durations to balance --prism-shard by, and to weigh the progress line's time left: an "
        "earlier --prism-report, or pytest-split's .test_durations",
    )
    add(
        "--prism-schedules",
        "prism_schedules",
        "write the schedule of each stateful test's failing example (its steps and faults, in order) to this "
        "directory and replay it once (hunts write them to .prism-schedules/ without it)",
    )
    add(
        "--prism-timelines",
        "prism_timelines",
        "the HTML timelines of stateful examples to write (lanes per process, fault bands, anomalies marked): "
        "'failing' (default: each failing test's shrunk example, named in its failure), 'all' (every example too) "
        "or 'none'; in prism-timelines/ beside the --prism-report file, else beside the --prism-report-html "
        "page, else under pytest's basetemp",
        default="failing",
    )
    add(
        "--prism-replay",
        "prism_replay",
        "run only the test of this schedule file, issuing its recorded steps again in order instead of drawing "
        "examples (what 'prism-testkit replay FILE' runs)",
    )
    add(
        "--prism-load",
        "prism_load",
        "run real load beside the suites: a comma list of cpu:N (CPU burners), io:N (write + fsync workers), "
        "stall:DUR@EVERY (on average every EVERY, stop one process the harness started for up to DUR) and "
        "seed:N (else drawn and printed), e.g. cpu:2,stall:200ms@2s",
    )
    add(
        "--prism-hunt-db",
        "prism_hunt_db",
        "Hypothesis example database shared between hunting machines: a directory or a redis:// URL",
    )


@dataclass(frozen=True)
class PrismOptions:
    backends: str
    patterns: frozenset[str] | None
    expansion: Expansion
    report: Path | None
    urls: dict[str, str]
    report_html: Path | None = None  # --prism-report-html: the report as one self-contained page
    metrics: Path | None = None  # where each test's patterns' final metrics are written
    namespace_files: tuple[Path, ...] = ()
    require_fit: bool = False  # every collected suite must have a runnable combination
    hunt: str | None = None  # a time budget for the stateful suites (parsed by prism_testkit.hunting.hunt)
    hunt_db: str | None = None  # the example database hunting machines share
    binaries: dict[str, Path] = field(default_factory=dict)  # server binaries chosen by --prism-binary
    workers: int | str | None = None  # --prism-workers: a count, AUTO, or None (as pytest decides)
    simulate: bool = False  # stateful examples of simulable combinations run on virtual time
    buggify: frozenset[str] = frozenset()  # the misbehaviour simulated examples may draw
    schedules: Path | None = None  # where failing stateful examples' schedules are written
    replay: Path | None = None  # a schedule whose test this run replays
    load: LoadSpec | None = None  # --prism-load: burners and jitter beside the suites (seed not yet drawn)
    twins: TwinRows = TwinRows.COVER  # --prism-twins

    @property
    def covers_by_twins(self) -> bool:
        """Whether a replicated backend's rows its twin runs are skipped as covered."""
        return self.twins is TwinRows.COVER and self.expansion is Expansion.COVERING

    def must_fit(self, suite: str) -> bool:
        """A suite without a runnable combination fails (else: listed as not applicable)."""
        return self.require_fit or (self.patterns is not None and suite in self.patterns)

    @property
    def backends_named_explicitly(self) -> list[str]:
        """Names the user listed (not 'all' / 'embedded'): these must be provisionable."""
        if self.backends in ("all", "embedded"):
            return []
        return split_list(self.backends)


def ineffective(options: PrismOptions) -> list[str]:
    """Options given that change nothing in this run, each with why (warned, not refused)."""
    found = []
    if options.hunt_db is not None and options.hunt is None:
        found.append("--prism-hunt-db has no effect without --prism-hunt")
    return found


# Schemes --prism-hunt-db can open; any other ``scheme://`` is refused rather than taken for a
# directory (``ftp://u:pw@x`` would otherwise become a folder named with the password).
HUNT_DB_SCHEMES = ("redis", "rediss", "unix")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def hunt_db_problem(where: str) -> str | None:
    """Why ``where`` cannot name a hunt's example database, or None. Never echoes the value."""
    found = _SCHEME.match(where)
    if found is not None and found.group("scheme").lower() not in HUNT_DB_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in HUNT_DB_SCHEMES)
        return f"unsupported scheme {found.group('scheme')!r}: give a directory or a {schemes} URL"
    if found is None:
        return path_problem(where)
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a file or directory name on this system, or None."""
    if "\0" in path:
        return "a path cannot contain a NUL character"
    try:
        os.fsencode(path)
    except UnicodeError:
        return "the path cannot be encoded for this file system"
    return None


def report_path_problem(path: str) -> str | None:
    """Why a report (or metrics) file cannot be written at ``path``, or None: found when the options are read,
    not after the run (when a traceback was all a user got, and a stray ``PATH.tmp``)."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    if path == "-":  # would be a file named '-'; standard output is pytest's own
        return "standard output carries pytest's own output: give a file name"
    target = Path(path)
    try:
        if target.is_dir() or path.endswith(os.sep):
            return "is a directory: give a file name"
        for parent in target.absolute().parents:  # the nearest folder that exists must take new files
            if parent.exists():
                if not parent.is_dir():
                    return f"{parent} is not a directory"
                if not os.access(parent, os.W_OK | os.X_OK):
                    return f"cannot create files in {parent}"
                break
    except OSError as exc:  # a name too long for the file system, a loop of symbolic links...
        return f"cannot be used: {exc.strerror or exc}"
    return None


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def read_options(config: pytest.Config) -> PrismOptions:
    def get(name: str) -> str | None:
        value = config.getoption(name)
        if isinstance(value, str) and not value.strip():
            # given but empty (``--prism-backend=``): never silently the default
            raise pytest.UsageError(f"--{name.replace('_', '-')} is empty: {_EXPECTED.get(name, 'give a value')}")
        if value is None:
            ini = config.getini(name)
            value = ini if ini not in ("", None, []) else None
        return None if value is None else str(value)

    backends = (get("prism_backend") or DEFAULT_BACKENDS).strip()
    patterns = get("prism_pattern")
    how = (get("prism_combinations") or Expansion.COVERING.value).strip()
    try:
        expansion = Expansion(how)
    except ValueError:
        raise pytest.UsageError(f"--prism-combinations must be 'covering' or 'all', not {how!r}") from None
    twins_given = (get("prism_twins") or TwinRows.COVER.value).strip()
    try:
        twins = TwinRows(twins_given)
    except ValueError:
        raise pytest.UsageError(f"--prism-twins must be 'cover' or 'run', not {twins_given!r}") from None
    report = get("prism_report")
    if report is not None and (problem := report_path_problem(report)) is not None:
        raise pytest.UsageError(f"--prism-report {report}: {problem}")
    report_html = get("prism_report_html")
    if report_html is not None and (problem := report_path_problem(report_html)) is not None:
        raise pytest.UsageError(f"--prism-report-html {report_html}: {problem}")
    metrics = get("prism_metrics")
    if metrics is not None and (problem := report_path_problem(metrics)) is not None:
        raise pytest.UsageError(f"--prism-metrics {metrics}: {problem}")
    urls: dict[str, str] = {}
    # an option wins over an ini line for one backend, as a command line overrides the ini file;
    # within either, a backend named twice is refused: which server it would connect to is unclear
    for lines in (config.getini("prism_url") or [], config.getoption("prism_url") or []):
        named: set[str] = set()
        for line in lines:
            name, sep, url = line.partition("=")
            if not sep or not name.strip() or not url.strip():
                # the value is not echoed: without '=' it is all URL, credentials included
                raise pytest.UsageError("--prism-url takes NAME=URL; a value was given without a name or a URL")
            if name.strip() in named:  # not echoed either: the URLs may carry credentials
                raise pytest.UsageError(f"--prism-url {name.strip()} is given twice: give each backend one URL")
            named.add(name.strip())
            problem = url_problem(url.strip())
            if problem:
                raise pytest.UsageError(f"--prism-url {name.strip()}: {problem}")
            urls[name.strip()] = url.strip()
    try:
        binaries = binaries_of(config.getini("prism_binary") or [], config.getoption("prism_binary") or [])
    except BadBinary as exc:
        raise pytest.UsageError(str(exc)) from None
    namespace_options = config.getoption("prism_namespace") or []
    for given in namespace_options:
        if not given.strip():
            raise pytest.UsageError(f"--prism-namespace is empty: {_EXPECTED['prism_namespace']}")
        if (problem := path_problem(given)) is not None:
            raise pytest.UsageError(f"--prism-namespace: {problem}")
    hunt_db = get("prism_hunt_db")
    if hunt_db is not None and (problem := hunt_db_problem(hunt_db)) is not None:
        raise pytest.UsageError(f"--prism-hunt-db: {problem}")
    paths: dict[str, Path | None] = {}
    for name in ("prism_schedules", "prism_replay"):
        given_path = get(name)
        if given_path is not None and (problem := path_problem(given_path)) is not None:
            raise pytest.UsageError(f"--{name.replace('_', '-')}: {problem}")
        paths[name] = Path(given_path) if given_path is not None else None
    timelines = get("prism_timelines")
    if timelines is not None and timelines.strip() not in TIMELINES:
        shown = timelines[:40] if timelines.isprintable() else "(not printable)"
        raise pytest.UsageError(f"--prism-timelines must be failing, all or none, not {shown!r}")
    from prism_testkit.simulation.buggify import parse as parse_buggify

    try:
        buggify = parse_buggify(get("prism_buggify"))
    except ValueError as exc:
        raise pytest.UsageError(f"--prism-buggify: {exc}") from None
    load = get("prism_load")
    if load is not None:
        from prism_testkit.faults.load import LoadSpecError
        from prism_testkit.faults.load import parse as parse_load

        try:
            load_spec: LoadSpec | None = parse_load(load)
        except LoadSpecError as exc:
            raise pytest.UsageError(f"--prism-load: {exc}") from None
    else:
        load_spec = None
    if not split_list(backends):
        raise pytest.UsageError("--prism-backend is empty: give 'all', 'embedded' or backend names")
    if patterns is not None and not split_list(patterns):
        raise pytest.UsageError(f"--prism-pattern names no suite: {_EXPECTED['prism_pattern']}")
    return PrismOptions(
        backends=backends,
        patterns=frozenset(split_list(patterns)) if patterns else None,
        expansion=expansion,
        report=Path(report) if report else None,
        report_html=Path(report_html) if report_html else None,
        metrics=Path(metrics) if metrics else None,
        urls=urls,
        namespace_files=tuple(Path(f) for f in (config.getini("prism_namespace") or []))
        + tuple(Path(f) for f in namespace_options),
        require_fit=bool(config.getoption("prism_require_fit") or config.getini("prism_require_fit")),
        hunt=get("prism_hunt"),
        hunt_db=hunt_db,
        binaries=binaries,
        workers=workers_option(config),
        simulate=bool(config.getoption("prism_simulate") or config.getini("prism_simulate")),
        buggify=buggify,
        schedules=paths["prism_schedules"],
        replay=paths["prism_replay"],
        load=load_spec,
        twins=twins,
    )


AUTO = "auto"


def workers_option(config: pytest.Config) -> int | str | None:
    """The number of worker processes ``--prism-workers`` (or its ini twin) asks for, or
    :data:`AUTO` (see :func:`auto_workers`)."""
    given = config.getoption("prism_workers")
    if given is None:
        given = config.getini("prism_workers") or None
    if given is None:
        return None
    text = str(given).strip()
    if not text:
        raise pytest.UsageError(f"--prism-workers is empty: {_EXPECTED['prism_workers']}")
    if text == AUTO:
        return AUTO
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 0 < int(text) <= 1024:
        shown = text[:40] if text.isprintable() else "(not printable)"
        raise pytest.UsageError(f"--prism-workers must be a number from 1 to 1024 or 'auto', not {shown!r}")
    return int(text)


def auto_workers(exclusive_backends: int) -> int:
    """``--prism-workers=auto``: two workers per core, and one more for each exclusive backend
    selected, since each such backend's rows hold a worker of their own for the run (otherwise
    six cluster scopes on four workers queue two behind the others, and every other test waits
    for the first of them to end)."""
    return WORKERS_PER_CORE * (os.cpu_count() or 1) + exclusive_backends
