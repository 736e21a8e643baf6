"""The harness a run sets up once it is used: the run's stash keys, the selected backends'
runtime, the results, the checks of ``--prism-url`` / ``--prism-binary`` and a hunt's plan."""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.options import PrismOptions

if TYPE_CHECKING:
    from prism_testkit.config.runs import NamespacePlan
    from prism_testkit.hunting.depth import Depth
    from prism_testkit.registry.backends import BackendRegistry, BackendSpec
    from prism_testkit.report.results import PrismResults
    from prism_testkit.runtime import PrismRuntime
    from prism_testkit.runtime.interrupts import Interrupts

OPTIONS = pytest.StashKey[PrismOptions]()
NOT_APPLICABLE = "not applicable to this selection"
HARNESS = pytest.StashKey["Harness"]()
CALL_FAILED = pytest.StashKey[bool]()
SERVERS_TOLD = pytest.StashKey[set[str]]()
# suites with a runnable combination in at least one module (known once collection is done)
FITTING_SUITES = pytest.StashKey[set[str]]()
SESSION = pytest.StashKey[pytest.Session]()
# node id -> the xdist scope it is dealt in (an exclusive backend's rows; absent: a scope of its
# own), set by the scheduler when it first deals: the time left runs a scope's rows one by one
DEALT_SCOPES = pytest.StashKey[Mapping[str, str]]()
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


def select_backends(registry: BackendRegistry, options: PrismOptions) -> list[BackendSpec]:
    from prism_testkit.errors import UnknownBackend

    if options.backends == "all":
        return registry.everyday
    if options.backends == "embedded":
        return registry.embedded
    try:
        return registry.select(options.backends_named_explicitly)
    except UnknownBackend as exc:
        raise pytest.UsageError(str(exc)) from None


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
    selected = select_backends(registry, options)
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

    results.run = {**run_facts(time.time(), 0.0), "stopped": stopped}
    results.fits = None  # no suite was collected: what an unavailable backend fits is not known
    results.shard = shard_of(config)
    results.write(path)
    sys.stderr.write(f"prism-testkit report written to {path}\n")


def warn(config: pytest.Config, why: str) -> None:
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
            warn(config, why)


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


def warn_unused_binaries(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The held warnings, unless a collected test starts servers itself from the chosen binaries.
    Not under xdist: its controller collects nothing, and a worker's usage error (``-W error``)
    crashes the run, so there an unused choice goes unremarked."""
    if hasattr(config, "workerinput"):
        return
    unused = config.stash.get(UNUSED_BINARIES, [])
    if unused and not any(BINARIES_FIXTURE in getattr(item, "fixturenames", ()) for item in items):
        for why in unused:
            warn(config, why)


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


def run_facts(started: float, seconds: float) -> dict[str, Any]:
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
