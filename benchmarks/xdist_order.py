"""What dealing the tests heaviest first would make of a recorded run (issue 65): the run's
tests laid onto its workers as xdist deals them, in xdist's order (the exclusive backends'
scopes first, then collection order) and heaviest first by recorded durations
(:func:`prism_testkit.registry.xdist_scheduler.heaviest_first`), each worker taking the next
unit when free (:func:`prism_testkit.report.progress.time_left`, the progress line's own model).

    python -m benchmarks.xdist_order REPORT.json COLLECTED.txt --workers 6 [--recorded OTHER.json]

``COLLECTED.txt``: the run's node ids in collection order (``pytest --collect-only -q`` of the
same command). Each test takes what ``REPORT.json`` measured; ``--recorded`` orders by another
run's report (what a committed durations file gives: one run's figures ordering the next's),
else by the same report's (the best case). A model, not a measurement: a test's measured
seconds include the contention of the run it was measured in, which another order changes; the
real run is the figure. Nothing here is used by ``tests/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.registry.shards import read_durations
from prism_testkit.registry.xdist_scheduler import EXCLUSIVE_SCOPE, exclusive_backend, heaviest_first
from prism_testkit.report.progress import time_left


def units_of(collected: list[str]) -> dict[str, list[str]]:
    """The scopes the plugin's scheduler makes of ``collected``: each test alone, an exclusive
    backend's rows together; in xdist's order (its scopes by size, largest first, stable)."""
    registry = build_registry(make_plugin_manager())
    names = [spec.name for spec in registry]
    exclusive = {spec.name for spec in registry if spec.exclusive}
    units: dict[str, list[str]] = {}
    for nodeid in collected:
        backend = exclusive_backend(nodeid, names, exclusive)
        units.setdefault(nodeid if backend is None else f"{EXCLUSIVE_SCOPE}:{backend}", []).append(nodeid)
    return dict(sorted(units.items(), key=lambda unit: -len(unit[1])))


def makespan(units: dict[str, list[str]], order: list[str], seconds: dict[str, float], workers: int) -> float:
    """Seconds until the last unit ends, each unit to the first worker free, in ``order``."""
    return time_left([], [sum(seconds.get(test, 0.0) for test in units[name]) for name in order], workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("collected", type=Path)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--recorded", type=Path, help="order by this run's durations (default: the report's)")
    args = parser.parse_args()
    seconds = read_durations(args.report)
    recorded = read_durations(args.recorded) if args.recorded else seconds
    collected = [line.strip() for line in args.collected.read_text().splitlines() if "::" in line]
    units = units_of(collected)
    missing = sum(1 for test in collected if test not in seconds)
    total = sum(seconds.get(test, 0.0) for test in collected)
    print(f"{len(collected)} tests ({missing} not in the report), {len(units)} units, {total:.0f} worker-seconds")
    print(
        f"floor on {args.workers} workers: {total / args.workers:.0f} s; longest unit: "
        f"{max(sum(seconds.get(t, 0.0) for t in tests) for tests in units.values()):.0f} s"
    )
    for label, order in (("xdist's order", list(units)), ("heaviest first", heaviest_first(units, recorded))):
        print(f"{label}: {makespan(units, order, seconds, args.workers):.0f} s")


if __name__ == "__main__":
    main()
