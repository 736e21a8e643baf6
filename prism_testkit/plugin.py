"""The pytest plugin (entry point ``pytest11: prism``): options, selection, parametrisation,
fixtures, async test execution and reporting.

Installed, the plugin is loaded by every pytest run in the environment, so it stays inert
until used: this module imports only pytest and light modules of ours, and the harness
(registries, backends' entry points, provisioning, Hypothesis profiles) is set up only when
the run asks for prism-testkit by option or ini setting, or collects a prism suite.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import os
import shlex
import sys
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.options import (
    AUTO,
    PrismOptions,
    addoption,
    asked_for,
    auto_workers,
    ineffective,
    read_options,
    workers_option,
)
from prism_testkit.report.progress import Progress, named_dirs
from prism_testkit.report.progress import interval as progress_interval
from prism_testkit.report.progress import outside as outside_group
from prism_testkit.suite import MARKER, declaration_of

if TYPE_CHECKING:
    from pathlib import Path

    from prism_testkit.config.runs import NamespacePlan
    from prism_testkit.errors import FaultUnavailable
    from prism_testkit.faults.burners import Burners
    from prism_testkit.faults.jitter import Jitter
    from prism_testkit.hunting.depth import Depth
    from prism_testkit.registry.backends import BackendRegistry, BackendSpec
    from prism_testkit.registry.combinations import Combination, NoCombination
    from prism_testkit.report.results import PrismResults
    from prism_testkit.runtime import PrismRuntime
    from prism_testkit.runtime.env import PrismEnv
    from prism_testkit.runtime.interrupts import Interrupts

OPTIONS = pytest.StashKey[PrismOptions]()
NOT_APPLICABLE = "not applicable to this selection"
HARNESS = pytest.StashKey["Harness"]()
CALL_FAILED = pytest.StashKey[bool]()
SERVERS_TOLD = pytest.StashKey[set[str]]()
# suites with a runnable combination in at least one module (known once collection is done)
FITTING_SUITES = pytest.StashKey[set[str]]()
SESSION = pytest.StashKey[pytest.Session]()
# "--prism-binary NAME=... has no effect" lines, held until collection shows whether a test
# starts that server itself (it asks for the prism_binaries fixture)
UNUSED_BINARIES = pytest.StashKey[list[str]]()
BINARIES_FIXTURE = "prism_binaries"


@dataclass
class Harness:
    """Everything the plugin sets up once it is used in this run."""

    runtime: PrismRuntime
    plan: NamespacePlan
    results: PrismResults
    header_shown: bool = False  # False when a collected suite, not an option, set it up
    depth: Depth | None = None  # --prism-depth (None: a hunt, which draws rounds by time)

    def backend_lines(self) -> list[str]:
        registry = self.runtime.registry
        lines = [
            f"  {name}: {a.via.value} ({a.detail}){_example_cap(registry[name], self.depth)}"
            for name, a in self.runtime.availability.items()
        ]
        # Where server data and logs are while the run lasts (removed when it ends, also on Ctrl-C).
        work_dir = f"prism-testkit work dir: {self.runtime.workdir}"
        left_out = [s.name for s in self.runtime.registry.opt_in if s.name not in self.runtime.availability]
        if left_out:
            lines.append(f"  opt-in, not selected (name them in --prism-backend to run): {', '.join(left_out)}")
        return ["prism-testkit backends:", *lines, work_dir, *self.runtime.sweep_lines(), self.depth_line()]

    def depth_line(self) -> str:
        """The header's line on how many examples each stateful row draws."""
        if self.depth is None:
            return "prism-testkit depth: a hunt (--prism-hunt): stateful tests draw rounds until their time is spent"
        from prism_testkit.hunting.depth import deeper_command

        return (
            f"prism-testkit depth: {self.depth.examples} examples per stateful row ({self.depth.source()}; "
            f"deeper: {deeper_command(self.depth)})"
        )


def _example_cap(spec: BackendSpec, depth: Depth | None) -> str:
    """What a header line adds for a backend whose stateful tests draw fewer examples."""
    if spec.stateful_examples is None:
        return ""
    drawn = spec.stateful_examples if depth is None else depth.for_row(spec.stateful_examples)
    return f"; stateful tests over it draw {drawn} examples each (hunts: the profile's)"


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


def _select(registry: BackendRegistry, options: PrismOptions) -> list[BackendSpec]:
    from prism_testkit.errors import UnknownBackend

    if options.backends == "all":
        return registry.everyday
    if options.backends == "embedded":
        return registry.embedded
    try:
        return registry.select(options.backends_named_explicitly)
    except UnknownBackend as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(wrapper=True)  # before xdist's own hook turns -n into its worker list
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    if not hasattr(config, "workerinput"):  # a worker never starts workers of its own
        use_workers(config)
    return (yield)


def use_workers(config: pytest.Config) -> None:
    """``--prism-workers=N`` is pytest-xdist's ``-n N`` under the plugin's own name, so a user
    gets the cores without learning xdist; an explicit ``-n`` wins."""
    workers = workers_option(config)
    if workers is None or getattr(config.option, "numprocesses", None) is not None:
        return
    if not config.pluginmanager.hasplugin("xdist"):
        raise pytest.UsageError("--prism-workers needs pytest-xdist: pip install 'prism-testkit[xdist]'")
    config.option.numprocesses = auto_workers(_exclusive_selected(config)) if workers == AUTO else workers


def _exclusive_selected(config: pytest.Config) -> int:
    """How many exclusive backends (see :mod:`prism_testkit.registry.exclusive`) the run selects."""
    from prism_testkit.errors import RegistrationError
    from prism_testkit.registry.backends import build_registry, make_plugin_manager

    try:
        registry = build_registry(make_plugin_manager())
    except RegistrationError as exc:
        raise pytest.UsageError(str(exc)) from None
    return sum(1 for spec in _select(registry, read_options(config)) if spec.exclusive)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(declaration): a prism-testkit suite (set by prism_suite())")
    profile = config.getoption("hypothesis_profile", None)
    if isinstance(profile, str) and profile.startswith("prism-"):
        # before Hypothesis's own pytest_configure loads the profile by name
        from prism_testkit.hunting.profiles import register_profiles

        register_profiles()
    options = config.stash[OPTIONS] = read_options(config)
    for why in ineffective(options):
        _warn(config, why)
    _check_depth(config, options)
    if options.replay is not None:
        _load_replay(config, options.replay)
    _resolve_load(config, options)
    config.pluginmanager.register(_Reporting(config), "prism-reporting")
    _shard(config)
    if asked_for(config):
        # bad options and unprovisionable named backends fail now, not mid-run; a Ctrl-C from
        # here until collection begins is held and raised there (pytest prints no summary for
        # an interrupt in configure or session start)
        harness(config, starting=True)
        _start_burners(config)


def _shard(config: pytest.Config) -> None:
    """``--prism-shard=K/N``: this run keeps shard K of the selected tests (see
    :mod:`prism_testkit.registry.shards`)."""
    if not config.getoption("prism_shard", None) and not config.getoption("prism_shard_durations", None):
        return
    from prism_testkit.hunting.identity import identity_of
    from prism_testkit.registry.shards import configure

    def exclusive() -> set[str]:
        if config.stash.get(HARNESS, None) is None:
            return set()
        runtime = harness(config).runtime
        return {spec.name for spec in [*runtime.selected, *runtime.extra] if spec.exclusive}

    configure(config, identity_of, exclusive)


def _check_depth(config: pytest.Config, options: PrismOptions) -> None:
    """``--prism-depth``: a bad value is one usage error line now; beside a hunt, a warning."""
    from prism_testkit.hunting import depth

    try:
        given = depth.of(config)
    except depth.BadDepth as exc:
        raise pytest.UsageError(str(exc)) from None
    if given.given and options.hunt is not None:
        _warn(config, "--prism-depth has no effect with --prism-hunt: a hunt draws rounds until its time is spent")


def _load_replay(config: pytest.Config, path: Path) -> None:
    """``--prism-replay``: the schedule, read now so a bad file is one usage error line."""
    from prism_testkit.hunting.schedule import REPLAY, ScheduleError, read

    try:
        config.stash[REPLAY] = (read(path), path)
    except ScheduleError as exc:
        raise pytest.UsageError(f"--prism-replay: {exc}") from None


# --- load mode (--prism-load) -----------------------------------------------------------------

LOAD_SEED = "prism_load_seed"  # the run's load seed, in each xdist worker's workerinput
BURNERS: pytest.StashKey[Burners] = pytest.StashKey()
JITTER: pytest.StashKey[Jitter] = pytest.StashKey()
JITTER_STATS = pytest.StashKey[list[dict[str, Any]]]()  # the workers' jitter stats, on the controller


def _resolve_load(config: pytest.Config, options: PrismOptions) -> None:
    """The run's load, seeded: ``--prism-load``, else a replayed schedule's. A worker takes the
    controller's seed, so every process of the run derives its stalls from one seed."""
    spec = options.load
    if spec is None and options.replay is not None:
        from prism_testkit.hunting.schedule import REPLAY

        recorded = config.stash[REPLAY][0].load
        if recorded:
            from prism_testkit.faults.load import LoadSpecError, parse

            try:
                spec = parse(recorded)
            except LoadSpecError as exc:
                raise pytest.UsageError(f"--prism-replay: the schedule's load: {exc}") from None
    if spec is None:
        return
    from dataclasses import replace

    from prism_testkit.faults.load import ACTIVE, ActiveLoad

    worker_input = getattr(config, "workerinput", None)
    worker = str(worker_input["workerid"]) if worker_input else None
    if worker_input and worker_input.get(LOAD_SEED) is not None:
        spec = replace(spec, seed=int(worker_input[LOAD_SEED]))
    config.stash[ACTIVE] = ActiveLoad(spec.seeded(), worker)


def _start_burners(config: pytest.Config) -> None:
    """Once per run, by the controller (or the one process): the burners the load asks for."""
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.burns or hasattr(config, "workerinput"):
        return
    from prism_testkit.faults.burners import Burners

    runtime = harness(config).runtime
    burners = config.stash[BURNERS] = Burners.start(active.spec, runtime.workdir / "load")
    atexit.register(burners.stop)  # registered after runtime.close: runs before it removes their dir


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: each worker draws its stalls from the controller's seed."""
    from prism_testkit.faults.load import ACTIVE

    active = node.config.stash.get(ACTIVE, None)
    if active is not None:
        node.workerinput[LOAD_SEED] = active.spec.seed


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist: a worker's jitter stats, for the summary."""
    stats = getattr(node, "workeroutput", {}).get("prism_load")
    if isinstance(stats, dict):
        node.config.stash.setdefault(JITTER_STATS, []).append(stats)


def _start_jitter(session: pytest.Session) -> None:
    """In each process that starts servers (not an xdist controller): the jitter thread."""
    from prism_testkit.faults.load import ACTIVE

    config = session.config
    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.stalls or config.pluginmanager.has_plugin("dsession"):
        return
    from prism_testkit import patience
    from prism_testkit.faults.jitter import Jitter

    patience.account_for_stalls(active.spec.stall_max, active.spec.stall_every)
    config.stash[JITTER] = Jitter(active.jitter_seed, active.spec.stall_max, active.spec.stall_every).start()


def _stop_jitter(config: pytest.Config) -> None:
    jitter = config.stash.get(JITTER, None)
    if jitter is None:
        return
    jitter.stop()
    from prism_testkit import patience

    patience.account_for_stalls(0.0, 0.0)
    worker_output = getattr(config, "workeroutput", None)
    if worker_output is not None:
        worker_output["prism_load"] = jitter.stats.as_dict()


def _stop_load(config: pytest.Config) -> None:
    """Every exit path: the jitter ends (nothing left stopped), the burners are killed."""
    _stop_jitter(config)
    burners = config.stash.get(BURNERS, None)
    if burners is not None:
        atexit.unregister(burners.stop)
        burners.stop()


def _load_header(config: pytest.Config) -> list[str]:
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None:
        return []
    burners = config.stash.get(BURNERS, None)
    tool = burners.tool if burners is not None else "no burners"
    return [f"prism load: {active.spec.describe()} ({tool})"]


def _load_summary(config: pytest.Config) -> str | None:
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.stalls:
        return None
    from prism_testkit.faults.jitter import summary

    stats: list[dict[str, Any]] = [*config.stash.get(JITTER_STATS, [])]
    jitter = config.stash.get(JITTER, None)
    if jitter is not None:
        stats.append(jitter.stats.as_dict())
    if stats:
        return summary(stats)
    # xdist workers report their jitter as they finish: an interrupted run never hears from them
    return "prism load: no jitter statistics came back (none ran, or the run ended before its workers reported)"


def harness(config: pytest.Config, *, starting: bool = False) -> Harness:
    """The harness of this run, set up on first use (``starting``: from pytest_configure)."""
    found = config.stash.get(HARNESS, None)
    if found is None:
        found = config.stash[HARNESS] = _set_up(config, starting)
    return found


def _set_up(config: pytest.Config, starting: bool) -> Harness:
    """The harness, with the run's signal handling taken over first: a Ctrl-C during its imports
    and probes may be turned by CPython into another error, or dropped in a finalizer, and must
    still stop the run (see :func:`prism_testkit.errors.interrupt_within`)."""
    from prism_testkit.errors import interrupt_within
    from prism_testkit.runtime.interrupts import Interrupts, interrupt_for

    interrupts = Interrupts()
    interrupts.starting = starting
    interrupts.install()
    try:
        return _assemble(config, interrupts)
    except Exception as exc:
        interrupts.uninstall()
        interrupt = interrupt_within(exc)
        if interrupt is None and interrupts.received is not None:
            interrupt = interrupt_for(interrupts.received)
        if interrupt is not None:
            raise interrupt from None
        raise
    except BaseException:
        interrupts.uninstall()
        raise


def _assemble(config: pytest.Config, interrupts: Interrupts) -> Harness:
    from hypothesis import settings

    from prism_testkit.config.runs import load_plan
    from prism_testkit.errors import RegistrationError
    from prism_testkit.hunting.profiles import HUNT, default_profile, register_profiles
    from prism_testkit.isolation import NamespaceFactory
    from prism_testkit.registry.backends import build_registry, make_plugin_manager
    from prism_testkit.registry.patterns import build_pattern_registry
    from prism_testkit.report.results import PrismResults
    from prism_testkit.runtime import PrismRuntime

    options = config.stash[OPTIONS]
    try:
        pm = make_plugin_manager()
        registry = build_registry(pm)
        patterns = build_pattern_registry(pm)
    except RegistrationError as exc:
        raise pytest.UsageError(str(exc)) from None
    plan = load_plan(options.namespace_files, registry, patterns)
    selected = _select(registry, options)
    _check_urls(config, options, registry, {spec.name for spec in selected} | set(plan.backends))
    _check_binaries(config, options, registry, {spec.name for spec in selected} | set(plan.backends))
    runtime = PrismRuntime(
        registry,
        selected,
        options.urls,
        NamespaceFactory(),
        extra=[registry[name] for name in plan.backends],
        binaries=options.binaries,
        interrupts=interrupts,
    )
    atexit.register(runtime.close)  # also stops servers when pytest dies before unconfigure
    results = PrismResults(
        unavailable=runtime.unavailable,
        available={name: f"{a.via.value} ({a.detail})" for name, a in runtime.availability.items() if a.available},
    )
    named = dict.fromkeys([*options.backends_named_explicitly, *plan.backends])
    results.not_provisioned = {
        name: runtime.availability[name].detail for name in named if not runtime.availability[name].available
    }
    if results.not_provisioned:
        runtime.close()
        name, detail = next(iter(results.not_provisioned.items()))
        stopped = f"backend {name!r} was asked for by name but cannot be provisioned: {detail}"
        _report_the_stop(config, results, stopped)
        raise pytest.UsageError(stopped)
    register_profiles()
    if options.hunt is not None:
        _plan_hunt(config, options)
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile(HUNT if options.hunt is not None else default_profile())
    from prism_testkit.hunting import depth

    return Harness(runtime, plan, results, depth=None if options.hunt is not None else depth.of(config))


def _report_the_stop(config: pytest.Config, results: PrismResults, stopped: str) -> None:
    """A run stopped before any test still writes its ``--prism-report``: which backends it
    could not provision and why (``not_provisioned``, red in a merge), so a CI job's artifact
    says what happened instead of being missing."""
    path = config.stash[OPTIONS].report
    if path is None or hasattr(config, "workerinput"):
        return
    from prism_testkit.report.results import shard_of

    results.run = {**_run_facts(time.time(), 0.0), "stopped": stopped}
    results.shard = shard_of(config)
    results.write(path)
    sys.stderr.write(f"prism-testkit report written to {path}\n")


def _warn(config: pytest.Config, why: str) -> None:
    """A warning in the summary; under ``-W error`` a usage error, never an INTERNALERROR."""
    try:
        config.issue_config_time_warning(pytest.PytestConfigWarning(why), stacklevel=3)
    except pytest.PytestConfigWarning:
        raise pytest.UsageError(f"{why} (a warning, turned into an error by the warning filters)") from None


def _check_urls(config: pytest.Config, options: PrismOptions, registry: BackendRegistry, used: set[str]) -> None:
    """A URL for a backend nobody registered is a usage error, as ``--prism-backend`` makes it;
    one for a registered backend this run does not use is a warning (it changes nothing)."""
    from prism_testkit.errors import UnknownBackend

    unknown = [name for name in options.urls if name not in registry]
    if unknown:
        raise pytest.UsageError(f"--prism-url: {UnknownBackend(unknown, registry.names)}")
    for name in options.urls:
        if name not in used:
            why = f"--prism-url {name}=... has no effect: backend {name!r} is not selected (see --prism-backend)"
            _warn(config, why)


def _check_binaries(config: pytest.Config, options: PrismOptions, registry: BackendRegistry, used: set[str]) -> None:
    """``--prism-binary NAME=...`` must name a server some registered backend starts from a
    binary (a usage error otherwise); one that no selected backend starts is a warning."""
    served: dict[str, list[str]] = {}  # binary key -> the backends that start it
    for spec in registry:
        key = getattr(spec.provisioner, "binary_key", None)
        if key is not None:
            served.setdefault(key, []).append(spec.name)
    for name in options.binaries:
        if name not in served:
            known = ", ".join(sorted(served)) or "(none)"
            raise pytest.UsageError(
                f"--prism-binary {name}=...: no backend starts a server named {name!r}; known: {known}"
            )
        if not used & set(served[name]):
            backends = ", ".join(served[name])
            config.stash.setdefault(UNUSED_BINARIES, []).append(
                f"--prism-binary {name}=... has no effect: no selected backend starts it ({backends}) "
                f"and no collected test asks for the {BINARIES_FIXTURE} fixture"
            )


def _warn_unused_binaries(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The held warnings, unless a collected test starts servers itself from the chosen binaries.
    Not under xdist: its controller collects nothing, and a worker's usage error (``-W error``)
    crashes the run, so there an unused choice goes unremarked."""
    if hasattr(config, "workerinput"):
        return
    unused = config.stash.get(UNUSED_BINARIES, [])
    if unused and not any(BINARIES_FIXTURE in getattr(item, "fixturenames", ()) for item in items):
        for why in unused:
            _warn(config, why)


def _plan_hunt(config: pytest.Config, options: PrismOptions) -> None:
    import sys
    from contextlib import nullcontext

    from prism_testkit.hunting.hunt import PLAN, HuntError, HuntPlan, ledger_path, open_database, parse_budget
    from prism_testkit.redaction import redact

    def emit(line: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            if reporter is not None and not hasattr(config, "workerinput"):
                reporter.write_line(line)
            else:  # an xdist worker: its stderr is still the terminal's
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    try:
        budget = parse_budget(options.hunt or "")
        database = open_database(options.hunt_db) if options.hunt_db else None
    except HuntError as exc:
        raise pytest.UsageError(str(exc)) from None
    label = redact(options.hunt_db) if options.hunt_db else None
    # From xdist's own worker input, not the environment: a pytest run inside a worker (pytester)
    # inherits PYTEST_XDIST_WORKER without being one.
    worker_input = getattr(config, "workerinput", None)
    worker = str(worker_input["workerid"]) if worker_input else None
    workers = int(worker_input["workercount"]) if worker_input else 1
    ledger = ledger_path(str(worker_input["testrunuid"])) if worker_input else None
    config.stash[PLAN] = HuntPlan(budget, database, label, workers=workers, worker=worker, emit=emit, ledger=ledger)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SESSION] = session
    _start_jitter(session)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    found = session.config.stash.get(HARNESS, None)
    if found is not None:
        found.runtime.interrupts.release_start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    found = item.config.stash.get(HARNESS, None)
    if found is not None:
        # An interrupt that some test's code caught and dropped still ends the run here.
        found.runtime.interrupts.raise_received()


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    # Defined here, importing nothing: the interrupt may have come in the middle of an import
    # (asyncio's, say), and importing that module again now would fail on its half.
    drop_unnumbered_frames(excinfo.value)  # before the terminal reporter formats it


def drop_unnumbered_frames(error: BaseException) -> None:
    """Unlink the traceback entries of ``error`` (and the exceptions it chains) that have no line
    number. A signal handled at an instruction without one (Python 3.11 has them in generators and
    ``finally`` blocks) leaves such an entry, and pytest's report of the interrupt then fails on
    it with a TypeError: a crash, exit 1, where the user pressed Ctrl-C."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        entry = current.__traceback__
        while entry is not None and entry.tb_next is not None:
            if entry.tb_next.tb_lineno is None:
                entry.tb_next = entry.tb_next.tb_next
            else:
                entry = entry.tb_next
        pending += [current.__cause__, current.__context__]


def keep_only_where_it_struck(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Cut an interrupt's traceback to the entry pytest prints without ``--full-trace``. pytest
    formats every entry of it and of the exceptions it chains before printing that one line,
    parsing each entry's source file: half a second at idle and seconds on a loaded machine,
    between the Ctrl-C and the exit."""
    drop_unnumbered_frames(excinfo.value)
    entries = excinfo.traceback
    shown = next((i for i in range(len(entries) - 1, -1, -1) if not entries[i].ishidden(excinfo)), 0)
    excinfo.traceback = entries[shown:]
    excinfo.value.__cause__ = None
    excinfo.value.__suppress_context__ = True


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_jitter(session.config)  # the tests are over; a worker's stats go to the controller now
    found = session.config.stash.get(HARNESS, None)
    if found is not None:
        # From here on (last teardowns, the summary, stopping servers) a Ctrl-C is remembered,
        # not raised: raised in these hooks it would end pytest with a traceback, mid-cleanup.
        found.runtime.interrupts.deferring = True


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_load(config)  # before the runtime removes the work dir the I/O burners write in
    found = config.stash.get(HARNESS, None)
    if found is not None:
        atexit.unregister(found.runtime.close)
        try:
            found.runtime.close()
        finally:
            session = config.stash.get(SESSION, None)
            if found.runtime.interrupts.received is not None and session is not None:
                # Also for a signal that came while the run was ending: it was not a clean finish.
                session.exitstatus = pytest.ExitCode.INTERRUPTED


def pytest_report_header(config: pytest.Config) -> list[str]:
    found = config.stash.get(HARNESS, None)
    if found is None:
        return []
    found.header_shown = True
    return [*_load_header(config), *found.backend_lines()]


# --- parametrisation and selection ---------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    decl = declaration_of(metafunc.definition)
    if decl is None or "prism_combination" not in metafunc.fixturenames:
        return
    from prism_testkit.registry.combinations import NoCombination, expand
    from prism_testkit.registry.twins import cover, runs_everywhere

    config = metafunc.config
    found = harness(config)
    options = config.stash[OPTIONS]
    combos: list[Combination] | NoCombination
    if options.covers_by_twins and not runs_everywhere(decl.name, metafunc.definition.originalname):
        combos = cover(decl.name, decl.slots, found.runtime.available, options.expansion)
    else:
        combos = expand(decl.name, decl.slots, found.runtime.available, options.expansion)
    from_files = found.plan.combinations(decl.name, decl.slots)
    if from_files:  # besides the expansion; enough on their own to make the suite runnable
        combos = [*(combos if isinstance(combos, list) else []), *from_files]
    if isinstance(combos, NoCombination):
        metafunc.parametrize("prism_combination", [combos], ids=[combos.id])
    else:
        config.stash.setdefault(FITTING_SUITES, set()).add(decl.name)
        metafunc.parametrize("prism_combination", combos, ids=[c.id for c in combos])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n`` (xdist's ``load``), every row of an exclusive backend goes to one worker."""
    if config.getoption("dist", None) != "load" or config.stash.get(HARNESS, None) is None:
        return None
    runtime = harness(config).runtime
    exclusive = {spec.name for spec in [*runtime.selected, *runtime.extra] if spec.exclusive}
    if not exclusive:
        return None
    from prism_testkit.registry.exclusive import make_scheduler

    return make_scheduler(config, log, [spec.name for spec in runtime.registry], exclusive)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(HARNESS, None) is None:
        return  # no prism suite was collected and none was asked for
    from prism_testkit.registry.combinations import Combination, NoCombination
    from prism_testkit.report.html_extras import report_html_property
    from prism_testkit.report.results import item_properties, junit_properties

    wanted = config.stash[OPTIONS].patterns
    report_html = report_html_property(config, config.stash[OPTIONS].report_html)
    selected, deselected = [], []
    seen_suites: set[str] = set()
    for item in items:
        decl = declaration_of(item)
        if decl is None:
            selected.append(item)
            continue
        seen_suites.add(decl.name)
        if wanted is not None and decl.name not in wanted:
            deselected.append(item)
            continue
        combo = item.callspec.params.get("prism_combination") if hasattr(item, "callspec") else None
        if isinstance(combo, NoCombination):
            item.user_properties.append(item_properties(decl.name, {}, combo.reason))
            item.user_properties.extend(junit_properties(decl.name, {}))
        elif isinstance(combo, Combination):
            covered_by = dict(combo.covered_by)
            item.user_properties.append(item_properties(decl.name, combo.slots, None, combo.namespace, covered_by))
            item.user_properties.extend(junit_properties(decl.name, combo.slots, combo.namespace))
            if covered_by:
                from prism_testkit.registry.twins import reason

                item.add_marker(pytest.mark.skip(reason=reason(combo.covered_by)))
        if report_html is not None:
            item.user_properties.append(report_html)  # for --junitxml: the page this run writes
        selected.append(item)
    if wanted is not None:
        unknown = sorted(wanted - seen_suites)
        if unknown and seen_suites:
            raise pytest.UsageError(
                f"--prism-pattern names no collected suite: {', '.join(unknown)}; "
                f"collected suites: {', '.join(sorted(seen_suites))}"
            )
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    _keep_the_replayed_test(config, items)
    _warn_unused_binaries(config, items)


def _keep_the_replayed_test(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--prism-replay``: only the schedule's test runs; none collected is a usage error."""
    from prism_testkit.hunting.schedule import REPLAY

    replay = config.stash.get(REPLAY, None)
    if replay is None:
        return
    schedule, path = replay
    keep = [item for item in items if f"{item.path}::{item.name}" == schedule.test]
    if not keep:
        raise pytest.UsageError(
            f"--prism-replay {path}: its test {schedule.test} was not collected "
            f"(give its file, and --prism-backend={','.join(schedule.backends)})"
        )
    others = [item for item in items if item not in keep]
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    _count_hunted(session.config, session.items)  # what -k, shards and every plugin left selected


def _count_hunted(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hunt splits its budget over the selected tests of the stateful suites that run a
    machine, and keys their examples in a shared database by their identity."""
    from prism_testkit.hunting.hunt import HUNTED_PREFIX, PLAN, runs_a_machine
    from prism_testkit.hunting.identity import identity_of
    from prism_testkit.registry.combinations import Combination

    plan = config.stash.get(PLAN, None)
    if plan is None:
        return
    for item in items:
        decl = declaration_of(item)
        if decl is None:
            continue
        plan.identities[item.nodeid] = identity_of(item)
        combo = item.callspec.params.get("prism_combination") if hasattr(item, "callspec") else None
        if decl.name.startswith(HUNTED_PREFIX) and isinstance(combo, Combination) and runs_a_machine(item):
            plan.hunted_ids.add(item.nodeid)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prism_runtime(pytestconfig: pytest.Config) -> PrismRuntime:
    """This process's harness runtime: event loop, provisioned backends, drivers."""
    return harness(pytestconfig).runtime


@pytest.fixture(scope="session")
def prism_binaries(pytestconfig: pytest.Config) -> Mapping[str, Path]:
    """The server binaries chosen by ``--prism-binary NAME=PATH`` (NAME: a provisioner's
    ``binary_key``), for a test that starts a server itself: pass them as
    ``ProvisionContext.binaries`` and the choice reaches it as it reaches the suites."""
    return MappingProxyType(dict(pytestconfig.stash[OPTIONS].binaries))


@pytest.fixture
def prism_combination(request: pytest.FixtureRequest) -> Combination | NoCombination:
    """The backend in each slot of the current suite test (set by the plugin)."""
    if not hasattr(request, "param"):
        pytest.fail("prism_combination is only available in modules declared with prism_suite()", pytrace=False)
    combination: Combination | NoCombination = request.param
    return combination


@pytest.fixture
def prism_env(
    request: pytest.FixtureRequest, prism_runtime: PrismRuntime, prism_combination: Combination | NoCombination
) -> Iterator[PrismEnv]:
    """A combination of connected backends and a fresh namespace, purged after the test."""
    from prism_testkit.errors import ProvisioningError
    from prism_testkit.registry.combinations import NoCombination
    from prism_testkit.report.metrics import final_metrics, recording
    from prism_testkit.report.results import anomaly_properties, backend_failure_property, server_properties
    from prism_testkit.runtime.env import PrismEnv

    if isinstance(prism_combination, NoCombination):
        suite = prism_combination.suite
        if suite in request.config.stash.get(FITTING_SUITES, set()):
            # Two modules may declare one suite (test_cqrs.py, test_cqrs_cdc.py): the suite runs,
            # only this module's slots fit nothing selected, which is no gap to report.
            module = request.node.nodeid.split("::", 1)[0]
            pytest.skip(f"{NOT_APPLICABLE}: {prism_combination.reason} (in {module}; other modules of {suite!r} run)")
        if request.config.stash[OPTIONS].must_fit(suite):
            pytest.fail(prism_combination.reason, pytrace=False)
        pytest.skip(f"{NOT_APPLICABLE}: {prism_combination.reason}")
    for backend in dict.fromkeys(prism_combination.slots.values()):
        try:
            prism_runtime.driver(backend)
        except ProvisioningError as exc:
            reason = str(exc)
        else:
            continue
        # Named once in the summary (the property reaches the controller under xdist), and
        # failed outside the except block: pytest would print the chained errors of every test.
        request.node.user_properties.append(backend_failure_property(backend, reason))
        pytest.fail(reason, pytrace=False)
    told = request.config.stash.setdefault(SERVERS_TOLD, set())
    versions = {b: prism_runtime.driver(b).server_version for b in prism_combination.slots.values() if b not in told}
    if versions:  # once per backend and process: the controller gathers them under xdist
        told.update(versions)
        request.node.user_properties.append(server_properties(versions))
    env = PrismEnv(prism_runtime, prism_combination, prism_runtime.namespaces.new())
    backends = list(dict.fromkeys(prism_combination.slots.values()))
    writes_metrics = request.config.stash[OPTIONS].metrics is not None
    with contextlib.ExitStack() as stack:
        created = stack.enter_context(recording()) if writes_metrics else []
        try:
            yield env
        finally:
            request.node.user_properties.append(
                anomaly_properties(env.anomalies, env.tolerated, env.faults, env.verdicts)
            )
            if created:
                request.node.user_properties.append(("prism_metrics", final_metrics(env.ns.prefix, created)))
            _clean_up(request, prism_runtime, env, backends)


def _clean_up(request: pytest.FixtureRequest, prism_runtime: PrismRuntime, env: PrismEnv, backends: list[str]) -> None:
    if prism_runtime.interrupts.received is not None:
        # The run is stopping: purge what the cleanup budget allows; an error now would hide the interrupt.
        prism_runtime.heal(backends)
        with contextlib.suppress(Exception):
            prism_runtime.run(env.purge())
        return
    try:
        prism_runtime.heal(backends)  # before purging: the purge needs the servers back
        prism_runtime.run(env.purge())
    except Exception as exc:
        if not request.node.stash.get(CALL_FAILED, False):
            raise
        # A cleanup that fails after the test failed is most often that failure's echo: told
        # with the failure, it keeps the test listed once (not FAILED and ERROR) in the summary.
        request.node.add_report_section(
            "teardown", "prism-testkit", f"cleaning up after the failure failed too: {type(exc).__name__}: {exc}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if call.when == "setup" and report.skipped:
        _fold_not_applicable(report)
    if call.when == "call" and report.failed and declaration_of(item) is not None:
        item.stash[CALL_FAILED] = True  # read by prism_env's teardown
        from prism_testkit.report.html_extras import add_extras, pytest_html_active

        if pytest_html_active(item.config):
            add_extras(item.config, report)  # its timeline and verdict in pytest-html's row
    if call.when == "call" and any(key == "prism_hunt" for key, _ in report.user_properties):
        from prism_testkit.hunting.hunt import PLAN

        plan = item.config.stash.get(PLAN, None)
        for key, value in report.user_properties:
            if plan is not None and key == "prism_hunt" and isinstance(value, dict):
                plan.annotate(item.nodeid, value)  # its identity, and its database's replay
    return report


def _fold_not_applicable(report: pytest.TestReport) -> None:
    """Every test of a suite nothing selected fits is skipped with the suite's one reason; its
    skip is located at its module, not at each test, so ``-rs`` folds them into one line per
    module of the suite (pytest folds skips of one place and reason) instead of one per test."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3 and str(longrepr[2]).startswith(f"Skipped: {NOT_APPLICABLE}"):
        # no line: pytest's own skips from module-level marks fold with None (typed as int)
        report.longrepr = (longrepr[0], None, longrepr[2])  # type: ignore[assignment]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        if declaration_of(item) is not None and _derandomised(item):
            with _derandomised_search(item):
                return (yield)
        return (yield)
    except Exception as exc:
        from prism_testkit.errors import FaultUnavailable

        if declaration_of(item) is None or not isinstance(exc, FaultUnavailable):
            raise
        unavailable = exc
    _fault_unavailable(item, unavailable)  # outside the except block: one message, no chained traceback
    return None


def _derandomised(item: pytest.Item) -> bool:
    """Whether ``item`` (a suite test) searches derandomised: its own ``@given`` settings, else
    the active profile (a stateful run's, :func:`prism_testkit.jepsen.runner.active_settings`).
    A test that hunts does not (its rounds are seeded, whatever the profile)."""
    from hypothesis import settings

    from prism_testkit.hunting.hunt import PLAN

    plan = item.config.stash.get(PLAN, None)
    if plan is not None and item.nodeid in plan.hunted_ids:
        return False
    func = getattr(item, "obj", None)
    func = getattr(func, "__func__", func)
    own = getattr(func, "_hypothesis_internal_use_settings", None) if hasattr(func, "hypothesis") else None
    current = own if isinstance(own, settings) else settings.default
    return current is not None and bool(current.derandomize)


@contextlib.contextmanager
def _derandomised_search(item: pytest.Item) -> Iterator[None]:
    """A derandomised suite test's search is a function of its identity, its strategies and the
    seed (:mod:`prism_testkit.hunting.derandomised`): the project's literals are withheld from
    its draws and, for a ``@given`` test, its seed is its identity's (a stateful run seeds its
    machine itself, :class:`~prism_testkit.jepsen.runner.StatefulRun`); a ``@seed`` it was given wins."""
    from prism_testkit.hunting.derandomised import constants_withheld, seed_of
    from prism_testkit.hunting.identity import identity_of

    func = getattr(item, "obj", None)
    func = getattr(func, "__func__", func)
    to_seed = hasattr(func, "hypothesis") and getattr(func, "_hypothesis_internal_use_seed", None) is None
    with constants_withheld():
        if not to_seed:
            yield
            return
        func._hypothesis_internal_use_seed = seed_of(identity_of(item))  # type: ignore[union-attr]
        try:
            yield
        finally:
            func._hypothesis_internal_use_seed = None  # type: ignore[union-attr]


def _fault_unavailable(item: pytest.Item, exc: FaultUnavailable) -> None:
    """A fault this machine cannot inject is like a backend it cannot provision: listed under
    UNAVAILABLE faults with the reason and the hint, and skipped; failed where every suite must fit."""
    from prism_testkit.report.unavailable_faults import fault_property

    item.user_properties.append(fault_property(exc.fault, exc.reason, exc.hint))
    decl = declaration_of(item)
    if decl is not None and item.config.stash[OPTIONS].must_fit(decl.name):
        pytest.fail(str(exc), pytrace=False)
    pytest.skip(f"UNAVAILABLE fault: {exc}")


# --- async tests ---------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` suite tests (also under ``@given``) on this process's event loop."""
    if declaration_of(pyfuncitem) is None:
        return None
    runtime = harness(pyfuncitem.config).runtime
    func = pyfuncitem.obj
    hypothesis_attrs = getattr(func, "hypothesis", None)
    if hypothesis_attrs is not None:
        # Rebound on every call, never once: the test function object outlives this session
        # (a pytester run in the same process reuses the imported module), and its examples
        # must run on the loop of the runtime that owns this session's drivers.
        inner = getattr(hypothesis_attrs.inner_test, "__prism_coroutine__", hypothesis_attrs.inner_test)
        if inspect.iscoroutinefunction(inner):
            hypothesis_attrs.inner_test = _run_on(runtime, inner)
        return None  # Hypothesis's wrapper is synchronous: let pytest call it
    if inspect.iscoroutinefunction(func):
        argnames = pyfuncitem._fixtureinfo.argnames
        runtime.run(func(**{name: pyfuncitem.funcargs[name] for name in argnames}))
        return True
    return None


def _run_on(runtime: PrismRuntime, coro_fn: Any) -> Any:
    @functools.wraps(coro_fn)
    def run_example(*args: Any, **kwargs: Any) -> Any:
        return runtime.run(coro_fn(*args, **kwargs))

    run_example.__prism_coroutine__ = coro_fn  # type: ignore[attr-defined]
    return run_example


# --- reporting -----------------------------------------------------------------------------


def _run_facts(started: float, seconds: float) -> dict[str, Any]:
    """What a CI reader needs to place a report: which prism-testkit, when, how long."""
    from datetime import UTC, datetime
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("prism-testkit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = "unknown"
    return {
        "prism_testkit_version": installed,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(seconds, 3),
    }


class _Reporting:
    """Registered per run: sees every test report (the controller's, under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hunts: list[dict[str, Any]] = []
        self.replays: list[tuple[str, dict[str, Any]]] = []  # schedules written or replayed, per test
        self.simulations: dict[str, dict[str, Any]] = {}  # stateful test -> its prism_simulation property
        self.started = time.time()  # replaced at session start; configure may be long before
        self.clock = self.last_progress = time.monotonic()
        self.progress = Progress(
            config.rootpath, lambda: named_dirs(config.args, config.invocation_params.dir, config.option.pyargs)
        )
        # tests without a suite: counted here, since under xdist the harness is set up only
        # when the first suite test reports
        self.outside_suites: dict[str, list[str]] = {}
        self.outside_failures: dict[str, dict[str, Any]] = {}  # test -> its first failing phase
        from prism_testkit.report.results import shard_of

        self.shard = shard_of(config)  # a bad PRISM_SHARD is a usage error now, not at the end
        self.metrics: list[tuple[str, list[dict[str, Any]]]] = []  # (test, its patterns' final metrics)

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter formats the interrupt
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if not self.config.option.fulltrace:
            keep_only_where_it_struck(excinfo)

    def pytest_sessionstart(self) -> None:
        self.started, self.clock = time.time(), time.monotonic()
        self.last_progress = self.clock

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.progress.collected(
            decl.name if (decl := declaration_of(item)) is not None else outside_group(item.nodeid)
            for item in session.items
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.progress.collected_ids(ids)  # the controller collects nothing: the totals come from here

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped or report.when == "teardown":
            from prism_testkit.hunting.hunt import PLAN

            plan = self.config.stash.get(PLAN, None)
            if plan is not None:
                plan.ended(report.nodeid)
        if report.when == "teardown":
            self.metrics.extend(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key == "prism_metrics" and isinstance(value, list)
            )
        if report.when == "call":
            self.hunts.extend(
                value for key, value in report.user_properties if key == "prism_hunt" and isinstance(value, dict)
            )
            self.simulations.update(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key == "prism_simulation" and isinstance(value, dict)
            )
            self.replays.extend(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key in ("prism_schedule", "prism_replay") and isinstance(value, dict)
            )
        # Under xdist the controller collects nothing: the first report of a suite test (it
        # carries its suite in user_properties) is what tells it the harness is in use.
        if not any(key == "prism" for key, _ in report.user_properties):
            from prism_testkit.report.results import category, failure_entry, outside_test_id

            if not hasattr(self.config, "workerinput"):
                if (found := category(report)) is not None:
                    test = outside_test_id(report)
                    self.outside_suites.setdefault(test, []).append(found)
                    if report.failed and test not in self.outside_failures:
                        self.outside_failures[test] = failure_entry(report, test)
                self._progress(report, outside_group(report.nodeid))
        else:
            from prism_testkit.report.results import as_json_properties

            if not hasattr(self.config, "workerinput"):  # a worker sends its reports through execnet: plain types only
                as_json_properties(report)
                suite = next(
                    str(value["suite"])
                    for key, value in report.user_properties
                    if key == "prism" and isinstance(value, dict)
                )
                self._progress(report, suite)
            harness(self.config).results.record(report)

    def _progress(self, report: pytest.TestReport, group: str) -> None:
        """Now and then a line with the suites that moved, their totals and the time left
        (:mod:`prism_testkit.report.progress`); ``group``: the test's suite, or its module's
        group outside the suites."""
        self.progress.spend(group, report.duration)
        if report.when != "teardown":
            return
        self.progress.finished(group)
        now = time.monotonic()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() < -1:
            return
        every = progress_interval(os.environ.get("PRISM_PROGRESS_EVERY"), bool(reporter.isatty))
        if now - self.last_progress < every:
            return
        reporter.ensure_newline()
        # Under xdist the dots leave the line open without pytest knowing (ensure_newline
        # does not see them): end it by what its writer counted, or the line glues onto them.
        if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
            reporter.write("\n")
        reporter.write_line(self.progress.line(now - self.clock))
        self.last_progress = now

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        found = self.config.stash.get(HARNESS, None)
        if found is None or hasattr(self.config, "workerinput"):
            return
        if not found.header_shown:
            for line in found.backend_lines():
                terminalreporter.write_line(line)
        results = found.results
        results.run = _run_facts(self.started, time.monotonic() - self.clock)
        results.outside_suites = {test: "+".join(found) for test, found in self.outside_suites.items()}
        results.outside_failures, results.shard = dict(self.outside_failures), self.shard
        results.summarize(terminalreporter)
        if found.depth is not None and results.depths:
            self._summarize_depth(terminalreporter, found.depth)
        load = _load_summary(self.config)
        if load is not None:
            terminalreporter.write_line(load)
        results.simulations = dict(self.simulations)
        if self.config.stash[OPTIONS].simulate:
            self._summarize_simulation(terminalreporter)
        if self.hunts or self.config.stash[OPTIONS].hunt is not None:
            self._summarize_hunt(terminalreporter)
            results.hunts = self.hunts
        elif self.replays:
            self._summarize_replays(terminalreporter)
        report_path = self.config.stash[OPTIONS].report
        if report_path is not None:
            results.write(report_path)
            terminalreporter.write_line(f"prism-testkit report written to {report_path}")
        html_path = self.config.stash[OPTIONS].report_html
        if html_path is not None:
            from prism_testkit.report.html import write_html  # paid for only by a run that asks

            write_html(html_path, results.to_json())
            terminalreporter.write_line(f"prism-testkit HTML report written to {html_path}")
        metrics_path = self.config.stash[OPTIONS].metrics
        if metrics_path is not None:
            from prism_testkit.report.metrics import per_test_exposition

            partial = metrics_path.with_name(metrics_path.name + ".tmp")
            partial.write_text(per_test_exposition(self.metrics))
            partial.replace(metrics_path)  # a reader never sees half a file
            terminalreporter.write_line(f"prism-testkit metrics written to {metrics_path}")

    def _summarize_depth(self, terminalreporter: pytest.TerminalReporter, depth: Depth) -> None:
        """How deep the stateful rows searched, and the command that searches deeper."""
        from prism_testkit.hunting.depth import HUNT_HINT, deeper_command

        results = self.config.stash[HARNESS].results
        drawn = sorted(set(results.depths.values()))
        args = [arg for arg in self.config.invocation_params.args if not str(arg).startswith("--prism-depth")]
        again = shlex.join(["pytest", *map(str, args)])
        deeper, hunt = f"{again} {deeper_command(depth)}", f"{again} {HUNT_HINT}"
        results.depth = {"asked": depth.label(), "drawn": drawn, "deeper": deeper, "hunt": hunt}
        each = "/".join(map(str, drawn))
        terminalreporter.write_line(
            f"prism-testkit depth: {len(results.depths)} stateful tests drew {each} examples each "
            f"({depth.source()}); to search deeper: {deeper}"
        )
        if deeper_command(depth) != HUNT_HINT:
            terminalreporter.write_line(f"  or hunt for a time instead: {hunt}")

    def _summarize_simulation(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Under --prism-simulate, say which stateful tests ran on real time, and why."""
        simulated = [test for test, sim in self.simulations.items() if sim.get("simulated")]
        real = {test: sim.get("not_simulable") or [] for test, sim in self.simulations.items() if test not in simulated}
        terminalreporter.write_line(
            f"prism-testkit simulation: {len(simulated)} stateful tests on virtual time, {len(real)} on real time"
        )
        for test, backends in real.items():
            terminalreporter.write_line(f"  real time: {test} (not simulable: {', '.join(backends) or '?'})")

    def _summarize_replays(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Schedules written (and replayed once) by failing tests, or this run's replay."""
        terminalreporter.section("prism-testkit replay")
        for test, replay in self.replays:
            head = "reproduced" if replay.get("reproduced") else "did not reproduce"
            terminalreporter.write_line(f"{test}: {head}: {replay.get('verdict')}")
            terminalreporter.write_line(f"  schedule: {replay.get('file')}")
            for note in replay.get("notes") or []:
                terminalreporter.write_line(f"  {note}")

    def _summarize_hunt(self, terminalreporter: pytest.TerminalReporter) -> None:
        from prism_testkit.hunting.hunt import PLAN, failure_lines

        plan = self.config.stash.get(PLAN, None)
        total = {name: sum(h[name] for h in self.hunts) for name in ("rounds", "examples", "faults", "seconds")}
        failed = sum(1 for h in self.hunts if h["failed"])
        terminalreporter.section("prism-testkit hunt")
        terminalreporter.write_line(
            f"{len(self.hunts)} stateful tests hunted for {total['seconds']:.0f}s in all: {total['examples']} "
            f"examples in {total['rounds']} rounds, {total['faults']} faults injected, {failed} failing"
        )
        for hunt in self.hunts:
            if hunt["failed"]:
                for line in failure_lines(hunt):
                    terminalreporter.write_line(line)
        where = plan.database_label if plan is not None and plan.database_label else "the local .hypothesis directory"
        terminalreporter.write_line(
            f"failures found are saved in {where}: a run with the same --prism-hunt-db replays them first"
        )
