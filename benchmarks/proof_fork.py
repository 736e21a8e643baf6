"""What a fork server would save a proof (issue 65): one proof's pytest started fresh, as
``pytester.runpytest_subprocess`` starts it, against the same pytest forked from a process that
imported pytest, Hypothesis and the harness once. Interleaved (A, B, B, A ...), wall and CPU.

    python -m benchmarks.proof_fork --trials 6

The proof is the collection of one stateful suite with a mutant plugin loaded, its arguments as
the mutant proofs build them (``--co``): what a
proof pays before its first test, the part a fork server can take away; the tests it then runs
cost the same either way. Each side runs in an empty directory with the proofs' environment
(``PYTHONPATH`` the checkout, ``PYTEST_ADDOPTS`` dropped). The forked side's CPU is the child's
own (``wait4``), the zygote's one-off import is printed apart. The zygote imports no test module:
pytest must import the suites itself to rewrite their assertions.

A measurement, not a harness: nothing here is used by ``tests/``. Nothing asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import summarize, trial_order

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("-p", "tests.mutants.queue_acks_on_delivery", "--prism-backend=memstore", "-p", "no:cacheprovider")


def proof(sandbox: Path) -> list[str]:
    """A mutant proof's arguments as ``tests/test_mutants.py`` builds them (the suite's modules
    only, the machine's Hypothesis caches shared), collecting only."""
    from tests._suite_runs import suite_run

    return [*suite_run(sandbox, PLUGINS, "stateful_queue"), "--co", "-q"]


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def fresh(sandbox: Path) -> tuple[float, float, int]:
    """One proof as pytester starts it: a new interpreter. (wall, CPU of the child, exit code)"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *proof(sandbox)],
        cwd=sandbox,
        env=environment(),
        capture_output=True,
        check=False,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


def zygote() -> tuple[float, float]:
    """This process becomes the zygote: what every proof imports, imported once. (wall, CPU)"""
    started, cpu = time.monotonic(), time.process_time()
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
    import xdist  # noqa: F401

    import prism_testkit.plugin  # noqa: F401
    from prism_testkit.hunting import profiles

    profiles.register_profiles()
    return time.monotonic() - started, time.process_time() - cpu


def forked(sandbox: Path) -> tuple[float, float, int]:
    """One proof forked from this (already warm) process. (wall, CPU of the child, exit code)"""
    args = proof(sandbox)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: the proof's directory, environment and output, then pytest
        try:
            import pytest

            os.chdir(sandbox)
            os.environ.clear()
            os.environ.update(environment())
            out = os.open(sandbox / "out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            code = int(pytest.main(args))
        except BaseException:  # a child never returns into the benchmark
            code = 99
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proof_fork", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="pairs of runs (default 6)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the zygote imports the mutants' package as the proofs do
    load_wall, load_cpu = zygote()
    figures: dict[str, dict[str, list[float]]] = {side: {"wall": [], "cpu": []} for side in ("fresh", "forked")}
    with tempfile.TemporaryDirectory(prefix="prism-proof-fork-") as base:
        for trial in range(args.trials):
            for name in trial_order(list(figures), trial):
                sandbox = Path(base) / f"{trial}-{name}"
                sandbox.mkdir()
                wall, cpu, code = (fresh if name == "fresh" else forked)(sandbox)
                if code != 0:
                    print(f"{name} run of trial {trial} exited {code}", file=sys.stderr)
                    return 1
                figures[name]["wall"].append(wall)
                figures[name]["cpu"].append(cpu)
    load = os.getloadavg()[0]
    print(f"zygote's one-off import: {load_wall:.2f} s wall, {load_cpu:.2f} s CPU; load average now {load:.1f}")
    for name, measured in figures.items():
        for what, values in measured.items():
            print(f"{name:>6} {what:>4}: {summarize(values)}")
    if args.json:
        args.json.write_text(json.dumps({"zygote": [load_wall, load_cpu], **figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
