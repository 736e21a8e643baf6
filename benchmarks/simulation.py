"""Simulated mode (issue 28), measured: examples per wall second of ``stateful_queue`` on
memstore with and without ``--prism-simulate``, and how often a replay of one seed gives the
same history digests, for every stateful suite that runs on memstore and for a failing seed.

    python -m benchmarks.simulation --trials 3 --seconds 10 --replays 100 --out benchmarks/results

Throughput: each side is a ``--prism-hunt`` of ``--seconds`` in its own pytest process; the
trials are interleaved (real, simulated; then simulated, real...) and the per-trial ratios are
summarised with their spread (:mod:`benchmarks.stats`). Replays: the same seed, ``--replays``
pytest sessions in one child process (the mutant's in another), each with an empty example
database (a saved failure would change what the next run draws first). Nothing asserts a
timing; the numbers are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.stats import Spread, spread_dict, summarize, trial_order

ROOT = Path(__file__).resolve().parent.parent
QUEUE_TEST = "prism_testkit/suites/test_stateful_queue.py::test_queue_delivers_every_acknowledged_message_under_faults"
STATEFUL_ON_MEMSTORE = [
    "prism_testkit/suites/test_stateful_queue.py",
    "prism_testkit/suites/test_stateful_log.py",
    "prism_testkit/suites/test_stateful_outbox.py",
    "prism_testkit/suites/test_stateful_claim_check.py",
    "prism_testkit/suites/test_stateful_tiered_storage.py",
    "prism_testkit/suites/test_stateful_event_sourcing.py",
    "prism_testkit/suites/test_stateful_cdc.py",
]
# A failing seed to replay: the mutant that acks on delivery, caught by the queue suite.
FAILING = ("tests.mutants.queue_acks_on_delivery", QUEUE_TEST)


def _pytest(args: list[str]) -> tuple[int, dict[str, dict[str, dict[str, Any]]], str]:
    """Run pytest in a fresh process with a private example database; per test, its
    ``prism_*`` dict properties from the JUnit XML."""
    with tempfile.TemporaryDirectory(prefix="prism-sim-bench-") as tmp:
        xml = Path(tmp) / "junit.xml"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "CI"))}
        env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(Path(tmp) / "hypothesis")
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
        argv += ["--prism-backend=memstore", f"--junitxml={xml}", *args]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        return done.returncode, _junit_properties(xml), done.stdout[-2000:]


def hunt_rate(simulate: bool, seconds: int) -> float:
    """Examples per wall second of a hunt of the queue suite on memstore."""
    args = [QUEUE_TEST, f"--prism-hunt={seconds}s", *(["--prism-simulate"] if simulate else [])]
    code, found, out = _pytest(args)
    if code != 0:
        raise RuntimeError(f"the hunt failed:\n{out}")
    hunt = next(props["prism_hunt"] for props in found.values() if "prism_hunt" in props)
    return float(hunt["examples"]) / float(hunt["seconds"])


def throughput(trials: int, seconds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"real": [], "simulated": []}
    for trial in range(trials):
        for side in trial_order(["real", "simulated"], trial):
            rates[side].append(hunt_rate(side == "simulated", seconds))
            print(f"  trial {trial + 1} {side}: {rates[side][-1]:.1f} examples/s", file=sys.stderr)
    ratios = [s / r for s, r in zip(rates["simulated"], rates["real"], strict=True)]
    return {
        "seconds_per_hunt": seconds,
        "real_examples_per_s": spread_dict(summarize(rates["real"])),
        "simulated_examples_per_s": spread_dict(summarize(rates["simulated"])),
        "speedup": spread_dict(summarize(ratios)),
    }


def _replay_child(count: int, seed: int, mutant: str | None, tests: list[str]) -> int:
    """In this process, ``count`` pytest sessions of ``tests`` with ``seed``; prints, per run,
    each test's ``prism_simulation`` property as one JSON line. One process for all of them:
    on a loaded machine, start-up would cost more than the runs."""
    import pytest

    args = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--prism-backend=memstore", "--prism-simulate"]
    args += [f"--hypothesis-seed={seed}", *(["-p", mutant] if mutant else []), *tests]
    for run in range(count):
        with tempfile.TemporaryDirectory(prefix="prism-sim-replay-") as tmp:
            xml = Path(tmp) / "junit.xml"
            # a failure saved by one run would be replayed first by the next: a fresh database each
            os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(Path(tmp) / "hypothesis")
            with contextlib.redirect_stdout(io.StringIO()):
                code = pytest.main([*args, f"--junitxml={xml}"])
            found = {
                test: props["prism_simulation"]
                for test, props in _junit_properties(xml).items()
                if "prism_simulation" in props
            }
        print(json.dumps({"run": run, "exit": int(code), "tests": found}), flush=True)
    return 0


def _junit_properties(xml: Path) -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            props = {}
            for prop in case.iter("property"):
                name, value = prop.get("name") or "", prop.get("value") or ""
                if name.startswith("prism_") and value.startswith("{"):
                    props[name] = json.loads(value)
            found[f"{case.get('classname')}::{case.get('name')}"] = props
    return found


def _replay_runs(count: int, seed: int, mutant: str | None, tests: list[str]) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "CI"))}
    env["PYTHONPATH"] = str(ROOT)  # the mutants are the tests package's plugins
    argv = [sys.executable, "-m", "benchmarks.simulation", "--replay-child", str(count), "--seed", str(seed)]
    argv += [*(["--mutant", mutant] if mutant else []), *tests]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(runs) != count:
        raise RuntimeError(f"{len(runs)} of {count} replays reported:\n{done.stderr[-3000:]}")
    return runs


def replays(count: int, seed: int) -> dict[str, Any]:
    """Per test: how many distinct digests ``count`` replays of ``seed`` gave (1: all the same)."""
    digests: dict[str, Counter[str]] = {}
    for run in _replay_runs(count, seed, None, STATEFUL_ON_MEMSTORE):
        if run["exit"] != 0:
            raise RuntimeError(f"replay {run['run']} failed: {run}")
        for test, sim in run["tests"].items():
            digests.setdefault(re.sub(r"^suites\.", "", test), Counter())[sim["digest"]] += 1
    print(f"  {count} replays of the stateful suites done", file=sys.stderr)
    failing: Counter[str] = Counter()
    mutant, test = FAILING
    for run in _replay_runs(count, seed, mutant, [test]):
        sim = next(iter(run["tests"].values()), None)
        if run["exit"] == 0 or sim is None or sim["failing_digest"] is None:
            raise RuntimeError(f"the mutant's seed did not fail in replay {run['run']}: {run}")
        failing[f"{sim['failing_digest']} / {sim['digest']}"] += 1
    rows = {t: {"runs": sum(c.values()), "distinct_digests": len(c)} for t, c in digests.items()}
    rows[f"{test.split('::')[1]} with {mutant.rsplit('.', 1)[1]} (failing)"] = {
        "runs": count,
        "distinct_digests": len(failing),
    }
    return {"seed": seed, "tests": rows}


def markdown(results: dict[str, Any]) -> list[str]:
    lines = []
    if "throughput" in results:
        t = results["throughput"]
        lines += [
            "| stateful_queue on memstore | examples per wall second |",
            "|---|---|",
            f"| real time | {t['real_examples_per_s']['median']:.1f} |",
            f"| simulated | {t['simulated_examples_per_s']['median']:.1f} |",
            f"| speedup (median of per-trial ratios; IQR; min - max) | {Spread(**t['speedup']).text()} |",
        ]
    if "replays" in results:
        r = results["replays"]
        lines += ["", f"| test (seed {r['seed']}) | replays | distinct digests |", "|---|---|---|"]
        lines += [f"| {test} | {row['runs']} | {row['distinct_digests']} |" for test, row in r["tests"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--replay-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mutant", default=None, help=argparse.SUPPRESS)
    parser.add_argument("tests", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay_child:
        return _replay_child(args.replay_child, args.seed, args.mutant, args.tests)
    results: dict[str, Any] = {}
    if args.trials:
        results["throughput"] = throughput(args.trials, args.seconds)
    if args.replays:
        results["replays"] = replays(args.replays, args.seed)
    if args.out is not None:  # first: the numbers outlast a failure to print them
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "simulation.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(markdown(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
