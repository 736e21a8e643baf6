"""This machine's fsync floor: one 256-byte write + fsync, measured where the harness keeps its
servers' data (the temp dir). A durable write path that needs one fsync per write cannot pass
this rate; one that groups writes (group commit) can.

    python -m benchmarks.floor
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .stats import summarize

BYTES = 256


def fsync_floor(directory: Path | None = None, writes: int = 200, trials: int = 5) -> dict[str, Any]:
    """Per trial, the median latency of ``writes`` appends of 256 bytes, each followed by an
    fsync; the row is the median over trials with its min - max."""
    root = Path(directory or tempfile.gettempdir())
    payload = b"f" * BYTES
    per_trial: list[float] = []
    with tempfile.TemporaryDirectory(prefix="prism-fsync-", dir=root) as tmp:
        path = Path(tmp) / "floor"
        for _ in range(trials):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                latencies = []
                for _ in range(writes):
                    started = time.perf_counter()
                    os.write(fd, payload)
                    os.fsync(fd)
                    latencies.append(time.perf_counter() - started)
            finally:
                os.close(fd)
            per_trial.append(statistics.median(latencies) * 1000)
    spread = summarize(per_trial)
    return {
        "directory": str(root),
        "bytes": BYTES,
        "writes_per_trial": writes,
        "trials": trials,
        "latency_ms": spread.median,
        "latency_ms_min": spread.low,
        "latency_ms_max": spread.high,
        "rate": 1000 / spread.median,
    }


def markdown(floor: dict[str, Any]) -> list[str]:
    return [
        "## This machine's fsync floor",
        "",
        f"One {floor['bytes']}-byte write + fsync in {floor['directory']}: **{floor['latency_ms']:.3f} ms** "
        f"({floor['latency_ms_min']:.3f} - {floor['latency_ms_max']:.3f} over {floor['trials']} trials of "
        f"{floor['writes_per_trial']}), about {floor['rate']:,.0f} durable writes/s for a path that needs one "
        "fsync per write.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    print("\n".join(markdown(fsync_floor(args.dir, args.writes, args.trials))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
