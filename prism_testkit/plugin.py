"""The pytest plugin (entry point ``pytest11: prism``): options, selection, parametrisation,
fixtures, async test execution and reporting.

Installed, the plugin is loaded by every pytest run in the environment, so it stays inert
until used: this module imports only pytest and light modules of ours, and the harness
(registries, backends' entry points, provisioning, Hypothesis profiles) is set up only when
the run asks for prism-testkit by option or ini setting, or collects a prism suite.
"""

from __future__ import annotations

import atexit
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.options import PrismOptions, addoption, asked_for, read_options
from prism_testkit.suite import MARKER, declaration_of

if TYPE_CHECKING:
    from prism_testkit.combinations import Combination, NoCombination
    from prism_testkit.config.runs import NamespacePlan
    from prism_testkit.env import PrismEnv
    from prism_testkit.registry import BackendRegistry, BackendSpec
    from prism_testkit.report import PrismResults
    from prism_testkit.runtime import PrismRuntime

OPTIONS = pytest.StashKey[PrismOptions]()
NOT_APPLICABLE = "not applicable to this selection"
HARNESS = pytest.StashKey["Harness"]()


@dataclass
class Harness:
    """Everything the plugin sets up once it is used in this run."""

    runtime: PrismRuntime
    plan: NamespacePlan
    results: PrismResults
    header_shown: bool = False  # False when a collected suite, not an option, set it up

    def backend_lines(self) -> list[str]:
        lines = [f"  {name}: {a.via.value} ({a.detail})" for name, a in self.runtime.availability.items()]
        return ["prism-testkit backends:", *lines]


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


def _select(registry: BackendRegistry, options: PrismOptions) -> list[BackendSpec]:
    from prism_testkit.errors import UnknownBackend

    if options.backends == "all":
        return list(registry)
    if options.backends == "embedded":
        return registry.embedded
    try:
        return registry.select(options.backends_named_explicitly)
    except UnknownBackend as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(declaration): a prism-testkit suite (set by prism_suite())")
    profile = config.getoption("hypothesis_profile", None)
    if isinstance(profile, str) and profile.startswith("prism-"):
        # before Hypothesis's own pytest_configure loads the profile by name
        from prism_testkit.hypothesis_profiles import register_profiles

        register_profiles()
    config.stash[OPTIONS] = read_options(config)
    config.pluginmanager.register(_Reporting(config), "prism-reporting")
    if asked_for(config):
        harness(config)  # bad options and unprovisionable named backends fail now, not mid-run


def harness(config: pytest.Config) -> Harness:
    """The harness of this run, set up on first use."""
    found = config.stash.get(HARNESS, None)
    if found is None:
        found = config.stash[HARNESS] = _set_up(config)
    return found


def _set_up(config: pytest.Config) -> Harness:
    from hypothesis import settings

    from prism_testkit.config.runs import load_plan
    from prism_testkit.errors import RegistrationError
    from prism_testkit.hypothesis_profiles import HUNT, default_profile, register_profiles
    from prism_testkit.isolation import NamespaceFactory
    from prism_testkit.pattern_registry import build_pattern_registry
    from prism_testkit.registry import build_registry, make_plugin_manager
    from prism_testkit.report import PrismResults
    from prism_testkit.runtime import PrismRuntime

    options = config.stash[OPTIONS]
    try:
        pm = make_plugin_manager()
        registry = build_registry(pm)
        patterns = build_pattern_registry(pm)
    except RegistrationError as exc:
        raise pytest.UsageError(str(exc)) from None
    plan = load_plan(options.namespace_files, registry, patterns)
    runtime = PrismRuntime(
        registry,
        _select(registry, options),
        options.urls,
        NamespaceFactory(),
        extra=[registry[name] for name in plan.backends],
    )
    atexit.register(runtime.close)  # also stops servers when pytest dies before unconfigure
    for name in dict.fromkeys([*options.backends_named_explicitly, *plan.backends]):
        availability = runtime.availability[name]
        if not availability.available:
            runtime.close()
            raise pytest.UsageError(
                f"backend {name!r} was asked for by name but cannot be provisioned: {availability.detail}"
            )
    results = PrismResults(
        unavailable=runtime.unavailable,
        available={name: a.detail for name, a in runtime.availability.items() if a.available},
    )
    register_profiles()
    if options.hunt is not None:
        _plan_hunt(config, options)
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile(HUNT if options.hunt is not None else default_profile())
    return Harness(runtime, plan, results)


def _plan_hunt(config: pytest.Config, options: PrismOptions) -> None:
    import sys
    from contextlib import nullcontext

    from prism_testkit.hunt import PLAN, HuntError, HuntPlan, ledger_path, open_database, parse_budget
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


def pytest_unconfigure(config: pytest.Config) -> None:
    found = config.stash.get(HARNESS, None)
    if found is not None:
        atexit.unregister(found.runtime.close)
        found.runtime.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    found = config.stash.get(HARNESS, None)
    if found is None:
        return []
    found.header_shown = True
    return found.backend_lines()


# --- parametrisation and selection ---------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    decl = declaration_of(metafunc.definition)
    if decl is None or "prism_combination" not in metafunc.fixturenames:
        return
    from prism_testkit.combinations import NoCombination, expand

    config = metafunc.config
    found = harness(config)
    combos = expand(decl.name, decl.slots, found.runtime.available, config.stash[OPTIONS].expansion)
    from_files = found.plan.combinations(decl.name, decl.slots)
    if from_files:  # besides the expansion; enough on their own to make the suite runnable
        combos = [*(combos if isinstance(combos, list) else []), *from_files]
    if isinstance(combos, NoCombination):
        metafunc.parametrize("prism_combination", [combos], ids=[combos.id])
    else:
        metafunc.parametrize("prism_combination", combos, ids=[c.id for c in combos])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(HARNESS, None) is None:
        return  # no prism suite was collected and none was asked for
    from prism_testkit.combinations import Combination, NoCombination
    from prism_testkit.report import item_properties, junit_properties

    wanted = config.stash[OPTIONS].patterns
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
            item.user_properties.append(item_properties(decl.name, combo.slots, None, combo.namespace))
            item.user_properties.extend(junit_properties(decl.name, combo.slots, combo.namespace))
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
    _count_hunted(config, items)


def _count_hunted(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hunt splits its budget over the stateful suites' runnable tests."""
    from prism_testkit.combinations import Combination
    from prism_testkit.hunt import HUNTED_PREFIX, PLAN

    plan = config.stash.get(PLAN, None)
    if plan is None:
        return
    for item in items:
        decl = declaration_of(item)
        combo = item.callspec.params.get("prism_combination") if hasattr(item, "callspec") else None
        if decl is not None and decl.name.startswith(HUNTED_PREFIX) and isinstance(combo, Combination):
            plan.hunted_ids.add(item.nodeid)
    plan.hunted_tests = len(plan.hunted_ids)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prism_runtime(pytestconfig: pytest.Config) -> PrismRuntime:
    """This process's harness runtime: event loop, provisioned backends, drivers."""
    return harness(pytestconfig).runtime


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
    from prism_testkit.combinations import NoCombination
    from prism_testkit.env import PrismEnv
    from prism_testkit.errors import ProvisioningError
    from prism_testkit.report import anomaly_properties

    if isinstance(prism_combination, NoCombination):
        if request.config.stash[OPTIONS].must_fit(prism_combination.suite):
            pytest.fail(prism_combination.reason, pytrace=False)
        pytest.skip(f"{NOT_APPLICABLE}: {prism_combination.reason}")
    try:
        for backend in prism_combination.slots.values():
            prism_runtime.driver(backend)
    except ProvisioningError as exc:
        pytest.fail(str(exc), pytrace=False)
    env = PrismEnv(prism_runtime, prism_combination, prism_runtime.namespaces.new())
    backends = list(dict.fromkeys(prism_combination.slots.values()))
    try:
        yield env
    finally:
        request.node.user_properties.append(anomaly_properties(env.anomalies, env.tolerated))
        prism_runtime.heal(backends)  # before purging: the purge needs the servers back
        prism_runtime.run(env.purge())


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


class _Reporting:
    """Registered per run: sees every test report (the controller's, under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hunts: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped or report.when == "teardown":
            from prism_testkit.hunt import PLAN

            plan = self.config.stash.get(PLAN, None)
            if plan is not None:
                plan.ended(report.nodeid)
        if report.when == "call":
            self.hunts.extend(
                value for key, value in report.user_properties if key == "prism_hunt" and isinstance(value, dict)
            )
        # Under xdist the controller collects nothing: the first report of a suite test (it
        # carries its suite in user_properties) is what tells it the harness is in use.
        if any(key == "prism" for key, _ in report.user_properties):
            harness(self.config).results.record(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        found = self.config.stash.get(HARNESS, None)
        if found is None or hasattr(self.config, "workerinput"):
            return
        if not found.header_shown:
            for line in found.backend_lines():
                terminalreporter.write_line(line)
        results = found.results
        results.summarize(terminalreporter)
        if self.hunts or self.config.stash[OPTIONS].hunt is not None:
            self._summarize_hunt(terminalreporter)
            results.hunts = self.hunts
        report_path = self.config.stash[OPTIONS].report
        if report_path is not None:
            results.write(report_path)
            terminalreporter.write_line(f"prism-testkit report written to {report_path}")

    def _summarize_hunt(self, terminalreporter: pytest.TerminalReporter) -> None:
        from prism_testkit.hunt import PLAN

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
                terminalreporter.write_line(f"FAILED {hunt.get('test')}: {hunt.get('failure')}")
                terminalreporter.write_line(f"  replay: {hunt.get('replay')}")
        where = plan.database_label if plan is not None and plan.database_label else "the local .hypothesis directory"
        terminalreporter.write_line(
            f"failures found are saved in {where}: a run with the same --prism-hunt-db replays them first"
        )
