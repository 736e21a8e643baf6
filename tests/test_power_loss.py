"""Power loss end to end: embedded writers killed then power-cut, the runtime's opt-in lazy
instances, tolerated loss of a backend that does not claim power-loss durability, and no mount
left behind on any exit path."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prism_testkit import capabilities
from prism_testkit.backends.localfs import open_localfs
from prism_testkit.backends.sqlite import open_sqlite
from prism_testkit.driver import Driver
from prism_testkit.errors import NotSupported, ProvisioningError
from prism_testkit.faults import power_loss
from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.faults.power_loss import SUITE_FAULTS
from prism_testkit.isolation import NamespaceFactory
from prism_testkit.patience import poll_until
from prism_testkit.provision.base import Endpoint, ProvisionContext, ServerControl, Via
from prism_testkit.provision.cluster import FailoverCluster
from prism_testkit.provision.lazymount import LazyMount, fuse_unavailable_reason
from prism_testkit.provision.mounts import is_mounted
from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.runtime import PrismRuntime
from prism_testkit.stateful.history import History
from prism_testkit.stateful.nemesis import FaultTarget, Nemesis

from .test_embedded_crash import run_writer_and_kill

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lazy_dir(tmp_path: Path) -> Iterator[tuple[Path, LazyMount]]:
    if (reason := fuse_unavailable_reason()) is not None:
        pytest.fail(f"FUSE is unavailable: {reason}")
    data = tmp_path / "data"
    data.mkdir()
    mount = LazyMount.over(data)
    try:
        yield data, mount
    finally:
        mount.unmount()


@pytest.mark.parametrize("backend", ["sqlite", "localfs"])
def test_an_embedded_writer_killed_by_a_power_cut_keeps_every_acknowledged_write(
    lazy_dir: tuple[Path, LazyMount], backend: str
) -> None:
    data, mount = lazy_dir
    last = run_writer_and_kill(backend, data, at_least=50)
    mount.power_cut()

    async def verify() -> None:
        if backend == "sqlite":
            driver: Driver = await open_sqlite(data)
            kept = [await driver.keyvalue().get(f"k{i}") == str(i).encode() for i in range(last + 1)]
        else:
            driver = open_localfs(data)
            kept = [await driver.objects().get("b", f"o{i}") == str(i).encode() * 100 for i in range(last + 1)]
        await driver.close()
        assert all(kept), f"lost {kept.count(False)} of {last + 1} acknowledged writes"

    asyncio.run(verify())


def test_an_embedded_writer_without_fsync_loses_acknowledged_writes(lazy_dir: tuple[Path, LazyMount]) -> None:
    """The other way round: the same cut must take what was never synced, or proves nothing."""
    data, mount = lazy_dir
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA synchronous=OFF')\n"
        "c.execute('CREATE TABLE t (i INTEGER)')\n"
        "for i in range(100): c.execute('INSERT INTO t VALUES (?)', (i,))\n"
        "print('acknowledged', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code, str(data / "db")], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acknowledged"
        os.kill(child.pid, signal.SIGKILL)
    assert mount.power_cut()["unsynced_bytes"] > 0
    with contextlib.closing(sqlite3.connect(data / "db")) as db:
        try:
            kept = db.execute("SELECT count(*) FROM t").fetchone()[0]
        except sqlite3.OperationalError:  # no such table: the CREATE was lost too
            kept = 0
    assert kept < 100


@pytest.fixture
def sqlite_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrismRuntime]:
    monkeypatch.setenv("PRISM_LAZYFS", "sqlite")
    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry["sqlite"], registry["memstore"]], {}, NamespaceFactory(worker="pl"))
    try:
        yield runtime
    finally:
        # sqlite is one embedded server: its endpoint holds one mount, never a cluster's
        mount = cast(
            LazyMount | None, runtime._endpoints["sqlite"].lazy_mount if "sqlite" in runtime._endpoints else None
        )
        runtime.close()
        assert mount is None or not is_mounted(mount.mountpoint)


def test_prism_lazyfs_puts_a_backends_own_instance_on_a_lazy_mount(sqlite_runtime: PrismRuntime) -> None:
    runtime = sqlite_runtime
    driver = runtime.driver("sqlite")
    runtime.run(driver.keyvalue().put("k", b"acknowledged"))
    assert runtime.endpoint("sqlite").lazy_mount is not None
    after = runtime.run(runtime.restart("sqlite", power_cut=True))
    assert runtime.run(after.keyvalue().get("k")) == b"acknowledged"
    assert runtime.endpoint("sqlite").lazy_mount.cuts  # type: ignore[union-attr]
    # the nemesis's storage fault reaches the mount, and the mount reports it back
    runtime.run(after.keyvalue().put("k2", b"acknowledged too"))
    after = runtime.run(runtime.restart("sqlite", power_cut=True, fault=StorageFault("torn-seq", seed=11)))
    assert runtime.run(after.keyvalue().get("k2")) == b"acknowledged too"
    assert runtime.endpoint("sqlite").lazy_mount.faults[-1]["kind"] == "torn-seq"  # type: ignore[union-attr]
    # a backend not named by PRISM_LAZYFS pays nothing and cannot be power-cut
    runtime.driver("memstore")
    assert runtime.endpoint("memstore").lazy_mount is None
    with pytest.raises(NotSupported, match="PRISM_LAZYFS=memstore"):
        runtime.run(runtime.restart("memstore", power_cut=True))


def test_power_loss_needs_crash_durability() -> None:
    with pytest.raises(ValueError, match="needs durable=True"):
        capabilities.BackendProperties(durable=False, survives_power_loss=True)


def test_fuse_unavailable_is_a_loud_provisioning_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert fuse_unavailable_reason() == "mfusepy is not installed (pip install 'prism-testkit[powerloss]')"
    with pytest.raises(ProvisioningError, match="mfusepy is not installed"):
        LazyMount.over(tmp_path)


def test_a_killed_daemon_leaves_no_mount_after_unmount(lazy_dir: tuple[Path, LazyMount]) -> None:
    data, mount = lazy_dir
    assert mount._daemon is not None
    os.kill(mount._daemon.pid, signal.SIGKILL)
    mount._daemon.wait()
    mount.unmount()
    assert not is_mounted(data)


def _wait_unmounted(path: Path) -> bool:
    """True once ``path`` is no mount point; past the "calm-op" bound (at least the 10 s it had): Unsettled."""
    poll_until(lambda: not is_mounted(path), what=f"{path} to be unmounted")
    return not is_mounted(path)


@pytest.mark.parametrize(
    "ending",
    [
        "raise KeyboardInterrupt",  # Ctrl-C: atexit unmounts
        "os.kill(os.getpid(), signal.SIGKILL)",  # killed: the daemon's parent-death signal unmounts
    ],
    ids=["ctrl-c", "sigkill"],
)
def test_a_test_process_that_dies_leaves_no_mount(tmp_path: Path, ending: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from prism_testkit.provision.lazymount import LazyMount\n"
        "LazyMount.over(Path(sys.argv[1]))\n"
        "print('mounted', flush=True)\n"
        f"{ending}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, env=env)
    assert "mounted" in result.stdout, result.stderr
    assert _wait_unmounted(data), f"{data} is still mounted"


def test_a_durable_backend_that_does_not_claim_power_loss_has_its_loss_tolerated(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-aof fsyncing every second, honestly declared not to survive power loss: the suite
    runs it, counts the loss as tolerated and passes."""
    pytester.makepyfile(
        honest_everysec="""
        import dataclasses
        from prism_testkit.backends import redis
        from prism_testkit.registry.hookspecs import hookimpl

        redis.AOF_FLAGS = tuple("everysec" if f == "always" else f for f in redis.AOF_FLAGS)
        _register = redis.prism_register_backends

        @hookimpl
        def prism_register_backends():
            honest = lambda s: s.properties.model_copy(update={"survives_power_loss": False})
            return [dataclasses.replace(s, properties=honest(s)) if s.name == "redis-aof" else s for s in _register()]

        redis.prism_register_backends = prism_register_backends
        """
    )
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{pytester.path}")
    result = pytester.runpytest_subprocess(
        "--pyargs",
        "prism_testkit.suites",
        "-p",
        "honest_everysec",
        "--prism-backend=redis-aof",
        "--prism-pattern=power_loss",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    # at 80 columns the findings follow their row on a line of their own
    # one test per storage fault, and the cut of established data (its loss: the fsync window);
    # the cuts right after acknowledgements skipped (it declares no power-loss promise to hold it to)
    row = f"power_loss*redis-aof*{len(SUITE_FAULTS) + 1}*0*1*0"
    result.stdout.fnmatch_lines([row, "    lost-in-fsync-window=* (tolerated) lost-in-power-cut=* (tolerated)"])


def test_the_kill_rule_cuts_power_only_where_a_lazy_mount_allows_it() -> None:
    nemesis = Nemesis.__new__(Nemesis)  # the choice only: no environment, no servers
    nemesis.paused = set()
    calls: list[tuple[str, str]] = []
    nemesis.kill_and_restart = lambda target: calls.append(("kill", target.slot))  # type: ignore[method-assign]
    nemesis.power_cut = lambda target, fault=None: calls.append(("cut", target.slot))  # type: ignore[method-assign]
    control = cast(ServerControl, object())
    lazy_server = FaultTarget("a", "redis-aof", control, True, True, None, lazy=True, survives_power_loss=True)
    lazy_embedded = FaultTarget("b", "sqlite", None, True, True, None, lazy=True, survives_power_loss=True)
    plain_server = FaultTarget("c", "postgres", control, True, True, None, survives_power_loss=True)
    lying_lazy = FaultTarget("d", "nats", None, False, True, None, lazy=True)  # not declared: never cut
    nemesis.targets = {t.slot: t for t in (lazy_server, lazy_embedded, plain_server, lying_lazy)}
    for which in range(4):
        nemesis.crash(which)
    assert calls == [("kill", "a"), ("cut", "b"), ("kill", "c"), ("cut", "a")]


def test_a_redis_that_refuses_a_torn_aof_tail_fails_the_suite_as_refused_to_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-aof with ``aof-load-truncated no``: a crash tears the AOF's last (unacknowledged)
    command and the server will not load it. The storage-fault rows must say so, as a failure of
    a backend that claims power loss; the clean cut, with nothing torn, still passes."""
    pytester.makepyfile(
        strict_aof="""
        from prism_testkit.backends import redis

        redis.AOF_FLAGS = (*redis.AOF_FLAGS, "--aof-load-truncated", "no")
        """
    )
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{pytester.path}")
    result = pytester.runpytest_subprocess(
        "--pyargs",
        "prism_testkit.suites",
        "-p",
        "strict_aof",
        "--prism-backend=redis-aof",
        "--prism-pattern=power_loss",
        "-k",
        "clean or (crash-before-fsync and not fsyncdir)",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*redis-aof declares survives_power_loss but did not come back after*crashed_at*"])
    assert "Unexpected end of file reading the append only file" in result.stdout.str()  # the server's own words


def test_a_power_cut_by_the_kill_rule_draws_its_storage_fault_and_a_kill_draws_nothing() -> None:
    """The rule's ``data`` is drawn from only when the power is cut: the clean cut or a torn
    kind (a crash point needs arming beforehand, so never here)."""
    control = cast(ServerControl, object())
    lazy = FaultTarget("a", "redis-aof", control, True, True, None, lazy=True, survives_power_loss=True)
    cuts: list[StorageFault | None] = []
    kills: list[str] = []

    @settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data(), st.integers(0, 3))
    def crash(data: st.DataObject, which: int) -> None:
        nemesis = Nemesis.__new__(Nemesis)
        nemesis.paused = set()
        nemesis.targets = {"a": lazy}
        nemesis.kill_and_restart = lambda target: kills.append(target.slot)  # type: ignore[method-assign]
        nemesis.power_cut = lambda target, fault=None: cuts.append(fault)  # type: ignore[method-assign]
        nemesis.crash(which, data)

    crash()
    assert kills, "the kill never happened"
    assert {f.kind for f in cuts if f is not None} == {"clean", "torn-op", "torn-seq"}


def test_an_instance_that_cannot_be_power_cut_is_refused_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every power-loss test of a backend asks for its instance: one whose provisioner mounts
    no data dir was started (a whole cluster, for the replicated ones) and stopped each time."""
    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry["memstore"]], {}, NamespaceFactory(worker="refused"))
    starts: list[ProvisionContext] = []

    def start_without_a_mount(ctx: ProvisionContext) -> Endpoint:
        starts.append(ctx)
        return Endpoint(url="memory://", via=Via.EMBEDDED)

    monkeypatch.setattr(registry["memstore"].provisioner, "start", start_without_a_mount)
    try:
        for _ in range(3):
            with pytest.raises(NotSupported, match="mounts no data dir"):
                runtime.run(runtime.power_loss_instance("memstore"))
    finally:
        runtime.close()
    assert len(starts) == 1


@pytest.mark.parametrize("name", ["postgres-ha", "redis-sentinel"])
def test_a_replicated_backend_refuses_a_lazy_data_dir_before_starting_a_node(name: str, tmp_path: Path) -> None:
    spec = build_registry(make_plugin_manager())[name]
    ctx = ProvisionContext(name, None, tmp_path, "gw0", "run", lazy_data_dir=True)
    with pytest.raises(NotSupported, match="not on a lazy filesystem"):
        spec.provisioner.start_private(ctx, Path("/nonexistent/server"))  # type: ignore[attr-defined]
    assert not any(tmp_path.iterdir()), "nothing may be made for an instance that is refused"


def test_a_failover_the_cluster_made_by_itself_during_a_fault_is_recorded() -> None:
    """Sentinel promotes a replica on its own once a primary is cut off for longer than it
    waits: the history must say so, or a reader sees writes move with no fault to explain it."""
    cluster = FailoverCluster.__new__(FailoverCluster)  # the primary only: no nodes
    cluster.primary = 0
    nemesis = Nemesis.__new__(Nemesis)
    nemesis.env = cast(Any, SimpleNamespace(faults=Counter()))
    nemesis.history = History()
    nemesis.run_on_loop = asyncio.run
    target = FaultTarget("a", "redis-sentinel", None, True, True, None, cluster=cluster)

    def cut_off_too_long() -> None:
        cluster.primary = 2

    nemesis.inject("partition-isolate-leader", target, cut_off_too_long)
    nemesis.inject("heal", target, lambda: None)  # no promotion: nothing more recorded
    assert [op.f for op in nemesis.history if op.process == "nemesis"] == [
        "partition-isolate-leader",
        "partition-isolate-leader",
        "failover-by-cluster",
        "failover-by-cluster",
        "heal",
        "heal",
    ]
    assert nemesis.env.faults == Counter({"partition-isolate-leader": 1, "failover-by-cluster": 1, "heal": 1})

    def harness_failover() -> None:
        cluster.primary = 1

    nemesis.inject("failover", target, harness_failover)  # the harness's own: recorded as itself
    assert nemesis.env.faults["failover-by-cluster"] == 1


def test_a_twin_a_power_cut_left_down_is_replaced_for_the_next_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 42: after one power-loss twin refused to start, every later power-loss test of the
    backend got the same dead twin and was reported "refused to start" with nothing written,
    though each passed alone. The next ask starts a fresh twin and unmounts the broken one."""
    if (reason := fuse_unavailable_reason()) is not None:
        pytest.fail(f"FUSE is unavailable: {reason}")
    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, [registry["sqlite"]], {}, NamespaceFactory(worker="twin"))
    try:
        first = runtime.run(runtime.power_loss_instance("sqlite"))
        first_mount = first.endpoint.lazy_mount
        assert isinstance(first_mount, LazyMount)  # one server's mount

        def refuses(*args: object, **kwargs: object) -> dict[str, int]:
            raise ProvisioningError("sqlite: database disk image is malformed")

        with monkeypatch.context() as patched:
            patched.setattr(power_loss, "power_cycle", refuses)
            with pytest.raises(ProvisioningError, match="malformed"):
                runtime.run(first.cut_power())
        assert first.broken is not None

        second = runtime.run(runtime.power_loss_instance("sqlite"))
        assert second is not first
        assert not is_mounted(first_mount.mountpoint), "the broken twin's mount was left behind"
        runtime.run(second.driver.keyvalue().put("k", b"acknowledged"))
        after = runtime.run(second.cut_power())
        assert runtime.run(after.keyvalue().get("k")) == b"acknowledged"
        assert runtime.run(runtime.power_loss_instance("sqlite")) is second, "a healthy twin is kept"
    finally:
        runtime.close()
