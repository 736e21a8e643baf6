"""A whole pytest run's profile: wall time, CPU time, how wait-bound it was, server starts, time
per suite, the critical path and examples per hour of each stateful suite.

    python -m benchmarks.run_profile --label main-job --out profile.json -- --prism-backend=all
    python -m benchmarks.run_profile --label test-command --trials 2 -- tests suites --prism-backend=all -n 4
    python -m benchmarks.run compare before/profile.json after/profile.json   # exit 1 on a regression

Everything after ``--`` is pytest's command line, run as ``python -m pytest -p
benchmarks.profile_plugin ...`` from the current directory. With ``--trials N`` the run is
repeated and each figure is the median with its min - max (a whole run is too long to
interleave with another; compare two files made on the same idle machine).

- **wait-bound**: wall / (CPU / cores). 1.0 means every core was busy all along; the goal is
  at most 1.3. CPU is the user + system time of every process the run waited for (workers and
  the servers they started), from ``getrusage(RUSAGE_CHILDREN)``.
- **critical path**: the worker that finished last, and its tests end to end: the chain one
  worker had to run in order. Beside it the lower bound no scheduling beats: the longest
  single test, or the total test time over the workers, whichever is larger.
- **server starts**: every server process spawned, restarts included.
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
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.stats import summarize

GOAL_WAIT_BOUND = 1.3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(pytest_args: Sequence[str]) -> dict[str, Any]:
    """Run pytest once with the recording plugin; its raw records and totals."""
    with tempfile.TemporaryDirectory(prefix="prism-profile-") as folder:
        env = {**os.environ, "PRISM_PROFILE_DIR": folder}
        cpu_before, started = _children_cpu(), time.monotonic()
        command = [sys.executable, "-m", "pytest", "-p", "benchmarks.profile_plugin", *pytest_args]
        code = subprocess.call(command, env=env)
        wall, cpu = time.monotonic() - started, _children_cpu() - cpu_before
        records = [json.loads(line) for path in Path(folder).glob("*.jsonl") for line in path.read_text().splitlines()]
    return {"exit_code": code, "wall": wall, "cpu": cpu, "records": records}


def analyse(run: dict[str, Any], cores: int) -> dict[str, Any]:
    """Figures of one run from its records."""
    tests = [r for r in run["records"] if r["kind"] == "test"]
    starts = [r for r in run["records"] if r["kind"] == "server_start"]
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for test in tests:
        by_worker[test["worker"]].append(test)
    suites: dict[str, dict[str, float]] = defaultdict(lambda: {"tests": 0, "seconds": 0.0, "examples": 0})
    for test in tests:
        row = suites[test["suite"] or "(outside suites)"]
        row["tests"] += 1
        row["seconds"] += test["stop"] - test["start"]
        row["examples"] += test["examples"]
    files: dict[str, float] = defaultdict(float)
    for test in tests:
        files[test["nodeid"].split("::", 1)[0]] += test["stop"] - test["start"]
    durations = sorted(((t["stop"] - t["start"], t["nodeid"]) for t in tests), reverse=True)
    critical: dict[str, Any] = {}
    if tests:
        last = max(by_worker, key=lambda w: max(t["stop"] for t in by_worker[w]))
        chain = by_worker[last]
        total = sum(d for d, _ in durations)
        critical = {
            "worker": last,
            "tests": len(chain),
            "busy_seconds": sum(t["stop"] - t["start"] for t in chain),
            "span_seconds": max(t["stop"] for t in chain) - min(t["start"] for t in tests),
            "lower_bound_seconds": max(durations[0][0], total / len(by_worker)),
            "longest_tests": [{"nodeid": n, "seconds": round(d, 2)} for d, n in durations[:10]],
        }
    server_starts: dict[str, int] = defaultdict(int)
    starts_by_test: dict[str, int] = defaultdict(int)
    for start in starts:
        server_starts[start["name"]] += 1
        starts_by_test[start.get("test") or "(between tests)"] += 1
    return {
        "exit_code": run["exit_code"],
        "wall": run["wall"],
        "cpu": run["cpu"],
        "wait_bound": run["wall"] / (run["cpu"] / cores) if run["cpu"] else float("inf"),
        "workers": len(by_worker),
        "tests": len(tests),
        "server_starts": len(starts),
        "server_starts_by_name": dict(sorted(server_starts.items())),
        "server_starts_by_test": dict(sorted(starts_by_test.items(), key=lambda item: -item[1])[:15]),
        "suites": {name: dict(row) for name, row in sorted(suites.items())},
        "files": {name: round(seconds, 1) for name, seconds in sorted(files.items(), key=lambda item: -item[1])[:25]},
        "critical_path": critical,
    }


def _cost_row(measure: str, values: Sequence[float], unit: str) -> dict[str, Any]:
    s = summarize(values)
    return {
        "measure": measure,
        "cost": s.median,
        "cost_min": s.low,
        "cost_max": s.high,
        "cost_q1": s.q1,
        "cost_q3": s.q3,
        "trials": s.trials,
        "unit": unit,
    }


def _rate_row(measure: str, values: Sequence[float]) -> dict[str, Any]:
    s = summarize(values)
    return {"measure": measure, "rate": s.median, "rate_min": s.low, "rate_max": s.high, "trials": s.trials}


def summarise(label: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The results file: per-trial figures, and rows ``compare`` reads (sections ``run_profile``,
    costs where higher is worse, and ``run_profile_rates``, examples per hour)."""
    rows = [
        _cost_row(f"{label} wall", [r["wall"] for r in runs], "s"),
        _cost_row(f"{label} cpu", [r["cpu"] for r in runs], "s"),
        _cost_row(f"{label} wait-bound", [r["wait_bound"] for r in runs], "x"),
        _cost_row(f"{label} server starts", [r["server_starts"] for r in runs], "starts"),
    ]
    if all(r["critical_path"] for r in runs):
        rows.append(_cost_row(f"{label} critical path", [r["critical_path"]["span_seconds"] for r in runs], "s"))
    rates = []
    stateful = sorted({name for r in runs for name in r["suites"] if name.startswith("stateful")})
    for name in stateful:
        per_hour = [
            3600 * row["examples"] / row["seconds"] for r in runs if (row := r["suites"].get(name)) and row["seconds"]
        ]
        if per_hour:
            rates.append(_rate_row(f"{label} examples/hour {name}", per_hour))
    return {
        "label": label,
        "cores": os.cpu_count(),
        "trials": list(runs),
        "run_profile": rows,
        "run_profile_rates": rates,
    }


def markdown(result: dict[str, Any]) -> str:
    last = result["trials"][-1]
    lines = [f"## Run profile: {result['label']} ({len(result['trials'])} trial(s), {result['cores']} cores)", ""]
    lines += ["| measure | median | min - max |", "|---|---:|---:|"]
    for row in result["run_profile"]:
        spread = f"{row['cost_min']:.1f} - {row['cost_max']:.1f}"
        lines.append(f"| {row['measure']} | {row['cost']:.1f} {row['unit']} | {spread} |")
    for row in result["run_profile_rates"]:
        lines.append(f"| {row['measure']} | {row['rate']:.0f} | {row['rate_min']:.0f} - {row['rate_max']:.0f} |")
    verdict = "CPU-bound" if last["wait_bound"] <= GOAL_WAIT_BOUND else "wait-bound"
    ratio = f"wall / (CPU / cores) = {last['wait_bound']:.2f}, goal <= {GOAL_WAIT_BOUND}"
    lines += ["", f"Last trial: {verdict} ({ratio})."]
    critical = last["critical_path"]
    if critical:
        lines += [
            f"Critical path: worker {critical['worker']}, {critical['tests']} tests, busy "
            f"{critical['busy_seconds']:.0f} s of a {critical['span_seconds']:.0f} s span; no schedule beats "
            f"{critical['lower_bound_seconds']:.0f} s.",
            "",
            "| longest tests | s |",
            "|---|---:|",
            *(f"| {t['nodeid']} | {t['seconds']:.1f} |" for t in critical["longest_tests"]),
        ]
    lines += ["", "| suite | tests | seconds | examples |", "|---|---:|---:|---:|"]
    for name, row in sorted(last["suites"].items(), key=lambda item: -item[1]["seconds"]):
        lines.append(f"| {name} | {row['tests']:.0f} | {row['seconds']:.0f} | {row['examples']:.0f} |")
    lines += ["", "| files that take the most test time | s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in last.get("files", {}).items()]
    lines += ["", "Server starts: " + ", ".join(f"{n} {c}" for n, c in last["server_starts_by_name"].items())]
    lines += ["", "| tests that start the most servers | starts |", "|---|---:|"]
    lines += [f"| {test} | {count} |" for test, count in last.get("server_starts_by_test", {}).items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    own, pytest_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description="Profile a whole pytest run (see the module docstring).")
    parser.add_argument("--label", default="run")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(own)
    cores = os.cpu_count() or 1
    runs = [analyse(run_once(pytest_args), cores) for _ in range(args.trials)]
    result = summarise(args.label, runs)
    text = markdown(result)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(text)
    return int(max(run["exit_code"] for run in runs))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
