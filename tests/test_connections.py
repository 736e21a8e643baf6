"""Connections are the harness's job: URLs checked at start-up, one connect attempt per
backend per run, errors redacted and free of the client library's frames."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import OUT_OF_TREE

SUITE = """
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("sandbox_kv", backend=Slot.needs("keyvalue"))

async def test_one(prism_env: PrismEnv) -> None:
    await prism_env["backend"].keyvalue().get(prism_env.ns.name("k"))

async def test_two(prism_env: PrismEnv) -> None:
    await prism_env["backend"].keyvalue().get(prism_env.ns.name("k"))

async def test_three(prism_env: PrismEnv) -> None:
    await prism_env["backend"].keyvalue().get(prism_env.ns.name("k"))
"""

# A backend whose server is "reached" by URL: {connect} decides what connecting does. Every
# attempt is counted in a file, so the test can see how often the harness tried.
TROUBLED = """
import asyncio, os
from prism_testkit import BackendProperties, BackendSpec, Endpoint, hookimpl
from prism_testkit.provision.servers import ServerProvisioner
from troubledriver import BagDriver


class TroubledDriver(BagDriver):
    @classmethod
    async def connect(cls, name, capabilities, endpoint):
        with open(os.environ["ATTEMPTS_FILE"], "a") as attempts:
            attempts.write("connect\\n")
        url = endpoint.url  # a client library's frame holds the URL, password included
        {connect}


class TroubledProvisioner(ServerProvisioner):
    server_name = "troubled-server"

    def binary(self):
        return None  # only ever reached by URL

    def start_private(self, ctx, binary):
        raise AssertionError("never started: there is no binary")


@hookimpl
def prism_register_backends():
    return [BackendSpec(name="troubled", capabilities=frozenset({{"keyvalue"}}),
                        properties=BackendProperties(durable=False), provisioner=TroubledProvisioner(),
                        driver=TroubledDriver)]
"""

HANGS = "await asyncio.sleep(3600)"
REFUSES = "raise ConnectionRefusedError(f'cannot reach {url}')"
SECRET = "s3cretpw"
URL = f"--prism-url=troubled=troubled://app:{SECRET}@127.0.0.1:1/db"


@pytest.fixture
def troubled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, third_party: Callable[..., None]
) -> Callable[[str], None]:
    monkeypatch.setenv("ATTEMPTS_FILE", str(pytester.path / "attempts"))
    monkeypatch.setenv("PRISM_CONNECT_TIMEOUT", "0.5")

    def install(connect: str) -> None:
        modules = {
            "troubled": TROUBLED.format(connect=connect),
            "troubledriver": (OUT_OF_TREE / "bagstore.py").read_text(),
        }
        third_party("prism-troubled", modules, {"troubled": "troubled"})
        pytester.makepyfile(test_troubled=SUITE)

    return install


@pytest.mark.parametrize("connect", [HANGS, REFUSES], ids=["hung", "unreachable"])
def test_a_server_that_cannot_be_connected_costs_one_attempt_per_run(
    pytester: pytest.Pytester, troubled: Callable[[str], None], connect: str
) -> None:
    troubled(connect)
    result = pytester.runpytest_subprocess("--prism-backend=troubled", URL, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=3)  # in the prism_env fixture: a setup error
    assert (pytester.path / "attempts").read_text().count("connect") == 1
    reason = "no answer within 0.5 s" if connect == HANGS else "ConnectionRefusedError"
    result.stdout.fnmatch_lines(
        [f"*backend 'troubled' at troubled://app:***@127.0.0.1:1/db could not be connected*{reason}*"]
    )


@pytest.mark.parametrize("flags", [["-l"], ["--showlocals", "--tb=long", "-vv"], ["--tb=native"]])
def test_no_credential_in_a_failed_connect_whatever_the_traceback_options(
    pytester: pytest.Pytester, troubled: Callable[[str], None], flags: list[str]
) -> None:
    troubled(REFUSES)
    result = pytester.runpytest_subprocess("--prism-backend=troubled", URL, "-p", "no:cacheprovider", *flags)
    result.assert_outcomes(errors=3)  # in the prism_env fixture: a setup error
    output = result.stdout.str() + result.stderr.str()
    assert "could not be connected" in output
    assert SECRET not in output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "*--prism-url troubled: not a URL: expected SCHEME://HOST*"),
        (f"troubled://app:{SECRET}@:5432/db", "*--prism-url troubled: the URL names no host*"),
        (f"troubled://app:{SECRET}@db:port/x", "*--prism-url troubled: not a valid URL*"),
    ],
)
def test_a_malformed_url_is_a_usage_error_at_start_up(
    pytester: pytest.Pytester, troubled: Callable[[str], None], url: str, expected: str
) -> None:
    troubled(REFUSES)
    result = pytester.runpytest_subprocess("--prism-backend=troubled", f"--prism-url=troubled={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert SECRET not in result.stdout.str() + result.stderr.str()
    assert "notaurl" not in result.stderr.str()
    assert not (pytester.path / "attempts").exists()


def test_a_malformed_url_from_the_environment_makes_the_backend_unavailable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, troubled: Callable[[str], None]
) -> None:
    troubled(REFUSES)
    monkeypatch.setenv("PRISM_TROUBLED_URL", "nonsense")
    result = pytester.runpytest_subprocess("--prism-backend=troubled")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*'troubled' was asked for by name but cannot be provisioned: the URL given*not a URL*"]
    )


def test_a_plugin_module_that_registers_nothing_is_named_with_the_shadowing_hint(
    pytester: pytest.Pytester, third_party: Callable[..., None]
) -> None:
    # What an author sees when a local directory named like their package shadows it.
    third_party("prism-shadowed", {"rabbitmq_prism": "# an empty module\n"}, {"rabbitmq": "rabbitmq_prism"})
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("--prism-backend=memstore")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*plugin 'rabbitmq' (entry point 'rabbitmq_prism' of distribution 'prism-shadowed') "
            "loaded *rabbitmq_prism.py, which registers nothing*a local directory or module named "
            "'rabbitmq_prism' shadows it*",
        ]
    )
