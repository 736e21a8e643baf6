"""The depth curve (issue 49): for each stateful suite, the share of seeded bugs it catches at
each depth (examples per row: 1, 2, 4, 8, 12), over several seeds, and the CPU a clean run of
the stateful suites costs at each depth.

    python -m benchmarks.depth_curve run --batch registered --seeds 1,2,3 --jobs 2 --out DIR
    python -m benchmarks.depth_curve run --batch seeded --seeds 1,2,3 --jobs 2 --out DIR
    python -m benchmarks.depth_curve run --batch clean --seeds 1 --jobs 2 --out DIR
    python -m benchmarks.depth_curve table DIR [--plot FILE.png]

Seeded bugs: the project's registered mutants that a stateful suite catches
(``tests/test_mutants.py``, suite ``stateful_*``; run on the backends it names, all embedded),
and the batch in ``benchmarks/depth_mutants/`` seeded for this measurement (bugs that
need a longer or luckier history: a loss after the Nth acknowledgement, a write lost at a
random step...). Each (bug, seed) is one pytest process per budget, with the mutant loaded
and the ``prism-depth-curve`` profile (``benchmarks/_depth_probe.py``: no shrinking, seeded by
``--hypothesis-seed``):

* budget 8: the probe writes the index of each search's first failing example; depths 1, 2, 4
  and 8 caught the bug when that index is at most the depth (a search's first examples do not
  depend on its budget below 10; see the probe's docstring);
* budget 12: a search of its own (Hypothesis's generation differs from 10 examples on).

A bug counts as caught when pytest failed and its output holds the bug's evidence (the line
``tests/test_mutants.py`` expects), as the mutant tests judge it. ``clean`` runs every stateful
suite on the embedded backends without a mutant at each depth, and reports its CPU (user +
system of the pytest process and its children, from ``wait4``). Nothing asserts; the results
are JSON lines in DIR and ``table`` prints them as Markdown.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPTHS = (1, 2, 4, 8, 12)
DERANDOMIZED = 0  # the "seed" of a run under the derandomised prism-mutant profile (the registered mutant tests')
PROBED = 8  # the budget whose first-failure index answers for 1, 2, 4 and 8
STATEFUL = (
    "stateful_cdc",
    "stateful_claim_check",
    "stateful_consumer",
    "stateful_event_sourcing",
    "stateful_log",
    "stateful_multicast_registry",
    "stateful_outbox",
    "stateful_producer",
    "stateful_queue",
    "stateful_tiered_storage",
    "stateful_wal",
)


@dataclass(frozen=True)
class Bug:
    name: str  # the plugin module's name
    module: str  # its import path (-p)
    suite: str
    backends: str
    evidence: str  # an fnmatch pattern one output line must match
    only: str | None  # -k, where the registered mutant names one test
    batch: str


def registered() -> list[Bug]:
    """The registered mutants a stateful suite catches (read from tests/test_mutants.py)."""
    sys.path.insert(0, str(ROOT))
    mutants = importlib.import_module("tests.test_mutants")
    only: dict[str, str] = getattr(mutants, "ONLY", {})
    return [
        Bug(name, f"tests.mutants.{name}", suite, backends, evidence, only.get(name), "registered")
        for name, suite, backends, evidence in mutants.MUTANTS
        if suite.startswith("stateful_")
    ]


def seeded() -> list[Bug]:
    """The batch seeded for this measurement: each module of benchmarks/depth_mutants names its
    suite, backends and evidence."""
    found = []
    for path in sorted((ROOT / "benchmarks" / "depth_mutants").glob("[!_]*.py")):
        module = importlib.import_module(f"benchmarks.depth_mutants.{path.stem}")
        found.append(
            Bug(
                path.stem,
                module.__name__,
                module.SUITE,
                module.BACKENDS,
                module.EVIDENCE,
                getattr(module, "ONLY", None),
                "seeded",
            )
        )
    return found


def _env(tmp: Path, probe: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "CI"))}
    env["PYTHONPATH"] = str(ROOT)  # the mutants are plugins of the tests and benchmarks packages
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp / "hypothesis")
    env["TMPDIR"] = str(tmp)
    env["PRISM_DEPTH_PROBE"] = str(probe)
    return env


def pytest_run(args: Sequence[str], depth: int, seed: int) -> dict[str, Any]:
    """One pytest process at ``depth`` with ``seed`` (:data:`DERANDOMIZED`: the ``prism-mutant``
    profile's own search, as ``tests/test_mutants.py`` runs it): exit, output, CPU, probe lines."""
    with tempfile.TemporaryDirectory(prefix="depth-curve-") as name:
        tmp = Path(name)
        probe, out = tmp / "probe.jsonl", tmp / "out.txt"
        argv = [sys.executable, "-m", "pytest", "-q", "--pyargs", "prism_testkit.suites"]
        argv += ["-p", "benchmarks._depth_probe"]
        if seed == DERANDOMIZED:
            argv += [*args, f"--prism-depth={depth}", "--hypothesis-profile=prism-mutant"]
        else:
            argv += [
                *args,
                f"--prism-depth={depth}",
                f"--hypothesis-seed={seed}",
                "--hypothesis-profile=prism-depth-curve",
            ]
        argv += ["-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist"]
        started = time.monotonic()
        with out.open("w") as sink:
            process = subprocess.Popen(argv, cwd=tmp, env=_env(tmp, probe), stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        lines = probe.read_text().splitlines() if probe.exists() else []
        return {
            "exit": process.returncode,
            "output": out.read_text(errors="replace"),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "wall_s": round(wall, 2),
            "searches": [json.loads(line) for line in lines],
        }


def bug_args(bug: Bug) -> list[str]:
    args = ["-p", bug.module, f"--prism-backend={bug.backends}", f"--prism-pattern={bug.suite}"]
    return [*args, "-k", bug.only] if bug.only else args


def judge(bug: Bug, depth: int, seed: int) -> dict[str, Any]:
    done = pytest_run(bug_args(bug), depth, seed)
    caught = done["exit"] == 1 and any(fnmatch.fnmatch(line, bug.evidence) for line in done["output"].splitlines())
    firsts = [s["first_failure"] for s in done["searches"] if s["first_failure"] is not None]
    return {
        "bug": bug.name,
        "suite": bug.suite,
        "batch": bug.batch,
        "backends": bug.backends,
        "seed": seed,
        "budget": depth,
        "exit": done["exit"],
        "caught": caught,
        "first_failure": min(firsts) if firsts else None,
        "searches": done["searches"],
        "cpu_s": done["cpu_s"],
        "wall_s": done["wall_s"],
        "tail": "" if caught else done["output"][-1500:],
    }


def clean_with_cpu(depth: int, seed: int) -> dict[str, Any]:
    args = ["--prism-backend=embedded", f"--prism-pattern={','.join(STATEFUL)}"]
    done = pytest_run(args, depth, seed)
    summary = next((line for line in reversed(done["output"].splitlines()) if " in " in line), "")
    examples = sum(s["valid"] for s in done["searches"])
    return {
        "clean": True,
        "seed": seed,
        "budget": depth,
        "exit": done["exit"],
        "summary": summary.strip("= "),
        "cpu_s": done["cpu_s"],
        "wall_s": done["wall_s"],
        "searches": len(done["searches"]),
        "examples": examples,
    }


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs: list[tuple[Any, ...]] = []
    if args.batch == "clean":
        jobs = [(clean_with_cpu, depth, seed) for seed in seeds for depth in args.depths]
    else:
        bugs = registered() if args.batch == "registered" else seeded()
        if args.only:
            bugs = [b for b in bugs if b.name in args.only.split(",")]
        jobs = [(judge, bug, budget, seed) for seed in seeds for bug in bugs for budget in args.budgets]
    target = out / f"{args.batch}.jsonl"
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, target.open("a") as sink:
        for result in pool.map(lambda job: job[0](*job[1:]), jobs):
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            shown = {k: v for k, v in result.items() if k not in ("searches", "tail")}
            print(json.dumps(shown), flush=True)


def kills(result: dict[str, Any], depth: int) -> bool:
    """Whether ``result`` (a run of budget 8 or 12) says the bug is caught at ``depth``."""
    if not result["caught"]:
        return False
    if result["budget"] == depth:
        return True
    first = result["first_failure"]
    return result["budget"] == PROBED and depth < PROBED and first is not None and first <= depth


def load(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


def curve(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """suite -> bugs, seeds, and per depth the mean number of bugs caught per seed."""
    by_suite: dict[str, dict[tuple[str, int], dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for result in results:
        if result.get("clean"):
            continue
        by_suite[result["suite"]][(result["bug"], result["seed"])][result["budget"]] = result
    table: dict[str, dict[str, Any]] = {}
    for suite, runs in sorted(by_suite.items()):
        seeds = sorted({seed for _, seed in runs})
        bugs = sorted({bug for bug, _ in runs})
        caught: dict[int, float] = {}
        per_bug: dict[str, dict[int, int]] = {bug: {} for bug in bugs}
        for depth in DEPTHS:
            budget = 12 if depth == 12 else PROBED
            hits = {key: kills(budgets[budget], depth) for key, budgets in runs.items() if budget in budgets}
            caught[depth] = sum(hits.values()) / len(seeds)
            for (bug, _), hit in hits.items():
                per_bug[bug][depth] = per_bug[bug].get(depth, 0) + int(hit)
        table[suite] = {"bugs": bugs, "seeds": seeds, "caught": caught, "per_bug": per_bug}
    return table


def knee(caught: dict[int, float]) -> int:
    """The smallest depth whose bugs caught (mean per seed) are within one of depth 12's."""
    return next(depth for depth in DEPTHS if caught[depth] >= caught[12] - 1)


def markdown(folder: Path) -> str:
    results = load(folder)
    table = curve(results)
    lines = ["| suite | bugs | " + " | ".join(f"depth {d}" for d in DEPTHS) + " | knee |"]
    lines.append("|---|---:|" + "---:|" * len(DEPTHS) + "---:|")
    totals = {d: 0.0 for d in DEPTHS}
    count = 0
    for suite, row in table.items():
        cells = [f"{row['caught'][d]:.2f}" for d in DEPTHS]
        lines.append(f"| {suite} | {len(row['bugs'])} | " + " | ".join(cells) + f" | {knee(row['caught'])} |")
        count += len(row["bugs"])
        for d in DEPTHS:
            totals[d] += row["caught"][d]
    if table:
        cells = [f"{totals[d]:.2f}" for d in DEPTHS]
        lines.append(f"| **all** | {count} | " + " | ".join(cells) + f" | {knee(totals)} |")
    lines += ["", "| bug | suite | batch | " + " | ".join(f"d{d}" for d in DEPTHS) + " |"]
    lines.append("|---|---|---|" + "---:|" * len(DEPTHS))
    batches = {r["bug"]: r["batch"] for r in results if not r.get("clean")}
    for suite, row in table.items():
        n = len(row["seeds"])
        for bug in row["bugs"]:
            cells = [f"{row['per_bug'][bug].get(d, 0)}/{n}" for d in DEPTHS]
            lines.append(f"| {bug} | {suite} | {batches[bug]} | " + " | ".join(cells) + " |")
    cleans = sorted((r for r in results if r.get("clean") and "cpu_s" in r), key=lambda r: (r["budget"], r["seed"]))
    if cleans:
        lines += ["", "| depth | CPU s | wall s | examples | searches | outcome |", "|---:|---:|---:|---:|---:|---|"]
        for r in cleans:
            lines.append(
                f"| {r['budget']} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['examples']} | {r['searches']} "
                f"| {r['summary']} |"
            )
    return "\n".join(lines)


def plot(folder: Path, target: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    table = curve(load(folder))
    figure, axes = plt.subplots(figsize=(8, 5))
    for suite, row in table.items():
        share = [row["caught"][d] / max(1, len(row["bugs"])) for d in DEPTHS]
        axes.plot(DEPTHS, share, marker="o", label=suite)
    bugs = sum(len(row["bugs"]) for row in table.values())
    overall = [sum(row["caught"][d] for row in table.values()) / max(1, bugs) for d in DEPTHS]
    axes.plot(DEPTHS, overall, color="black", linewidth=3, marker="s", label="all suites")
    axes.set_xlabel("examples per stateful row (depth)")
    axes.set_ylabel("share of seeded bugs caught (mean of seeds)")
    axes.set_xticks(DEPTHS)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(target)
    return f"plot written to {target}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run")
    go.add_argument("--batch", choices=("registered", "seeded", "clean"), required=True)
    go.add_argument("--seeds", default="1,2,3", help=f"comma list; {DERANDOMIZED}: the prism-mutant profile's search")
    go.add_argument("--jobs", type=int, default=2)
    go.add_argument("--only", help="comma list of bug names")
    go.add_argument("--depths", type=lambda s: [int(d) for d in s.split(",")], default=list(DEPTHS))
    go.add_argument(
        "--budgets", type=lambda s: [int(d) for d in s.split(",")], default=[PROBED, 12], help="bugs: budgets to run"
    )
    go.add_argument("--out", required=True)
    show = commands.add_parser("table")
    show.add_argument("folder")
    show.add_argument("--plot")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    else:
        print(markdown(Path(args.folder)))
        if args.plot:
            print(plot(Path(args.folder), Path(args.plot)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
