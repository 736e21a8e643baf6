"""The pytest plugin (entry point ``pytest11: prism``): its hooks and fixtures. Options,
selection, parametrisation, fixtures and async test execution live here; what the hooks set
up and report lives beside them:

- :mod:`.harness`: the run's stash keys and the harness a run sets up once it is used (the
  runtime over the selected backends, the results, the checks of URLs and binaries, a hunt's plan).
- :mod:`.load_mode`: ``--prism-load`` over a run (its seed, burners, jitter, header and summary).
- :mod:`.workers`: an xdist controller's workers, told of a signal that stops the run.
- :mod:`.reporting`: the terminal's progress and summary, and the report files.
- :mod:`.tracebacks`: interrupt tracebacks cut to what pytest prints.

Installed, the plugin is loaded by every pytest run in the environment, so it stays inert
until used: this package imports only pytest and light modules of ours, and the harness
(registries, backends' entry points, provisioning, Hypothesis profiles) is set up only when
the run asks for prism-testkit by option or ini setting, or collects a prism suite.

May import: every package of the core (it sits on top of them); never a backend or a pattern
(they arrive through the registry's entry points), nor the CLI.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
from collections.abc import Generator, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.options import AUTO, asked_for, auto_workers, ineffective, read_options, workers_option
from prism_testkit.options import addoption as _addoption
from prism_testkit.plugin import load_mode, workers
from prism_testkit.plugin.harness import (
    CALL_FAILED,
    DEALT_SCOPES,
    FITTING_SUITES,
    HARNESS,
    NOT_APPLICABLE,
    OPTIONS,
    SERVERS_TOLD,
    SESSION,
    harness,
    select_backends,
    warn,
    warn_unused_binaries,
)
from prism_testkit.plugin.reporting import Reporting
from prism_testkit.plugin.tracebacks import drop_unnumbered_frames
from prism_testkit.suite import MARKER, declaration_of

if TYPE_CHECKING:
    from pathlib import Path

    from prism_testkit.errors import FaultUnavailable
    from prism_testkit.options import PrismOptions
    from prism_testkit.registry.combinations import Combination, NoCombination
    from prism_testkit.runtime import PrismRuntime
    from prism_testkit.runtime.env import PrismEnv


def pytest_addoption(parser: pytest.Parser) -> None:
    _addoption(parser)


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
    """How many exclusive backends (see :mod:`prism_testkit.registry.xdist_scheduler`) the run selects."""
    from prism_testkit.errors import RegistrationError
    from prism_testkit.registry.backends import build_registry, make_plugin_manager

    try:
        registry = build_registry(make_plugin_manager())
    except RegistrationError as exc:
        raise pytest.UsageError(str(exc)) from None
    return sum(1 for spec in select_backends(registry, read_options(config)) if spec.exclusive)


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
        warn(config, why)
    _check_depth(config, options)
    if options.replay is not None:
        _load_replay(config, options.replay)
    load_mode.resolve_load(config, options)
    config.pluginmanager.register(Reporting(config), "prism-reporting")
    _shard(config)
    if asked_for(config):
        # bad options and unprovisionable named backends fail now, not mid-run; a Ctrl-C from
        # here until collection begins is held and raised there (pytest prints no summary for
        # an interrupt in configure or session start)
        harness(config, starting=True)
        load_mode.start_burners(config)


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
        warn(config, "--prism-depth has no effect with --prism-hunt: a hunt draws rounds until its time is spent")


def _load_replay(config: pytest.Config, path: Path) -> None:
    """``--prism-replay``: the schedule, read now so a bad file is one usage error line."""
    from prism_testkit.hunting.replay import contradictions
    from prism_testkit.hunting.schedule import REPLAY, ScheduleError, read

    try:
        config.stash[REPLAY] = (read(path), path)
    except ScheduleError as exc:
        raise pytest.UsageError(f"--prism-replay: {exc}") from None
    if found := contradictions(config.stash[REPLAY][0], config.stash[OPTIONS]):
        raise pytest.UsageError(f"--prism-replay {path}: " + "; ".join(found) + ": leave the option out")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    load_mode.seed_worker(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: Any) -> None:
    workers.follow(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    workers.forget(node)
    load_mode.keep_worker_stats(node)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SESSION] = session
    load_mode.start_jitter(session)


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


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    load_mode.stop_jitter(session.config)  # the tests are over; a worker's stats go to the controller now
    found = session.config.stash.get(HARNESS, None)
    if found is not None:
        # From here on (last teardowns, the summary, stopping servers) a Ctrl-C is remembered,
        # not raised: raised in these hooks it would end pytest with a traceback, mid-cleanup.
        found.runtime.interrupts.deferring = True


def pytest_unconfigure(config: pytest.Config) -> None:
    load_mode.stop_load(config)  # before the runtime removes the work dir the I/O burners write in
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
    return [*load_mode.load_header(config), *found.backend_lines()]


# --- parametrisation and selection ---------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    decl = declaration_of(metafunc.definition)
    if decl is None or "prism_combination" not in metafunc.fixturenames:
        return
    from prism_testkit.registry.combinations import NoCombination, expand
    from prism_testkit.registry.twins import expand_with_twins, runs_everywhere

    config = metafunc.config
    found = harness(config)
    options = config.stash[OPTIONS]
    combos: list[Combination] | NoCombination
    if options.covers_by_twins and not runs_everywhere(decl.name, metafunc.definition.originalname):
        combos = expand_with_twins(decl.name, decl.slots, found.runtime.available, options.expansion)
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
    """With ``-n`` (xdist's ``load``), every row of an exclusive backend goes to one worker, and
    the tests are dealt heaviest first by an earlier run's durations
    (:mod:`prism_testkit.registry.xdist_scheduler`)."""
    if config.getoption("dist", None) != "load" or config.stash.get(HARNESS, None) is None:
        return None
    from prism_testkit.plugin.reporting import recorded_durations

    runtime = harness(config).runtime
    exclusive = {spec.name for spec in [*runtime.selected, *runtime.extra] if spec.exclusive}
    recorded = recorded_durations(config)
    if not exclusive and not recorded:
        return None
    from prism_testkit.registry.xdist_scheduler import make_scheduler

    def publish(scopes: Mapping[str, str]) -> None:
        config.stash[DEALT_SCOPES] = scopes

    return make_scheduler(config, log, [spec.name for spec in runtime.registry], exclusive, recorded, publish)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(HARNESS, None) is None:
        return  # no prism suite was collected and none was asked for
    from prism_testkit.registry.combinations import Combination, NoCombination
    from prism_testkit.report.html_extras import report_html_property
    from prism_testkit.report.results import item_properties, junit_properties

    wanted = config.stash[OPTIONS].patterns
    report_html = report_html_property(config, config.stash[OPTIONS].report_html)
    runtime = harness(config).runtime
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
        # By declared capabilities (known without a server): the matrix marks an unavailable
        # backend only in the rows of the suites it would have run
        fits = [
            name
            for name in runtime.unavailable
            if any(slot.fits(runtime.registry[name]) for slot in decl.slots.values())
        ]
        if isinstance(combo, NoCombination):
            item.user_properties.append(item_properties(decl.name, {}, combo.reason, unavailable_fit=fits))
            item.user_properties.extend(junit_properties(decl.name, {}))
        elif isinstance(combo, Combination):
            covered_by = dict(combo.covered_by)
            item.user_properties.append(
                item_properties(decl.name, combo.slots, None, combo.namespace, covered_by, unavailable_fit=fits)
            )
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
    warn_unused_binaries(config, items)


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
    from prism_testkit.pattern_sdk.metrics import final_metrics, recording
    from prism_testkit.registry.combinations import NoCombination
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
    clusters = [b for b in backends if prism_runtime.endpoint(b).cluster is not None]
    if clusters:
        _rebuild_damaged(request.node, env)
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
            if clusters:
                _note_damage(request, env, clusters)
            _clean_up(request, prism_runtime, env, backends)


def _rebuild_damaged(node: pytest.Item, env: PrismEnv) -> None:
    """A cluster an earlier test left damaged is rebuilt before this one runs on it (see
    prism_testkit.stateful.health); what was rebuilt goes to the report under this test."""
    from prism_testkit.stateful.health import PROPERTY, InheritedDamage, as_properties, ensure_healthy

    try:
        rebuilt = ensure_healthy(env, node.nodeid)
    except InheritedDamage as exc:
        pytest.fail(str(exc), pytrace=False)
    if rebuilt:
        node.user_properties.append((PROPERTY, as_properties(rebuilt)))


def _note_damage(request: pytest.FixtureRequest, env: PrismEnv, clusters: list[str]) -> None:
    """What a test leaves its clusters with: acknowledged writes :mod:`prism_testkit.findings`
    judged lost (a reproduced finding, a new loss) are damage, rebuilt before the cluster serves
    again; a failed test's clusters must prove their copies converge before they do."""
    from prism_testkit.findings import PROPERTY as JUDGED
    from prism_testkit.stateful.health import note_used

    runtime = env.runtime
    note_used(env, request.node.nodeid)
    for key, value in request.node.user_properties:
        if not (key == JUDGED and isinstance(value, dict) and value.get("backend") in clusters):
            continue
        # acknowledged writes gone (a tolerated window's loss is left to the convergence check;
        # a harm worded by ``counts``, such as unanswered deletes, leaves no data behind)
        if value.get("lost") and value.get("verdict") in ("known", "lost") and not value.get("counts"):
            named = f" ({value['finding']})" if value.get("finding") else ""
            why = f"{value['scenario']!r} lost {value['lost']} of {value['acknowledged']} acknowledged{named}"
            runtime.mark_damaged(value["backend"], request.node.nodeid, why)
    if request.node.stash.get(CALL_FAILED, False):
        runtime.suspect.update(clusters)


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
    options = item.config.stash.get(OPTIONS, None)
    if options is not None and (options.report is not None or options.report_html is not None):
        # only for a run that writes a report: identity imports Hypothesis, which a plain run does not
        from prism_testkit.hunting.identity import identity_of
        from prism_testkit.report.results import IDENTITY

        setattr(report, IDENTITY, identity_of(item))
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
    the active profile (a stateful run's, :func:`prism_testkit.stateful.runner.active_settings`).
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
    machine itself, :class:`~prism_testkit.stateful.runner.StatefulRun`); a ``@seed`` it was given wins."""
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
