"""What the project's proofs cost (issue 49): the mutant tests of ``tests/test_mutants.py`` run
from two trees of the project's tests, interleaved (A, B, B, A ...), wall and CPU time each.

    python -m benchmarks.proofs --before 37c3b88 --trials 3

``--before REV`` is the revision whose ``tests/`` and ``conftest.py`` are the baseline: they are
extracted (``git archive``) into a temporary directory and run from there, against the same
installed harness and suites, so the two sides differ in the tests' own way of running a
proof alone. "After" is the working checkout. Each side is one ``pytest`` process over the
sample of mutants (``--mutants``, a comma list of their ids, from any of the file's tables),
serial; its CPU is the user + system time of that process and every process it waited for (the
mutants' pytest processes, their servers). A fresh side's sandboxes start without
Hypothesis's caches, as a run's do.

Nothing asserts a figure: the medians and spreads are printed (and written as JSON with
``--json``) for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import summarize, trial_order

ROOT = Path(__file__).resolve().parent.parent
# One mutant per kind of proof: a pattern suite's single test (-k), a whole short suite, a
# contract suite, a stateful suite's machine on memstore and on a durable backend.
SAMPLE = (
    "wal_lag_from_newest",
    "cdc_ignores_table_filter",
    "es_clock_not_clamped",
    "tiered_put_ignores_max_value_size",
    "producer_ignores_batch_interval",
    "consumer_saves_before_handling",
    "kv_delete_looks_before_it_deletes",
    "lifecycle_second_stop_runs_again",
    "multicast_registry_ne_skips_absent",
    "relay_marks_published_first",
)


def extract(revision: str, into: Path) -> Path:
    """The ``tests/``, ``conftest.py`` and ``pyproject.toml`` of ``revision``, under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "tests", "conftest.py", "pyproject.toml"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_side(tree: Path, mutants: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, exit code) of one pytest process over ``mutants`` run from ``tree``."""
    selection = " or ".join(mutants)
    argv = [
        *(sys.executable, "-m", "pytest", "tests/test_mutants.py", "-p", "no:xdist", "-p", "no:cacheprovider"),
        *("-q", "-k", selection),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:])
    return wall, cpu, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the revision whose tests/ are the baseline")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--mutants", default=",".join(SAMPLE), help="comma list of mutant ids")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    mutants = [name for name in args.mutants.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="prism-proofs-") as tmp:
        trees = {"before": extract(args.before, Path(tmp)), "after": ROOT}
        for tree in trees.values():  # the outer process's own caches and bytecode, warmed alike
            subprocess.run(
                [sys.executable, "-m", "pytest", "--co", "-q", "tests/test_mutants.py"], cwd=tree, capture_output=True
            )
        runs: dict[str, list[tuple[float, float, int]]] = {side: [] for side in trees}
        for trial in range(args.trials):
            for side in trial_order(list(trees), trial):
                runs[side].append(run_side(trees[side], mutants))
                wall, cpu, code = runs[side][-1]
                print(f"trial {trial + 1} {side}: wall {wall:.1f} s, CPU {cpu:.1f} s, exit {code}", flush=True)
    figures = {
        side: {
            "wall_s": summarize([w for w, _, _ in rows]).__dict__,
            "cpu_s": summarize([c for _, c, _ in rows]).__dict__,
            "exit_codes": [code for _, _, code in rows],
        }
        for side, rows in runs.items()
    }
    pairs = list(zip(runs["after"], runs["before"], strict=True))
    figures["after/before"] = {
        "wall": summarize([a[0] / b[0] for a, b in pairs]).__dict__,
        "cpu": summarize([a[1] / b[1] for a, b in pairs]).__dict__,
    }
    for side in trees:
        walls, cpus = summarize([w for w, _, _ in runs[side]]), summarize([c for _, c, _ in runs[side]])
        print(f"{side}: {len(mutants)} mutants, wall {walls.text('.1f', ' s')}, CPU {cpus.text('.1f', ' s')}")
    wall_ratio = summarize([a[0] / b[0] for a, b in pairs])
    cpu_ratio = summarize([a[1] / b[1] for a, b in pairs])
    print(f"after / before: wall {wall_ratio.text()}, CPU {cpu_ratio.text()}")
    if args.json:
        args.json.write_text(json.dumps({"mutants": mutants, "trials": args.trials, **figures}, indent=2))
    return 0 if all(code == 0 for rows in runs.values() for _, _, code in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
