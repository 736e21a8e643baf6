"""Bad backend registrations stop the run at start-up, naming the offending plugin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def interrupted_run(pytester: pytest.Pytester, plugin: str) -> tuple[int, str]:
    """A run in a subprocess with the SIGINT disposition of a terminal's foreground job (the
    test process's own may be inherited SIG_IGN), installing ``plugin`` as a third party."""
    site = pytester.path / "site"
    site.mkdir(exist_ok=True)
    (site / "broken.py").write_text(plugin)
    (site / "bagdriver.py").write_text((OUT_OF_TREE / "bagstore.py").read_text())
    info = site / "prism_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prism-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prism_testkit]\nbroken-plugin = broken\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--prism-backend=memstore"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    return done.returncode, done.stdout + done.stderr


def test_a_ctrl_c_that_cpython_wraps_during_a_plugins_import_still_interrupts(pytester: pytest.Pytester) -> None:
    # Python 3.11 wraps an exception raised from __set_name__ (as a Ctrl-C landing while a
    # dataclass is defined at import) in a RuntimeError: that is an interrupt, not a broken plugin.
    source = "class Lands:\n    def __set_name__(self, owner, name):\n        raise KeyboardInterrupt\n\n"
    source += "class Defined:\n    field = Lands()\n"
    returncode, output = interrupted_run(pytester, source)
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "could not be loaded" not in output


def test_a_ctrl_c_dropped_during_the_harness_set_up_still_ends_the_run_interrupted(pytester: pytest.Pytester) -> None:
    # CPython drops a KeyboardInterrupt raised in a weakref callback or a C module's init; a
    # plugin that catches one does the same. The harness's handler has noted the signal.
    body = "import os, signal, time\n\n@hookimpl\ndef prism_register_backends():\n    try:\n"
    body += "        os.kill(os.getpid(), signal.SIGINT)\n        time.sleep(5)\n"
    body += "    except KeyboardInterrupt:\n        pass\n    return []\n"
    returncode, output = interrupted_run(pytester, HEADER + body)
    assert returncode == pytest.ExitCode.INTERRUPTED, output
