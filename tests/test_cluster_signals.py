"""Ctrl-C, SIGTERM and SIGKILL of pytest while its JetStream cluster is partitioned leave
nothing behind: no nats-server, no namespace, veth, bridge or route, no work dir.

Each case is a real run in a subprocess: a test on ``jetstream-r3`` cuts one node off and
sleeps. The signal is sent only once the partition is seen from outside (the run's network
record names its namespaces, and a blackhole route is found inside one of them, with a server
in every namespace), so what the checks find gone was there. SIGINT and SIGTERM must end the run
in order (exit 2, pytest's summary) within :data:`STOP_WITHIN`; a SIGKILLed run cleans nothing,
so the checks first find its leftovers, and then none once the next run's start-up sweep has
removed them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from prism_testkit.provision import netns
from prism_testkit.provision.workdirs import PARENT_PREFIX, sweep_abandoned
from tests.test_netns import links, namespaces
from tests.test_signals import ROOT, SUMMARY_LINE, _as_in_a_terminal, descendants, running

# From the signal to the exit: the teardown stops three servers and deletes three namespaces;
# 10 s still fails a wait on any server's default timeout, and allows a loaded 2-core machine.
STOP_WITHIN = 10.0
PARTITIONED_WITHIN = 120.0  # s from the start: plugin start-up, three nodes settling, the cut
HELD_PARTITION = """
import time

from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("held_partition", backend=Slot.needs("queue"))


def test_cut_off_and_waiting(prism_env: PrismEnv) -> None:
    cluster = prism_env.runtime.endpoint(prism_env.spec("backend").name).options["cluster"]
    cluster.partition([[0], [1, 2]])
    time.sleep(300)
"""


@dataclass
class Partitioned:
    """A run seen mid-partition: what it made, by name, before the signal."""

    proc: subprocess.Popen[bytes]
    parent: Path  # the work dirs' parent in the run's TMPDIR
    workdir: Path
    token: str
    namespaces: list[str]
    links: list[str]
    servers: list[int]  # pids of the processes inside the namespaces (the nats-servers)
    below: list[int]  # every process below pytest

    def leftovers(self) -> list[str]:
        left = [f"process {pid} still runs" for pid in {*self.servers, *self.below} if running(pid)]
        listed = namespaces()
        left += [f"namespace {name} remains" for name in self.namespaces if name in listed]
        present = links()
        left += [f"link {name} remains" for name in self.links if f" {name}:" in present or f" {name}@" in present]
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
        left += [f"route {line.strip()!r} remains" for line in routes.splitlines() if self.token[:8] in line]
        left += [f"work dir {path} remains" for path in self.parent.iterdir()]
        return left


def command(tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_as_in_a_terminal,
    )


def blackholes(namespace: str) -> list[str]:
    routes = subprocess.run(["ip", "-n", namespace, "route"], capture_output=True, text=True).stdout
    return [line for line in routes.splitlines() if line.startswith("blackhole")]


def pids_in(namespace: str) -> list[int]:
    found = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def start_partitioned(tmp: Path) -> Partitioned:
    """A run of the held-partition test, returned once its partition is seen in place."""
    (tmp / "test_held_partition.py").write_text(HELD_PARTITION)
    proc = command(tmp, "test_held_partition.py", "--prism-backend=jetstream-r3")
    parent = tmp / f"{PARENT_PREFIX}{os.getuid()}"
    deadline = time.monotonic() + PARTITIONED_WITHIN  # hand-rolled: on running out it kills the run, shows its output
    while True:
        if proc.poll() is not None:
            output = proc.communicate()[0].decode()
            pytest.fail(f"the run ended (exit {proc.returncode}) before its partition was seen:\n{output[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            output = proc.communicate()[0].decode()
            pytest.fail(f"no partition seen within {PARTITIONED_WITHIN:g}s:\n{output[-3000:]}")
        records = list(parent.glob(f"*/{netns.RECORD_PREFIX}*.json")) if parent.exists() else []
        if records:
            record = json.loads(records[0].read_text())
            cut = [name for name in record["namespaces"] if blackholes(name)]
            servers = [pid for name in record["namespaces"] for pid in pids_in(name)]
            if cut and all(pids_in(name) for name in record["namespaces"]):
                return Partitioned(
                    proc,
                    parent,
                    records[0].parent,
                    record["token"],
                    record["namespaces"],
                    record["links"],
                    servers,
                    descendants(proc.pid),
                )
        time.sleep(0.2)


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[Partitioned]:
    if (reason := netns.namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    run = start_partitioned(tmp_path)
    try:
        # What the checks must find gone is there now: a cut, three servers, the work dir.
        assert len(run.namespaces) == 3, run
        assert len(run.servers) >= 3, run
        assert run.workdir.is_dir()
        assert run.leftovers(), "the checks see nothing of a live run: they could not fail"
        yield run
    finally:  # a test that failed before its signal must not leave a partitioned cluster running
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()
        sweep_abandoned(tmp_path)


def stop(run: Partitioned, signum: int) -> tuple[int, float, str]:
    sent = time.monotonic()
    run.proc.send_signal(signum)
    try:
        output, _ = run.proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        output, _ = run.proc.communicate()
    took = time.monotonic() - sent
    print(f"{signal.Signals(signum).name}: exit {run.proc.returncode} {took:.2f}s after the signal")
    return run.proc.returncode, took, output.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_mid_partition_stops_the_run_in_order_and_leaves_nothing(
    partitioned: Partitioned, signum: int
) -> None:
    returncode, took, output = stop(partitioned, signum)
    assert returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert took <= STOP_WITHIN, f"exit {took:.1f}s after the signal\n{output[-3000:]}"
    assert SUMMARY_LINE.search(output), output[-3000:]
    assert partitioned.leftovers() == [], output[-3000:]


def test_a_sigkill_mid_partition_leaves_what_the_next_runs_sweep_removes(partitioned: Partitioned) -> None:
    returncode, _, output = stop(partitioned, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, output[-3000:]
    left = partitioned.leftovers()
    # Nothing ran after the SIGKILL: the namespaces (with their cut) and the work dir stay.
    assert any("namespace" in line for line in left), left
    assert any("work dir" in line for line in left), left
    assert any(blackholes(name) for name in partitioned.namespaces)

    (partitioned.parent.parent / "test_nothing.py").write_text("def test_nothing() -> None:\n    pass\n")
    after = command(partitioned.parent.parent, "test_nothing.py", "--prism-backend=memstore")
    next_output = after.communicate(timeout=120)[0].decode()
    assert after.returncode == 0, next_output[-3000:]

    assert partitioned.leftovers() == [], next_output[-3000:]
