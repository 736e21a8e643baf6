"""Fixtures for the harness tests: sandboxes with third-party plugin distributions."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.driver import Driver
from prism_testkit.provision.base import Endpoint, ProvisionContext, Provisioner, ServerControl
from prism_testkit.provision.netns import namespaces_unavailable_reason
from prism_testkit.provision.workdirs import make_workdir
from prism_testkit.runtime import PrismRuntime
from tests._install_venv import installed_python
from tests._scenarios import Runner as ScenarioRunner
from tests._scenarios import scenario_runner

OUT_OF_TREE = Path(__file__).parent / "outoftree"


def install_distribution(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dist: str, modules: dict[str, str], entry_points: str
) -> None:
    """Make a distribution visible to importlib.metadata inside the sandbox: its modules and a
    dist-info folder with METADATA and entry_points.txt, on sys.path (and PYTHONPATH, for
    subprocess runs)."""
    site = pytester.path / "site"
    site.mkdir(exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    pytester.syspathinsert(site)
    monkeypatch.setenv("PYTHONPATH", str(site))
    importlib.invalidate_caches()


@pytest.fixture
def third_party(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install a plugin distribution whose ``prism_testkit`` entry points are ``plugins``
    (entry-point name -> module name), with module sources from ``modules``."""

    def install(dist: str, modules: dict[str, str], plugins: dict[str, str]) -> None:
        lines = "\n".join(f"{ep} = {module}" for ep, module in plugins.items())
        install_distribution(pytester, monkeypatch, dist, modules, f"[prism_testkit]\n{lines}\n")

    return install


@pytest.fixture
def bagstore(third_party: Callable[..., None]) -> None:
    """The out-of-tree key-value backend 'bagstore', installed as package prism-bagstore."""
    third_party("prism-bagstore", {"bagstore": (OUT_OF_TREE / "bagstore.py").read_text()}, {"bagstore": "bagstore"})


@pytest.fixture(scope="session")
def installed() -> Path:
    """The python of a cached venv holding a real, non-editable install of this checkout's
    prism-testkit, without extras (tests/_install_venv.py): built once, shared by xdist workers;
    a venv that cannot be built fails the tests that need it, never skips them."""
    return installed_python()


def context_for(name: str, where: Path, binaries: Mapping[str, Path]) -> ProvisionContext:
    """The context a test that starts backend ``name`` itself provisions it in: with the
    binaries of ``--prism-binary`` (the ``prism_binaries`` fixture), so the choice reaches it."""
    return ProvisionContext(name, None, where, "test", "test", binaries=binaries)


def provision_cluster(name: str, provisioner: Provisioner, where: Path, binaries: Mapping[str, Path]) -> Endpoint:
    """A cluster of backend ``name`` under ``where``, from the binaries ``--prism-binary`` chose
    (the ``prism_binaries`` fixture). The project's run needs namespaces: where they or the
    cluster cannot be made, the test fails with the reason, it never skips."""
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    ctx = context_for(name, where, binaries)
    availability = provisioner.probe(ctx)
    if not availability.available:
        pytest.fail(f"{name} cannot run here: {availability.detail}")
    return provisioner.start(ctx)


def cluster_in_a_temp_dir(prefix: str, provision: Callable[[Path], Endpoint]) -> Iterator[Endpoint]:
    """A module fixture's cluster: provisioned in a fresh work dir of the harness's own (marked
    as this process's, so should the process be SIGKILLed, the next run's sweep removes the
    network recorded in it), torn down and removed after."""
    base = make_workdir("test", prefix.strip("-"))
    try:
        made = provision(base)
        yield made
        assert made.teardown is not None
        made.teardown()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def runtime_of(backend: str, worker: str, binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    """A harness runtime over the one registration ``backend`` (for a fixture to yield from),
    its servers started from the binaries ``--prism-binary`` chose (the ``prism_binaries``
    fixture), closed afterwards: its servers, proxies and work dir with it."""
    from prism_testkit.isolation import NamespaceFactory
    from prism_testkit.registry.backends import build_registry, make_plugin_manager

    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry[backend]], {}, NamespaceFactory(worker=worker), binaries=binaries)
    try:
        yield runtime
    finally:
        runtime.close()


def started_by_harness(runtime: PrismRuntime, backend: str) -> tuple[Driver, ServerControl]:
    """The driver and process control of ``backend``, which the test needs provisioned by the
    harness itself (it pauses or stalls the server): a test fails, never skips, without it."""
    availability = runtime.availability[backend]
    if not availability.available:
        pytest.fail(f"{backend} cannot be provisioned here: {availability.detail}")
    control = runtime.control(backend)
    assert control is not None, f"the test needs a {backend} server the harness started"
    return runtime.driver(backend), control


def read_through_a_pause(runtime: PrismRuntime, backend: str, hold: float) -> tuple[bool, bytes | None]:
    """Write a key, read it once (the driver's connection is open now), pause the server the
    harness started, and read it again: whether that read was answered within ``hold`` seconds
    of the pause, and what it returned once the server was resumed."""
    driver, control = started_by_harness(runtime, backend)
    key = runtime.namespaces.new().name("held")

    async def scenario() -> tuple[bool, bytes | None]:
        kv = driver.keyvalue()
        await kv.put(key, b"before")
        assert await kv.get(key) == b"before"
        control.pause()
        try:
            read = asyncio.ensure_future(kv.get(key))
            done, _ = await asyncio.wait({read}, timeout=hold)
        finally:
            control.resume()
        return bool(done), await read

    return runtime.run(scenario())


@pytest.fixture(params=["memstore", "sqlite"])
def embedded_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scenario_subject() -> Callable[[Driver], object]:
    """What a unit-test module's scenarios run against, built over a fresh driver: the driver
    itself unless the module overrides this fixture (a pattern's stores over it, say)."""
    return lambda driver: driver


@pytest.fixture
def on_backend(
    embedded_backend: str, tmp_path: Path, scenario_subject: Callable[[Driver], object]
) -> ScenarioRunner[object]:
    """Runs an async scenario against ``scenario_subject`` over a new store of each embedded
    backend, closing the store afterwards whatever the scenario did."""
    from prism_testkit.backends.memstore import open_memstore
    from prism_testkit.backends.sqlite import open_sqlite

    @contextlib.asynccontextmanager
    async def open_subject() -> AsyncIterator[object]:
        driver: Driver = open_memstore() if embedded_backend == "memstore" else await open_sqlite(tmp_path)
        try:
            yield scenario_subject(driver)
        finally:
            await driver.close()

    return scenario_runner(open_subject)


# A test that measures a loss its server's documentation allows (its fault went past what the
# server promises to survive) records it under this property: a pass, never a silent one, since
# the run's summary lists each (and --junitxml keeps the property, under junit_family=xunit1).
BEYOND_FAULT_TOLERANCE = "loss_beyond_fault_tolerance"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == BEYOND_FAULT_TOLERANCE:
                    found.setdefault(report.nodeid, str(value))
    if found:
        terminalreporter.section("losses beyond the fault tolerance (allowed, not hidden)")
        for nodeid, what in found.items():
            terminalreporter.write_line(f"{nodeid}: {what}")
