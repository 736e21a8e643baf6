"""A Ctrl-C at any moment of any kind of suite stops the run within seconds: exit 2, pytest's
summary, and nothing left behind (no server process, no work dir, no mount). SIGTERM stops it
the same way.

Each moment is a real run in a subprocess, interrupted after a random delay from the moment
pytest starts configuring its plugins: during the harness's set-up, collection, provisioning, a
Hypothesis example, a stateful machine's rule or its teardown.

Before that moment the signal meets the interpreter's and pytest's own start-up, which no plugin
can reach, and CPython 3.11 may drop it there: raised inside the weakref callback of importlib's
module locks it is printed as "Exception ignored", and inside ``_elementtree``'s C init (pytest's
junitxml imports it) it vanishes without a word. The run then goes on as if no key was pressed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from prism_testkit import patience

ROOT = Path(__file__).resolve().parent.parent
MOMENTS = 20
# Seconds from the signal to the process's exit. About 0.5 s at idle; most of a slow exit is
# pytest formatting the interrupt's traceback (cut first: plugin.keep_only_where_it_struck).
# Scaled by the machine's slowness (prism_testkit.patience): under two CPU burners at load 5-12
# on 2 cores, 4 of 20 runs took 5.0-6.1 s, every one still ending in order.
STOP_WITHIN = 5.0
# Each selection runs for 30 s or more, so every moment falls inside a live run.
LATEST_MOMENT = 10.0
KINDS = {
    "stateful machines": ("stateful_queue,stateful_log,stateful_claim_check", "memstore,sqlite,localfs"),
    "contract suites": ("keyvalue,queue,log,objects,transactions", "memstore,sqlite,localfs"),
    "pattern suites": ("claim_check,outbox,wal,event_sourcing,cqrs", "memstore,sqlite,localfs"),
    "a server-backed machine": ("stateful_queue,queue,keyvalue", "redis"),
}
WORK_DIR_LINE = re.compile(r"^prism-testkit work dir: (.+)$", re.MULTILINE)
SUMMARY_LINE = re.compile(r"^=*\s*(no tests ran|\d+ \w+).* in \d+\.\d+s", re.MULTILINE)


@dataclass
class Stopped:
    kind: str
    signum: int
    moment: float
    took: float
    returncode: int
    output: str
    descendants: list[int]

    def describe(self) -> str:
        name = signal.Signals(self.signum).name
        when = f"{self.moment:.2f}s after pytest began configuring {self.kind}"
        return f"{name} {when}: exit {self.returncode} after {self.took:.1f}s"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (servers, their workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _as_in_a_terminal() -> None:
    # A run started in the background by a shell without job control ignores SIGINT, and so
    # would its children: give the run the disposition a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# A plugin of the interrupted run that notes when pytest begins to configure it: the moment is
# counted from there (CLOCK_MONOTONIC is one clock for every process of the machine).
CONFIGURING_MARK = """
import os, time, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    with open(os.environ["PRISM_CONFIGURING_MARK"], "w") as mark:
        mark.write(repr(time.monotonic()))
"""


def configuring_began(mark: Path, proc: subprocess.Popen[bytes]) -> float:
    """When the run reached pytest_configure. A loaded machine takes its time: the wait is the
    "settle-ceiling" bound (120 s x slowness; it was a fixed 60 s)."""

    def written() -> str:
        text = mark.read_text() if mark.exists() else ""
        if not text:
            assert proc.poll() is None, f"the run ended before pytest configured it: exit {proc.returncode}"
        return text

    text = patience.until_sync(
        written,
        bool,
        what="the run to reach pytest_configure",
        stall="settle-ceiling",
        ceiling="settle-ceiling",
        every=0.01,
    )
    return float(text)


def interrupt_a_run(kind: str, signum: int, moment: float, tmp: Path) -> Stopped:
    patterns, backends = KINDS[kind]
    (tmp / "prism_configuring_mark.py").write_text(CONFIGURING_MARK)
    mark = tmp / "configuring.mark"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp)]),
        "TMPDIR": str(tmp),
        "PRISM_CONFIGURING_MARK": str(mark),
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "prism_configuring_mark", "-q"]
    command += ["--pyargs", "prism_testkit.suites"]
    proc = subprocess.Popen(
        [*command, f"--prism-pattern={patterns}", f"--prism-backend={backends}"],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_as_in_a_terminal,
    )
    try:
        time.sleep(max(0.0, configuring_began(mark, proc) + moment - time.monotonic()))
        assert proc.poll() is None, f"{kind} ended before {moment:.2f}s: the moment tests nothing"
        below = descendants(proc.pid)
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        return Stopped(kind, signum, moment, time.monotonic() - sent, proc.returncode, output.decode(), below)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def left_behind(stopped: Stopped) -> list[str]:
    left = [f"process {pid} still runs" for pid in stopped.descendants if running(pid)]
    found = WORK_DIR_LINE.search(stopped.output)
    if found is not None:  # absent when the signal came before the harness was set up
        workdir = found.group(1).strip()
        if os.path.exists(workdir):
            left.append(f"work dir {workdir} remains")
        if workdir in Path("/proc/self/mounts").read_text():
            left.append(f"a mount under {workdir} remains")
    return left


def moments(rng: random.Random, signum: int, count: int) -> list[tuple[str, int, float]]:
    kinds = [kind for kind in KINDS if "redis" not in KINDS[kind][1] or shutil.which("redis-server")]
    return [(rng.choice(kinds), signum, rng.uniform(0.0, LATEST_MOMENT)) for _ in range(count)]


def check(stopped: Stopped, seed: int) -> list[str]:
    problems = []
    summarised = SUMMARY_LINE.search(stopped.output) is not None
    # Python 3.11 also ends by SIGINT, after pytest's orderly exit 2 and summary, when the interrupt
    # once left code run from source text (exec of a string: dataclasses, pydantic at import):
    # its "unhandled KeyboardInterrupt" flag is never reset. Seen once in ~60 moments, mid-collection.
    after_summary = summarised and "KeyboardInterrupt" in stopped.output
    expected: set[int] = {pytest.ExitCode.INTERRUPTED}
    if after_summary:
        expected.add(-stopped.signum)
    if stopped.returncode not in expected:
        problems.append("exit code is not 2")
    within = STOP_WITHIN * patience.slowness()
    if stopped.took > within:
        problems.append(f"took more than {within:.1f}s ({STOP_WITHIN:g}s x slowness {patience.slowness():.1f})")
    if not summarised:
        problems.append("no summary")
    problems += left_behind(stopped)
    if not problems:
        return []
    output = (
        stopped.output if len(stopped.output) < 4500 else f"{stopped.output[:1500]}\n[...]\n{stopped.output[-3000:]}"
    )
    return [f"{stopped.describe()} (seed {seed}): {'; '.join(problems)}\n{output}"]


def run_moments(plan: list[tuple[str, int, float]], root: Path, seed: int) -> list[str]:
    def one(index: int) -> list[str]:
        kind, signum, moment = plan[index]
        tmp = root / str(index)
        tmp.mkdir()
        return check(interrupt_a_run(kind, signum, moment, tmp), seed)

    with ThreadPoolExecutor(2) as pool:  # two runs at a time: the wall time stays under two minutes
        return [problem for problems in pool.map(one, range(len(plan))) for problem in problems]


def test_ctrl_c_at_random_moments_stops_every_kind_of_suite_within_seconds_and_leaves_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("PRISM_SIGNAL_SEED") or random.getrandbits(32))
    problems = run_moments(moments(random.Random(seed), signal.SIGINT, MOMENTS), tmp_path, seed)
    assert not problems, f"{len(problems)} of {MOMENTS} interrupted runs went wrong:\n\n" + "\n\n".join(problems)


def test_sigterm_stops_a_run_in_order_and_removes_its_work_dir(tmp_path: Path) -> None:
    seed = int(os.environ.get("PRISM_SIGNAL_SEED") or random.getrandbits(32))
    rng = random.Random(seed)
    plan = [(kind, int(signal.SIGTERM), rng.uniform(4.0, LATEST_MOMENT)) for kind in ("stateful machines",) * 2]
    problems = run_moments(plan, tmp_path, seed)
    assert not problems, "\n\n".join(problems)
