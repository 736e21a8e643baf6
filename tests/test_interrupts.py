"""A Ctrl-C or SIGTERM that arrives while the harness's loop runs cancels the running task and is
raised once the task has ended, so a client, a Hypothesis example or a ``suppress`` can neither
swallow it nor be torn mid-operation by it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.patience import bound
from prism_testkit.provision.process_identity import stamp
from prism_testkit.runtime import PrismRuntime, interrupts
from prism_testkit.runtime.interrupts import CONTROLLER_STOP, Interrupts, Terminated
from tests.conftest import runtime_of


@pytest.fixture
def runtime() -> Iterator[PrismRuntime]:
    """A runtime that owns SIGINT and SIGTERM, as it does in a run that uses the harness (this
    test's own run may be one already: its handlers are put aside meanwhile)."""
    outer = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield from runtime_of("memstore", "interrupts", {})  # no server: no binary to choose
    finally:
        for signum, handler in outer.items():
            signal.signal(signum, handler)


def signal_soon(signum: int, delay: float = 0.1) -> None:
    asyncio.get_running_loop().call_later(delay, os.kill, os.getpid(), signum)


def test_the_runtime_takes_over_sigint_and_sigterm_and_gives_them_back_when_closed(runtime: PrismRuntime) -> None:
    assert signal.getsignal(signal.SIGINT) == runtime.interrupts._on_signal
    assert signal.getsignal(signal.SIGTERM) == runtime.interrupts._on_signal
    runtime.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_cancels_the_running_task_and_is_raised_after_its_cleanup(runtime: PrismRuntime) -> None:
    cleaned: list[str] = []

    async def operation() -> None:
        signal_soon(signal.SIGINT)
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)  # a cleanup that awaits still runs to its end
            cleaned.append("operation")

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runtime.run(operation())
    assert time.monotonic() - started < 30  # before the 30 s it cut short: no bet on how soon
    assert cleaned == ["operation"]
    assert runtime.interrupts.received is signal.SIGINT


def test_a_task_that_swallows_the_cancellation_and_returns_does_not_swallow_the_interrupt(
    runtime: PrismRuntime,
) -> None:
    async def swallows() -> str:
        signal_soon(signal.SIGINT)
        try:
            await asyncio.sleep(30)
        except BaseException:  # as a client or an unknown-outcome recorder might
            return "carried on"
        return "slept"

    with pytest.raises(KeyboardInterrupt):
        runtime.run(swallows())


def test_a_task_that_keeps_running_after_its_cancellation_is_interrupted_after_the_grace(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(interrupts, "STOP_GRACE", 0.3)

    async def stubborn() -> None:
        signal_soon(signal.SIGINT)
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                continue

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runtime.run(stubborn())
    assert time.monotonic() - started < 30  # before the 30 s it cut short: no bet on how soon


def test_sigterm_stops_the_run_in_order_like_ctrl_c(runtime: PrismRuntime) -> None:
    async def operation() -> None:
        signal_soon(signal.SIGTERM)
        await asyncio.sleep(30)

    with pytest.raises(Terminated, match="SIGTERM"):
        runtime.run(operation())
    assert runtime.interrupts.received is signal.SIGTERM


def test_after_an_interrupt_cleanup_gets_only_what_is_left_of_the_budget(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(interrupts, "CLEANUP_BUDGET", 0.3)

    async def operation() -> None:
        signal_soon(signal.SIGINT, 0.0)
        await asyncio.sleep(30)

    with pytest.raises(KeyboardInterrupt):
        runtime.run(operation())
    assert runtime.run(asyncio.sleep(0, "quick")) == "quick"  # cleanup still runs
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        runtime.run(asyncio.sleep(30))  # a purge of a server that no longer answers, say
    assert time.monotonic() - started < 30  # before the 30 s it cut short: no bet on how soon


def test_a_signal_while_the_run_ends_is_remembered_not_raised(runtime: PrismRuntime) -> None:
    runtime.interrupts.deferring = True  # what the plugin sets when the session finishes
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs on the main thread's next bytecode
    assert runtime.interrupts.received is signal.SIGINT


def test_a_first_signal_while_the_run_starts_is_held_until_collection_and_a_second_raises(
    runtime: PrismRuntime,
) -> None:
    runtime.interrupts.starting = True  # what the plugin sets for the harness set up in pytest_configure
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    assert runtime.interrupts.received is signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        runtime.interrupts.release_start()
    runtime.interrupts.starting = True
    with pytest.raises(KeyboardInterrupt):
        press_and_wait(signal.SIGINT)  # the user presses again: out at once


@pytest.fixture
def worker_interrupts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Interrupts]:
    """An xdist worker's signal handling, held as while the run starts (a signal only records)."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    outer = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, CONTROLLER_STOP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(CONTROLLER_STOP, signal.SIG_DFL)
    found = Interrupts()
    found.starting = True
    found.install()
    try:
        yield found
    finally:
        found.uninstall()
        for signum, handler in outer.items():
            signal.signal(signum, handler)


def deliver_together(*signums: int) -> None:
    """Make ``signums`` pending on the main thread at once, as a signal to the whole process
    group and the controller's arrive: Python then runs their handlers in signal-number order."""
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        for signum in signums:
            signal.pthread_kill(main, signum)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)


@pytest.mark.parametrize("direct", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-after", "sigint-before"])
def test_a_workers_stop_from_its_controller_and_the_same_signal_sent_to_it_directly_are_one_stop(
    worker_interrupts: Interrupts, direct: signal.Signals
) -> None:
    # The controller's SIGUSR1 is handled after a direct SIGINT and before a direct SIGTERM:
    # neither order may make the second of the two a second signal (raised at once).
    try:
        deliver_together(CONTROLLER_STOP, direct)
    except KeyboardInterrupt:
        pytest.fail("one stop that reached the worker twice was taken for a second signal")
    assert worker_interrupts.received is not None
    with pytest.raises(KeyboardInterrupt):
        worker_interrupts.release_start()
    with pytest.raises(KeyboardInterrupt):
        deliver_together(direct)  # a second signal of its own still raises at once


def test_a_controller_passes_its_first_signal_on_to_its_workers(runtime: PrismRuntime) -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = stamp(worker.pid)
        assert process is not None
        runtime.interrupts.pass_on_to("gw0", process)
        runtime.interrupts.deferring = True  # the signal only records here: none is raised in this test
        os.kill(os.getpid(), signal.SIGTERM)
        assert worker.wait(timeout=bound("calm-op")) == -CONTROLLER_STOP  # its default: no handler of ours there
    finally:
        worker.kill()
        worker.wait()


def press_and_wait(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1)


# A plugin configured after the harness: the Ctrl-C lands while pytest is still configuring.
CTRL_C_IN_CONFIGURE = """
import os, signal, time

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
"""


def test_ctrl_c_while_pytest_configures_ends_with_the_summary_and_removes_the_work_dir(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(ctrl_c_in_configure=CTRL_C_IN_CONFIGURE, test_never_run="def test_never_run():\n    pass\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, str(pytester.path)])}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "ctrl_c_in_configure"]
    done = subprocess.run(
        [*command, "--prism-backend=memstore"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout[-3000:] + done.stderr[-2000:]
    assert "no tests ran in" in done.stdout, done.stdout[-3000:]
    assert "test_never_run" not in done.stdout
    lines = done.stdout.splitlines()
    workdir = next(line.split(": ", 1)[1] for line in lines if line.startswith("prism-testkit work dir: "))
    assert not Path(workdir).exists()


INTERRUPTED_MACHINE = """
import asyncio, os, signal

from hypothesis.stateful import rule

from prism_testkit import Message, Slot, prism_suite
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("interrupted", backend=Slot.needs("log"))


class InterruptedMachine(FaultMachine):
    def __init__(self, run):
        super().__init__(run, ["backend"])

    @rule()
    def append_then_ctrl_c(self):
        async def append():
            await self.env.driver("backend").log().append(self.ns.name("log"), Message(b"1"))
            # The user presses Ctrl-C while the operation waits on the loop.
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
            await asyncio.sleep(3600)  # ends only if the interrupt ends it

        self.attempt("p", "append", append)

    def check(self):
        # What a checker says of a history an interrupt cut short must not replace the
        # interrupt: Hypothesis would take it for an ordinary, or flaky, failure.
        raise AssertionError("1 lost")


def test_interrupted(prism_env, request):
    run = StatefulRun(prism_env, request)
    run.execute(lambda: InterruptedMachine(run))
"""


def test_ctrl_c_in_a_stateful_rule_ends_the_run_and_no_verdict_replaces_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_interrupted=INTERRUPTED_MACHINE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    # The rule sleeps an hour after the Ctrl-C: a run that ends at all was ended by it (a fixed
    # "ended within 30 s" lost to a loaded machine). A run it did not end times out here.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--prism-backend=memstore", "test_interrupted.py"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=bound("settle-ceiling"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job has it
    )
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 lost" not in done.stdout


INTERRUPT_WITHOUT_A_LINE_NUMBER = """
import types


def paused():
    try:
        yield
    finally:
        pass


def test_interrupted_where_python_knows_no_line():
    generator = paused()
    next(generator)
    code = generator.gi_frame.f_code
    offset = next(start for start, _, line in code.co_lines() if line is None)
    # What a signal handled at that instruction leaves in the interrupt's traceback.
    raise KeyboardInterrupt().with_traceback(types.TracebackType(None, generator.gi_frame, offset, -1))
"""


def test_an_interrupt_at_an_instruction_without_a_line_number_is_reported_not_a_crash(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_unnumbered=INTERRUPT_WITHOUT_A_LINE_NUMBER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "TypeError" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*", "*no tests ran*"])


def _deep(depth: int) -> None:
    if depth:
        _deep(depth - 1)
        return
    try:
        raise ValueError("what the interrupt broke into")
    except ValueError:
        raise KeyboardInterrupt  # noqa: B904 (the chained context is the point)


def test_an_interrupt_is_cut_to_the_line_pytest_prints_so_formatting_it_costs_nothing() -> None:
    from prism_testkit.plugin.tracebacks import keep_only_where_it_struck

    with pytest.raises(KeyboardInterrupt) as excinfo:
        _deep(30)
    assert len(excinfo.traceback) > 30
    keep_only_where_it_struck(excinfo)
    assert len(excinfo.traceback) == 1
    assert excinfo.traceback[0].name == "_deep"
    assert "During handling of the above exception" not in str(excinfo.getrepr(funcargs=True))


DEEP_INTERRUPT = """
def inner_helper():
    try:
        raise ValueError("context of the interrupt")
    except ValueError:
        raise KeyboardInterrupt


def test_interrupted():
    inner_helper()
"""


@pytest.mark.parametrize("full", [False, True])
def test_full_trace_still_shows_the_whole_interrupt(pytester: pytest.Pytester, full: bool) -> None:
    pytester.makepyfile(test_deep=DEEP_INTERRUPT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *(["--full-trace"] if full else []))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    output = result.stdout.str()
    assert ("context of the interrupt" in output) is full
    assert ("def test_interrupted" in output) is full
    result.stdout.fnmatch_lines(["*test_deep.py:5: KeyboardInterrupt*"] if not full else ["*KeyboardInterrupt*"])
