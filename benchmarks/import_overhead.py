"""What installing the plugin costs an unrelated pytest run: the same one-test project run with
the plugin loaded and with ``-p no:prism``, interleaved (A, B, A, B ...) so that a machine
that slows down or speeds up during the measurement affects both sides alike.

    python -m benchmarks.import_overhead --trials 15

The target (issue 8) is at most +0.2 s per run. Nothing asserts it: the number is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

UNRELATED_TEST = "def test_unrelated():\n    assert 1 + 1 == 2\n"


@dataclass
class ImportOverhead:
    trials: int
    with_plugin_s: float  # median wall time of one pytest run
    without_plugin_s: float
    added_s: float  # median of the per-pair differences
    added_spread_s: tuple[float, float]  # (min, max) of the per-pair differences
    ratio: float  # median of the per-pair ratios
    ratio_spread: tuple[float, float]


def _pytest_run(project: Path, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_"))}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(project)]
    started = time.perf_counter()
    subprocess.run(argv, cwd=project, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(trials: int = 15) -> ImportOverhead:
    with tempfile.TemporaryDirectory(prefix="prism-import-") as tmp:
        project = Path(tmp)
        (project / "test_unrelated.py").write_text(UNRELATED_TEST)
        _pytest_run(project)  # warm the OS caches and the bytecode of both sides
        _pytest_run(project, "-p", "no:prism")
        with_plugin, without_plugin = [], []
        for _ in range(trials):
            with_plugin.append(_pytest_run(project))
            without_plugin.append(_pytest_run(project, "-p", "no:prism"))
    added = [a - b for a, b in zip(with_plugin, without_plugin, strict=True)]
    ratios = [a / b for a, b in zip(with_plugin, without_plugin, strict=True)]
    return ImportOverhead(
        trials=trials,
        with_plugin_s=statistics.median(with_plugin),
        without_plugin_s=statistics.median(without_plugin),
        added_s=statistics.median(added),
        added_spread_s=(min(added), max(added)),
        ratio=statistics.median(ratios),
        ratio_spread=(min(ratios), max(ratios)),
    )


def markdown(result: ImportOverhead) -> list[str]:
    return [
        "## Plugin import overhead (unrelated one-test project, interleaved runs)",
        "",
        "| trials | with plugin s | -p no:prism s | added s (median) | added s (min..max) | ratio (min..max) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result.trials} | {result.with_plugin_s:.3f} | {result.without_plugin_s:.3f} | {result.added_s:+.3f} "
        f"| {result.added_spread_s[0]:+.3f}..{result.added_spread_s[1]:+.3f} "
        f"| {result.ratio:.2f}x ({result.ratio_spread[0]:.2f}..{result.ratio_spread[1]:.2f}) |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15, help="pairs of pytest runs")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    result = measure(args.trials)
    print(json.dumps(asdict(result), indent=2) if args.json else "\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
