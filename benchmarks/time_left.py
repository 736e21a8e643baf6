"""Replay a real run through the progress line's time left: how far off each line was, and why.

``tests/test_progress.py`` replays synthetic runs; a real run differs in ways a synthetic one
cannot show (how xdist really dealt the tests, how a test's time here differs from its record).
This replays the tests a :mod:`benchmarks.run_profile` run recorded (each test's worker, start
and stop) through :class:`prism_testkit.report.progress.Progress`, as the controller heard them,
and at each line asks it for the time left, twice:

- **as the run said it**: each test weighed by the durations the run was given
  (``--durations``, e.g. ``tests/durations.json.gz``), scaled by the run's pace;
- **told the truth**: each test weighed by what it took in this very run. What error is left
  here is the model's (how it lays the tests onto the workers), not the recording's.

The error of a line is (estimate - actual) / actual: negative is short. The scopes are the
scheduler's own (:func:`prism_testkit.registry.xdist_scheduler.exclusive_parts` over the
registered backends). Usage::

    python -m benchmarks.time_left PROFILE.json --durations tests/durations.json.gz --every 60
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prism_testkit.plugin.reporting import Recorded
from prism_testkit.registry.shards import read_durations
from prism_testkit.report.progress import Progress


def records_of(profile: Path) -> list[dict[str, Any]]:
    """The test records of a run_profile results file (its first trial), or of a folder of the
    profile plugin's ``<worker>.jsonl`` files."""
    if profile.is_dir():
        lines = [line for path in sorted(profile.glob("*.jsonl")) for line in path.read_text().splitlines()]
        records = [json.loads(line) for line in lines if line.strip()]
    else:
        records = json.loads(profile.read_text())["trials"][0]["records"]
    return [r for r in records if r.get("kind") == "test"]


def scopes_of(collection: Sequence[str], recorded: Mapping[str, float], workers: int) -> dict[str, str]:
    """The scopes the project's scheduler deals ``collection`` by, the registered backends'."""
    from prism_testkit.registry.backends import build_registry, make_plugin_manager
    from prism_testkit.registry.xdist_scheduler import exclusive_parts

    registry = build_registry(make_plugin_manager())
    exclusive = [spec.name for spec in registry if spec.exclusive]
    return exclusive_parts(collection, registry.names, exclusive, recorded, workers)


def replay(
    tests: Sequence[dict[str, Any]], root: Path, recorded: Mapping[str, float], every: float
) -> list[tuple[float, float, float, float]]:
    """(elapsed, time left as the run said it, told the truth, actual) at each line once a
    tenth of the tests finished; times from the first test's start."""
    recorded = Recorded(recorded)  # looked up as the run does: by node id, else by identity (the shipped file's)
    t0 = min(t["start"] for t in tests)
    end = max(t["stop"] for t in tests) - t0
    workers = len({t["worker"] for t in tests})
    collection = sorted(t["nodeid"] for t in tests)
    truth = {t["nodeid"]: t["stop"] - t["start"] for t in tests}
    scopes = scopes_of(collection, recorded, workers)
    said, told = (Progress(root, recorded=durations, workers=workers) for durations in (recorded, truth))
    for progress in (said, told):
        progress.collected_ids(collection)
        progress.scopes = scopes
    group = dict(said.waiting)  # node id -> its suite, as the progress line groups it
    events = sorted(
        [(t["start"] - t0, 1, t["nodeid"], 0.0) for t in tests]
        + [(t["stop"] - t0, 0, t["nodeid"], t["stop"] - t["start"]) for t in tests]
    )
    lines: list[tuple[float, float, float, float]] = []
    next_line, done = every, 0
    for when, is_start, nodeid, seconds in events:
        while next_line < when:
            if done >= len(tests) / 10:
                lines.append((next_line, said.left(next_line), told.left(next_line), end - next_line))
            next_line += every
        for progress in (said, told):
            if is_start:
                progress.started(nodeid, when)
            else:
                progress.spend(group[nodeid], seconds, nodeid)
                progress.finished(group[nodeid], nodeid)
        done += 0 if is_start else 1
    return lines


def markdown(lines: Iterable[tuple[float, float, float, float]]) -> str:
    rows = [
        "| elapsed s | actual left s | said s | error | told the truth s | error |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for elapsed, said, told, actual in lines:
        if actual <= 0:
            continue
        rows.append(
            f"| {elapsed:.0f} | {actual:.0f} | {said:.0f} | {(said - actual) / actual:+.0%} "
            f"| {told:.0f} | {(told - actual) / actual:+.0%} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("profile", type=Path, help="a run_profile results file, or a folder of its records")
    parser.add_argument("--durations", type=Path, help="the durations the run was given (--prism-shard-durations)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the run's rootdir (to find each suite)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between two lines")
    args = parser.parse_args(argv)
    recorded = read_durations(args.durations) if args.durations else {}
    print(markdown(replay(records_of(args.profile), args.root, recorded, args.every)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
