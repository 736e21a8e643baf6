"""What ``--prism-report-html`` costs a run (issue #50: at most 5 % more wall time).

Two measurements:

1. **A/B, interleaved.** The same selection of the shipped suites, run with ``--prism-report``
   (as a CI job runs) and with ``--prism-report`` plus ``--prism-report-html``, in ``trials``
   rounds; each round runs both sides back to back, alternating which goes first
   (:func:`benchmarks.stats.trial_order`), and gives one ratio (with / without). The row is the
   median ratio with its interquartile range and min - max: an interquartile range that holds
   1.0 is "no measurable difference" on this machine.
2. **The page alone.** What the option adds is one ``report()`` and one render at the end of the
   run, which grow with the number of tests, not with the run's length: each is timed on
   synthetic reports of growing size (the median of ``repeats``), so a main job's cost can be
   read off for its own test count.

    python -m benchmarks.report_html --trials 6 --workers 2 --json /tmp/report-html.json

Nothing asserts a number: the results go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import summarize, trial_order, verdict

PATTERNS = "keyvalue,queue,claim_check,stateful_queue"  # contracts, and a stateful suite (its rows are plotted)
SIDES = ("json", "json+html")
SIZES = (1_000, 10_000, 20_000)


def selection(patterns: str) -> list[str]:
    return ["--pyargs", "prism_testkit.suites", "--prism-backend=embedded", f"--prism-pattern={patterns}"]


def _run(side: str, folder: Path, workers: int, patterns: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_"))}
    args = [
        *selection(patterns),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"--prism-report={folder / 'r.json'}",
    ]
    if workers:
        args += ["-n", str(workers)]
    if side == "json+html":
        args.append(f"--prism-report-html={folder / 'r.html'}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=folder, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{side}: pytest exited {done.returncode}:\n{done.stdout[-2000:]}")
    return took


def ab(trials: int, workers: int, patterns: str = PATTERNS) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="prism-report-html-") as tmp:
        for trial in range(trials):
            for side in trial_order(SIDES, trial):
                folder = Path(tmp) / f"{side}-{trial}"
                folder.mkdir()
                seconds[side].append(_run(side, folder, workers, patterns))
                print(f"trial {trial + 1}/{trials} {side}: {seconds[side][-1]:.1f} s", file=sys.stderr)
    ratios = [b / a for a, b in zip(seconds["json"], seconds["json+html"], strict=True)]
    spread = summarize(ratios)
    return {
        "selection": " ".join(selection(patterns)),
        "workers": workers,
        "trials": trials,
        "seconds": seconds,
        "median_s": {side: summarize(values).median for side, values in seconds.items()},
        "ratio": spread.text(".3f"),
        "ratio_median": spread.median,
        "verdict": verdict(spread),
    }


def synthetic_results(tests: int) -> Any:
    """A run's results with ``tests`` tests over 4 backends and 40 suites, a tenth of them
    stateful with faults, one in fifty failing with an anomaly and a timeline."""
    import pytest

    from prism_testkit.report.results import PrismResults, anomaly_properties, item_properties

    results = PrismResults(unavailable={"kafka": "no URL given"}, available={b: "embedded" for b in ("a", "b", "c")})
    from collections import Counter

    for n in range(tests):
        suite, backend = f"suite_{n % 40}", "abc"[n % 3]
        nodeid = f"prism_testkit/suites/test_{suite}.py::test_case_{n}[backend={backend}-'<名>']"
        props: list[tuple[str, object]] = [item_properties(suite, {"backend": backend}, None)]
        failing = n % 50 == 0
        if failing:
            props += [("prism_timeline", f"/ci/out/prism-timelines/t{n}.html"), ("prism_replay_command", "pytest x")]
        for when, outcome in (("setup", "passed"), ("call", "failed" if failing else "passed"), ("teardown", "passed")):
            if when == "teardown" and n % 10 == 0:
                props.append(anomaly_properties(Counter(lost=int(failing)), Counter(), Counter(kill=2), Counter(wal=3)))
            results.record(
                pytest.TestReport(
                    nodeid,
                    (f"prism_testkit/suites/test_{suite}.py", 1, "t"),
                    {},
                    outcome,  # type: ignore[arg-type]
                    "AssertionError: lost" if outcome == "failed" else None,
                    when,  # type: ignore[arg-type]
                    duration=0.01,
                    user_properties=list(props),
                )
            )
    return results


def page_alone(repeats: int) -> list[dict[str, Any]]:
    from prism_testkit.report.html import render_html

    rows = []
    for size in SIZES:
        results = synthetic_results(size)
        json_s, html_s, cpu_s = [], [], []
        for _ in range(repeats):
            started, cpu = time.perf_counter(), time.process_time()
            report = results.report()
            json_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            page = render_html(report)
            html_s.append(time.perf_counter() - started)
            cpu_s.append(time.process_time() - cpu)
        rows.append(
            {
                "tests": size,
                "to_json_s": summarize(json_s).text(".3f", " s"),
                "render_s": summarize(html_s).text(".3f", " s"),
                "cpu_s": summarize(cpu_s).text(".3f", " s"),  # both, in CPU: what a loaded machine stretches
                "page_bytes": len(page.encode()),
            }
        )
        print(f"{size} tests: to_json {rows[-1]['to_json_s']}, render {rows[-1]['render_s']}", file=sys.stderr)
    return rows


def one_plot(repeats: int) -> dict[str, Any] | None:
    """Seconds (wall and CPU) to draw one stateful row's figure of 300 operations under 60
    fault bands (the first draw imports matplotlib); None without matplotlib."""
    from prism_testkit.report import plots

    if not plots.available():
        return None
    ops = [
        [n * 4.0, 1.0 + (n % 7) * (50.0 if 100 <= n < 150 else 1.0), "ok" if n % 10 else "info", "w"]
        for n in range(300)
    ]
    faults = [[n * 20.0, n * 20.0 + 5.0, ("kill", "pause", "crash")[n % 3], "f"] for n in range(60)]
    latency = {"ops": ops, "faults": faults, "span_ms": 1200.0}
    started, cpu = time.perf_counter(), time.process_time()
    plots.latency_figure(latency)
    first, first_cpu = time.perf_counter() - started, time.process_time() - cpu
    drawn, drawn_cpu = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        plots.latency_figure(latency)
        drawn.append(time.perf_counter() - started)
        drawn_cpu.append(time.process_time() - cpu)
    return {
        "first_s": round(first, 3),
        "first_cpu_s": round(first_cpu, 3),
        "each_s": summarize(drawn).text(".3f", " s"),
        "each_cpu_s": summarize(drawn_cpu).text(".3f", " s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers of each run (0: none)")
    parser.add_argument("--repeats", type=int, default=5, help="renders per size for the page alone")
    parser.add_argument("--skip-ab", action="store_true", help="only time the page alone")
    parser.add_argument("--patterns", default=PATTERNS, help="the suites each run selects (--prism-pattern)")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    found: dict[str, Any] = {"page_alone": page_alone(args.repeats), "one_plot": one_plot(args.repeats)}
    if not args.skip_ab:
        found["ab"] = ab(args.trials, args.workers, args.patterns)
        print(f"with / without --prism-report-html: {found['ab']['ratio']} ({found['ab']['verdict']})")
    text = json.dumps(found, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
