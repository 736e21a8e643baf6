"""A whole pytest run's profile: wall time, CPU time, how wait-bound it was, server starts, time
per suite, the critical path and examples per hour of each stateful suite.

    python -m benchmarks.run_profile --label main-job --out profile.json -- --prism-backend=all
    python -m benchmarks.run_profile --label test-command --trials 2 -- tests prism_testkit/suites \\
        --prism-backend=all -n 4
    python -m benchmarks.run compare before/profile.json after/profile.json   # exit 1 on a regression

Everything after ``--`` is pytest's command line, run as ``python -m pytest -p
benchmarks.profile_plugin ...`` from the current directory. With ``--trials N`` the run is
repeated and each figure is the median with its min - max (a whole run is too long to
interleave with another; compare two files made on the same idle machine).

- **wait-bound**: wall / (CPU / cores). 1.0 means every core was busy all along; the goal is
  at most 1.3. CPU is the user + system time of every process of the run (workers, the servers
  they started, and processes orphaned on the way), from ``getrusage(RUSAGE_CHILDREN)``.
- **critical path**: the worker that finished last, and its tests end to end: the chain one
  worker had to run in order. Beside it the lower bound no scheduling beats: the longest
  single test, or the total test time over the workers, whichever is larger.
- **server starts**: every server process spawned, restarts included.
- **CPU by process kind** (user and system apart): pytest's controller and workers, each server
  kind, the postgres tools (initdb, pg_ctl, pg_basebackup, pg_rewind...), the lazy filesystem's
  daemon, the load burners, ``ip`` / netns helpers and the rest, from ``/proc`` samples of every
  process of the run (:mod:`benchmarks.process_cpu`), with the unattributed remainder (processes
  shorter than a sample, CPU after a process's last sample). The profiler is the run's child
  subreaper, so the total also holds the CPU of processes orphaned during the run (reparented to
  init before, their CPU never reached ``RUSAGE_CHILDREN``).

One table of several profiles, a column each (before / after a lever)::

    python -m benchmarks.run_profile table before.json after.json --names before,after
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

from benchmarks.process_cpu import UNATTRIBUTED, Sampler, become_subreaper, by_kind
from benchmarks.stats import summarize

GOAL_WAIT_BOUND = 1.3


def _children_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def _wait(process: subprocess.Popen[bytes]) -> tuple[int, float, float]:
    """Wait for pytest (a Ctrl-C is pytest's to handle: the first one is waited through); its
    exit code and the user and system time of its own tree (what it and its descendants reaped)."""
    interrupted = False
    while True:
        try:
            _, status, usage = os.wait4(process.pid, 0)
            break
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime, usage.ru_stime


def run_once(pytest_args: Sequence[str], interval: float = 0.2) -> dict[str, Any]:
    """Run pytest once with the recording plugin, sampling its processes' CPU by kind; its raw
    records and totals."""
    subreaper = become_subreaper()
    with tempfile.TemporaryDirectory(prefix="prism-profile-") as folder:
        # not a PRISM_* name: those shape a run, so its replay lines would carry this one
        env = {**os.environ, "RUN_PROFILE_DIR": folder}
        (user_before, system_before), started = _children_cpu(), time.monotonic()
        command = [sys.executable, "-m", "pytest", "-p", "benchmarks.profile_plugin", *pytest_args]
        process = subprocess.Popen(command, env=env)
        sampler = Sampler(interval, baseline=(user_before, system_before))
        sampler.controller = process.pid
        sampler.start()
        try:
            code, tree_user, tree_system = _wait(process)
            wall = time.monotonic() - started
            sampler.wait_for_descendants(timeout=10.0)
        finally:
            sampler.stop()
        user_after, system_after = _children_cpu()
        left = sampler.left_running()  # their CPU is not in getrusage: it counts as sampled
        user = user_after - user_before + sum(p["user"] + p["reaped_user"] for p in left)
        system = system_after - system_before + sum(p["system"] + p["reaped_system"] for p in left)
        records = [json.loads(line) for path in Path(folder).glob("*.jsonl") for line in path.read_text().splitlines()]
    return {
        "exit_code": code,
        "wall": wall,
        "cpu": user + system,
        "cpu_user": user,
        "cpu_system": system,
        "cpu_pytest_tree": tree_user + tree_system,
        "cpu_orphans": sampler.orphan_user + sampler.orphan_system,
        "orphans_reaped": sampler.orphans_reaped,
        "subreaper": subreaper,
        "samples": sampler.scans,
        "sample_interval": interval,
        "sampler_cpu": sampler.own_cpu,
        "left_running": left,
        "unattributed_by_reaper": sampler.unattributed(),
        "processes": sampler.records(),
        "records": records,
    }


RECORD_KEYS = ("kind", "nodeid", "worker", "start", "stop", "cpu", "children_cpu")  # of a test, kept


def analyse(run: dict[str, Any], cores: int) -> dict[str, Any]:
    """Figures of one run from its records."""
    tests = [r for r in run["records"] if r["kind"] == "test"]
    starts = [r for r in run["records"] if r["kind"] == "server_start"]
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for test in tests:
        by_worker[test["worker"]].append(test)
    suites: dict[str, dict[str, float]] = defaultdict(lambda: {"tests": 0, "seconds": 0.0, "examples": 0, "cpu": 0.0})
    # per backend, the rows holding it (a row of two backends counts for each)
    backends: dict[str, dict[str, float]] = defaultdict(lambda: {"tests": 0, "seconds": 0.0, "cpu": 0.0})
    for test in tests:
        seconds, cpu = test["stop"] - test["start"], test.get("cpu", 0.0)
        row = suites[test["suite"] or "(outside suites)"]
        row["tests"] += 1
        row["seconds"] += seconds
        row["examples"] += test["examples"]
        row["cpu"] += cpu
        for name in test.get("backends", ()):
            held = backends[name]
            held["tests"] += 1
            held["seconds"] += seconds
            held["cpu"] += cpu
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
    outcomes: dict[str, int] = defaultdict(int)
    for test in tests:
        outcomes[test.get("outcome", "unknown")] += 1
    kinds: dict[str, Any] = {}
    if "processes" in run:
        kinds = by_kind(run["processes"], run["cpu_user"], run["cpu_system"])
        kinds["processes_seen"] = len(run["processes"])
        for field in ("cpu_pytest_tree", "cpu_orphans", "orphans_reaped", "subreaper", "samples", "sampler_cpu"):
            kinds[field] = run[field]
        kinds["sample_interval"] = run["sample_interval"]
        kinds["left_running"] = [{k: p[k] for k in ("pid", "kind", "comm")} for p in run["left_running"]]
        kinds["unattributed_by_reaper"] = run.get("unattributed_by_reaper", {})
    split = {"cpu_user": run["cpu_user"], "cpu_system": run["cpu_system"]} if "cpu_user" in run else {}
    return {
        "exit_code": run["exit_code"],
        "wall": run["wall"],
        "cpu": run["cpu"],
        **split,
        "cores": cores,
        "wait_bound": run["wall"] / (run["cpu"] / cores) if run["cpu"] else float("inf"),
        "workers": len(by_worker),
        "tests": len(tests),
        "outcomes": dict(sorted(outcomes.items())),
        **kinds,
        "server_starts": len(starts),
        "server_starts_by_name": dict(sorted(server_starts.items())),
        "server_starts_by_test": dict(sorted(starts_by_test.items(), key=lambda item: -item[1])[:15]),
        "suites": {name: dict(row) for name, row in sorted(suites.items())},
        "backends": {name: dict(row) for name, row in sorted(backends.items())},
        "files": {name: round(seconds, 1) for name, seconds in sorted(files.items(), key=lambda item: -item[1])[:25]},
        "critical_path": critical,
        # each test's worker, start, stop and CPU: what benchmarks.time_left replays the run from
        "records": [{key: test[key] for key in RECORD_KEYS if key in test} for test in tests],
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


def _kind_cpu(run: dict[str, Any], kind: str) -> float:
    row = run.get("cpu_by_kind", {}).get(kind)
    return float(row["user"] + row["system"]) if row else 0.0


def summarise(label: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The results file: per-trial figures, and rows ``compare`` reads (sections ``run_profile``,
    costs where higher is worse, and ``run_profile_rates``, examples per hour)."""
    rows = [
        _cost_row(f"{label} wall", [r["wall"] for r in runs], "s"),
        _cost_row(f"{label} cpu", [r["cpu"] for r in runs], "s"),
        _cost_row(f"{label} wait-bound", [r["wait_bound"] for r in runs], "x"),
        _cost_row(f"{label} server starts", [r["server_starts"] for r in runs], "starts"),
    ]
    if all("cpu_user" in r for r in runs):
        rows.append(_cost_row(f"{label} cpu user", [r["cpu_user"] for r in runs], "s"))
        rows.append(_cost_row(f"{label} cpu system", [r["cpu_system"] for r in runs], "s"))
    if all("cpu_by_kind" in r for r in runs):
        for kind in sorted({kind for r in runs for kind in r["cpu_by_kind"]}):
            per_trial = [_kind_cpu(r, kind) for r in runs]
            rows.append(_cost_row(f"{label} cpu {kind}", per_trial, "s"))
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
    lines += kind_lines(last)
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
    lines += [
        "",
        "Worker CPU: each test's CPU in the worker process that ran it (its threads; not the servers'),",
        "which other work on the machine does not inflate as it does the seconds.",
        "",
        "| suite | tests | seconds | worker CPU s | examples |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in sorted(last["suites"].items(), key=lambda item: -item[1]["seconds"]):
        cpu = row.get("cpu", 0.0)  # profiles written before the worker's CPU was recorded have none
        lines.append(f"| {name} | {row['tests']:.0f} | {row['seconds']:.0f} | {cpu:.0f} | {row['examples']:.0f} |")
    lines += ["", "| rows holding backend | tests | seconds | worker CPU s |", "|---|---:|---:|---:|"]
    for name, row in sorted(last.get("backends", {}).items(), key=lambda item: -item[1]["seconds"]):
        lines.append(f"| {name} | {row['tests']:.0f} | {row['seconds']:.0f} | {row['cpu']:.0f} |")
    lines += ["", "| files that take the most test time | s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in last.get("files", {}).items()]
    lines += ["", "Server starts: " + ", ".join(f"{n} {c}" for n, c in last["server_starts_by_name"].items())]
    lines += ["", "| tests that start the most servers | starts |", "|---|---:|"]
    lines += [f"| {test} | {count} |" for test, count in last.get("server_starts_by_test", {}).items()]
    return "\n".join(lines) + "\n"


def kind_lines(run: dict[str, Any]) -> list[str]:
    """The by-kind CPU table of one trial (nothing for a file made before it was measured)."""
    kinds = run.get("cpu_by_kind")
    if not kinds:
        return []
    total = run["cpu"] or 1.0
    lines = [
        "",
        f"CPU by process kind (user {run['cpu_user']:.0f} s + system {run['cpu_system']:.0f} s = "
        f"{run['cpu']:.0f} s; {run['processes_seen']} processes seen in {run['samples']} samples every "
        f"{run['sample_interval']} s):",
        "",
        "| kind | user s | system s | total s | share | processes seen |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, row in kinds.items():
        both = row["user"] + row["system"]
        seen = str(row["processes"]) if kind != UNATTRIBUTED else "-"
        lines.append(
            f"| {kind} | {row['user']:.1f} | {row['system']:.1f} | {both:.1f} | {100 * both / total:.1f} % | {seen} |"
        )
    if run.get("other_by_comm"):
        lines += ["", "other, by name: " + ", ".join(f"{c} {s:.1f} s" for c, s in run["other_by_comm"].items())]
    missed = run["cpu"] - run["cpu_pytest_tree"]
    orphans = ", ".join(f"{kind} {row['orphans']}" for kind, row in kinds.items() if row.get("orphans"))
    reapers = run.get("unattributed_by_reaper") or {}
    by_reaper = ", ".join(f"{kind} {row['user'] + row['system']:.1f} s" for kind, row in reapers.items())
    lines += [
        "",
        "Unattributed: CPU of processes shorter than a sample and after each process's last sample"
        + (f"; by the kind of the process that reaped it: {by_reaper}. " if by_reaper else ". ")
        + f"Orphans reaped by the profiler (reparented to it, not to init): {run['orphans_reaped']} "
        f"({orphans or 'none'}), {run['cpu_orphans']:.1f} s of CPU; pytest's own tree reaped "
        f"{run['cpu_pytest_tree']:.1f} s, so a total without the subreaper would have missed {missed:.1f} s. "
        f"The sampler itself used {run['sampler_cpu']:.1f} s (not in the total).",
    ]
    if run.get("left_running"):
        left = ", ".join(f"{p['kind']} ({p['comm']}, pid {p['pid']})" for p in run["left_running"])
        lines.append(f"Still running 10 s after pytest ended (their sampled CPU is in the total): {left}.")
    return lines


def _median(values: Sequence[float]) -> float:
    return summarize(values).median


def table_column(result: dict[str, Any]) -> dict[str, str]:
    """One profile's figures for :func:`table` (medians over its trials), formatted."""
    trials = result["trials"]
    cores = result.get("cores") or 1

    def seconds(values: Sequence[float]) -> str:
        return f"{_figure(_median(values))} s"

    column = {
        "trials": str(len(trials)),
        "tests": f"{_median([t['tests'] for t in trials]):,.0f}",
        "exit code": ", ".join(str(t["exit_code"]) for t in trials),
        "wall": seconds([t["wall"] for t in trials]),
        "CPU": seconds([t["cpu"] for t in trials]),
        "wall / (CPU / cores)": f"{_median([t['wait_bound'] for t in trials]):.2f} ({cores} cores)",
        "workers": f"{_median([t['workers'] for t in trials]):.0f}",
        "server starts": f"{_median([t['server_starts'] for t in trials]):,.0f}",
    }
    if all("cpu_user" in t for t in trials):
        column["CPU user"] = seconds([t["cpu_user"] for t in trials])
        column["CPU system"] = seconds([t["cpu_system"] for t in trials])
    outcomes = sorted({o for t in trials for o in t.get("outcomes", {})})
    for outcome in outcomes:
        column[f"tests {outcome}"] = f"{_median([t.get('outcomes', {}).get(outcome, 0) for t in trials]):,.0f}"
    if all(t.get("critical_path") for t in trials):
        column["critical path"] = seconds([t["critical_path"]["span_seconds"] for t in trials])
    if all("cpu_by_kind" in t for t in trials):
        for kind in {kind for t in trials for kind in t["cpu_by_kind"]}:
            user = _median([t["cpu_by_kind"].get(kind, {}).get("user", 0.0) for t in trials])
            system = _median([t["cpu_by_kind"].get(kind, {}).get("system", 0.0) for t in trials])
            column[f"CPU {kind}"] = f"{_figure(user + system)} s ({_figure(user)} + {_figure(system)})"
        for reaper in {r for t in trials for r in t.get("unattributed_by_reaper", {})}:
            rows = [t.get("unattributed_by_reaper", {}).get(reaper, {}) for t in trials]
            both = _median([row.get("user", 0.0) + row.get("system", 0.0) for row in rows])
            column[f"{_REAPED_BY}{reaper}"] = f"{_figure(both)} s"
        column["CPU missed without the subreaper"] = seconds([t["cpu"] - t["cpu_pytest_tree"] for t in trials])
    return column


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"


_REAPED_BY = "CPU unattributed, reaped by "
_TABLE_ORDER = [
    "trials", "tests", "tests passed", "tests failed", "tests skipped", "tests unknown", "exit code", "workers",
    "wall", "CPU", "CPU user", "CPU system", "wall / (CPU / cores)", "critical path", "server starts",
]  # fmt: skip


def table(results: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> str:
    """One markdown table, a column per profile (its label, or ``names``): the figures of the
    README's before / after of each lever. CPU by kind reads "total (user + system)"."""
    columns = [table_column(r) for r in results]
    heads = list(names) if names is not None else [r["label"] for r in results]
    rows = [name for name in _TABLE_ORDER if any(name in c for c in columns)]
    kinds = {name for c in columns for name in c if name not in rows}

    def weight(name: str) -> tuple[int, float, str]:  # the kinds by their largest CPU, the remainders last
        group = 1 if name == f"CPU {UNATTRIBUTED}" else 2 if name.startswith(_REAPED_BY) else 0
        group = 3 if name == "CPU missed without the subreaper" else group
        figures = [float(c[name].split(" s")[0].replace(",", "")) for c in columns if name in c]
        return group, -max(figures, default=0.0), name

    rows += sorted(kinds, key=weight)
    lines = ["| | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    lines += [f"| {row} | " + " | ".join(c.get(row, "-") for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run_profile table",
        description="One markdown table of run profiles, a column per file (before / after a lever).",
    )
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--names", help="comma-separated column heads (default: each profile's label)")
    args = parser.parse_args(argv)
    results = [json.loads(path.read_text()) for path in args.profiles]
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if names is not None and len(names) != len(results):
        parser.error("--names needs one name per profile")
    print(table(results, names), end="")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["table"]:
        return table_main(argv[1:])
    split = argv.index("--") if "--" in argv else len(argv)
    own, pytest_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description="Profile a whole pytest run (see the module docstring).")
    parser.add_argument("--label", default="run")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples of the processes")
    args = parser.parse_args(own)
    cores = os.cpu_count() or 1
    runs = [analyse(run_once(pytest_args, args.interval), cores) for _ in range(args.trials)]
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
