"""A SIGTERM or SIGINT sent to an xdist controller alone (a CI runner cancelling a job, ``kill``)
must stop its workers in order too: each stops its servers and removes its work dir. Left to
xdist, a worker busy in a test is SIGINTed after five seconds (lost where SIGINT is ignored, as
in a CI job or a shell's background job) and SIGKILLed after ten, with no cleanup at all."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from prism_testkit.patience import bound, poll_until
from tests.conftest import OUT_OF_TREE

# A third party's server whose leader forks a helper that leaves the process group (setsid(), as
# a postmaster's children do) and stops itself: how the load mode's jitter left six postgres
# children of a worker SIGKILLed mid-stall. Nothing ends such a helper but the harness's own
# stop of its server (which finds it by name and working dir).
LINGERING = '''
import os, sys, textwrap
from prism_testkit import BackendProperties, BackendSpec, hookimpl
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import ServerProvisioner, private_endpoint
from lingerdriver import BagDriver

SERVER = textwrap.dedent("""
    import os, socket, subprocess, sys
    helper = (
        "import os, signal; os.setsid(); "
        f"open({os.environ['LINGER_PIDS']!r}, 'w').write(str(os.getpid())); "
        "os.kill(os.getpid(), signal.SIGSTOP)"
    )
    subprocess.Popen([sys.executable, "-c", helper])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
    while True:
        s.accept()[0].close()
""")


class LingeringProvisioner(ServerProvisioner):
    server_name = "lingering-server"

    def binary(self):
        from pathlib import Path
        return Path(sys.executable)

    def start_private(self, ctx, binary):
        port = free_port()
        server = ServerProcess("lingering", [str(binary), "-c", SERVER, str(port)], port=port,
                               log_path=ctx.workdir / "server.log", cwd=ctx.workdir)
        server.start()
        return private_endpoint(f"lingering://127.0.0.1:{port}", server)


@hookimpl
def prism_register_backends():
    return [BackendSpec(name="lingering", capabilities=frozenset({"keyvalue"}),
                        properties=BackendProperties(durable=False), provisioner=LingeringProvisioner(),
                        driver=BagDriver)]
'''

BUSY = """
import asyncio, os
from pathlib import Path
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("sandbox_kv", backend=Slot.needs("keyvalue"))

async def test_busy(prism_env: PrismEnv, prism_runtime) -> None:
    await prism_env["backend"].keyvalue().get(prism_env.ns.name("k"))
    Path(os.environ["LINGER_READY"]).write_text(str(prism_runtime.workdir))
    await asyncio.sleep(3600)  # ends only if the interrupt ends it
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in "ZX"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_to_the_controller_alone_leaves_no_process_and_no_work_dir_of_its_workers(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    third_party: Callable[..., None],
    signum: signal.Signals,
) -> None:
    modules = {"lingering": LINGERING, "lingerdriver": (OUT_OF_TREE / "bagstore.py").read_text()}
    third_party("prism-lingering", modules, {"lingering": "lingering"})
    pytester.makepyfile(test_busy=BUSY)
    pids, ready, log = pytester.path / "helper.pid", pytester.path / "ready", pytester.path / "run.log"
    monkeypatch.setenv("LINGER_PIDS", str(pids))
    monkeypatch.setenv("LINGER_READY", str(ready))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "1", "--prism-backend=lingering"]
    helper: int | None = None
    with (
        open(log, "wb") as out,
        subprocess.Popen(
            command,
            cwd=pytester.path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: whatever the test leaves behind, the finally ends it
            # For SIGTERM, SIGINT ignored, as in a CI job or a shell's background job: xdist's own
            # fallback (the worker SIGINTs itself) is then lost, and only the harness stops the worker.
            # For SIGINT, it must reach the controller whatever this test's own run ignores.
            preexec_fn=functools.partial(
                signal.signal, signal.SIGINT, signal.SIG_IGN if signum == signal.SIGTERM else signal.SIG_DFL
            ),
        ) as run,
    ):
        try:
            poll_until(
                lambda: (ready.exists() and pids.exists()) or run.poll() is not None,
                what="the run's worker to start its server",
                bound_name="settle-ceiling",
            )
            assert run.poll() is None, log.read_text()[-3000:]
            assert ready.exists(), log.read_text()[-3000:]
            assert pids.exists(), log.read_text()[-3000:]
            helper, workdir = int(pids.read_text()), Path(ready.read_text())
            os.kill(run.pid, signum)
            run.wait(timeout=bound("settle-ceiling"))
            assert run.returncode == pytest.ExitCode.INTERRUPTED, log.read_text()[-3000:]
            # The helper is reaped by init once killed: "gone" is seen soon, not at once.
            poll_until(lambda: not _running(helper), what="the server's process gone after the run")
            assert not workdir.exists(), "the worker's work dir outlived the run"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            if helper is not None and _running(helper):
                os.kill(helper, signal.SIGKILL)  # it left the run's group: only its pid reaches it
