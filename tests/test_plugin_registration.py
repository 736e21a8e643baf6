"""Bad backend registrations stop the run at start-up, naming the offending plugin."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import OUT_OF_TREE

HEADER = """
from prism_testkit import BackendProperties, BackendSpec, EmbeddedProvisioner, hookimpl
from bagdriver import BagDriver
"""


def register(body: str) -> str:
    return HEADER + "\n@hookimpl\ndef prism_register_backends():\n    return " + body + "\n"


def spec(name: str = "mine", capabilities: str = '{"keyvalue"}', provisioner: str = "EmbeddedProvisioner()") -> str:
    return (
        f"[BackendSpec(name={name!r}, capabilities=frozenset({capabilities}), "
        f"properties=BackendProperties(durable=False), provisioner={provisioner}, driver=BagDriver)]"
    )


@pytest.fixture
def broken_plugin(pytester: pytest.Pytester, third_party: Callable[..., None]) -> Callable[..., pytest.RunResult]:
    def run(source: str, *args: str) -> pytest.RunResult:
        modules = {"broken": source, "bagdriver": (OUT_OF_TREE / "bagstore.py").read_text()}
        third_party("prism-broken", modules, {"broken-plugin": "broken"})
        return pytester.runpytest(*args)

    return run


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            register(spec(name="memstore")),
            "*backend registration from plugin 'broken-plugin': backend 'memstore' is already registered "
            "by plugin 'memstore'*",
        ),
        (
            register(spec(capabilities='{"keyvalue", "queue"}')),
            "*plugin 'broken-plugin': backend 'mine' declares queue but driver BagDriver does not implement it*",
        ),
        (register(spec(provisioner="None")), "*plugin 'broken-plugin': backend 'mine' has no provisioner*"),
        (
            register(spec(name="Bad Name")),
            "*plugin 'broken-plugin': backend name 'Bad Name' must be lower-case*",
        ),
        (
            register(spec(capabilities='{"keyvalue", "teleport"}')),
            "*plugin 'broken-plugin' failed: ValueError: unknown capability 'teleport'*",
        ),
        (register("42"), "*plugin 'broken-plugin': prism_register_backends must return a sequence*got int*"),
        (
            "import no_such_module_anywhere\n",
            "*plugin 'broken-plugin' (entry point 'broken' of distribution 'prism-broken') could not be loaded:"
            " ModuleNotFoundError*",
        ),
    ],
    ids=[
        "duplicate-name",
        "undeclared-interface",
        "no-provisioner",
        "bad-name",
        "unknown-capability",
        "not-a-sequence",
        "import-error",
    ],
)
def test_bad_registration_fails_at_start_up(
    broken_plugin: Callable[..., pytest.RunResult], source: str, message: str
) -> None:
    result = broken_plugin(source, "--prism-backend=memstore")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_broken_third_party_plugin_does_not_disturb_a_run_that_does_not_use_prism(
    broken_plugin: Callable[..., pytest.RunResult], pytester: pytest.Pytester
) -> None:
    pytester.makepyfile("def test_unrelated(): pass")
    result = broken_plugin("import no_such_module_anywhere\n")
    result.assert_outcomes(passed=1)
    assert "prism-testkit:" not in result.stdout.str()  # no header, summary or report of ours + result.stderr.str()


def test_a_good_third_party_registration_is_listed(broken_plugin: Callable[..., pytest.RunResult]) -> None:
    result = broken_plugin(register(spec()), "--prism-backend=mine")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["prism-testkit backends:", "  mine: embedded*"])
