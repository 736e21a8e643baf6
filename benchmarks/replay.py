"""Recorded schedules on real servers (issue 28), measured: for each registered mutant that a
stateful suite catches on a networked or durable backend, how often the printed replay
(``prism-testkit replay FILE``) reproduces the failure.

    python -m benchmarks.replay --reruns 20 --out benchmarks/results

For each mutant: one pytest run of its stateful suite with the mutant loaded, on backends of
which at least one is networked or durable (:data:`BACKENDS`), under the ``prism-mutant``
profile (derandomised, no shrinking) and ``--prism-schedules``. The first schedule written by a
combination holding such a backend is then replayed ``--reruns`` times, each a
``prism-testkit replay`` process of its own, as a user would run it the next morning. A rerun
that did not reproduce is counted with its own verdict. Mutants that patch memstore itself
(``queue_acks_on_delivery``, ``log_acks_without_storing``) have no such backend and are left
out; a mutant whose suite did not fail there is listed as not caught. Nothing asserts; the
table is printed (Markdown) and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Embedded backends that keep their data in files (fsync'd): durable, though not networked.
DURABLE_OR_NETWORKED = {"sqlite", "localfs", "redis-aof", "redis", "postgres", "nats"}
# (mutant, suite, backends): each suite on backends that fit its slots, a real server where the
# mutant is caught there (redis-aof: networked and durable; sqlite, localfs: durable files).
BACKENDS = [
    ("relay_marks_published_first", "stateful_outbox", "sqlite,redis-aof"),
    ("relay_skips_refused_event", "stateful_outbox", "sqlite,redis-aof"),
    ("claim_check_releases_on_receive", "stateful_claim_check", "memstore,localfs"),
    ("claim_check_reads_missing_object_as_empty", "stateful_claim_check", "memstore,localfs"),
    ("tiered_migrator_deletes_before_switch", "stateful_tiered_storage", "memstore,localfs"),
    ("tiered_migrator_switches_without_cas", "stateful_tiered_storage", "memstore,localfs"),
    ("tiered_reads_lost_copy_as_absent", "stateful_tiered_storage", "memstore,localfs"),
    ("tiered_put_ignores_copy_freshness", "stateful_tiered_storage", "memstore,localfs"),
    ("wal_checkpoint_before_apply", "stateful_wal", "redis-aof"),
    ("wal_applies_without_guard", "stateful_wal", "redis-aof"),
    ("wal_checkpoint_passes_pending_retry", "stateful_wal", "redis-aof"),
    ("projection_tracks_apart_from_views", "stateful_event_sourcing", "sqlite"),
    ("append_skips_version_check", "stateful_event_sourcing", "sqlite"),
]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "CI"))}
    env["PYTHONPATH"] = str(ROOT)  # the mutants are the tests package's plugins
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp / "hypothesis")  # no saved example changes the search
    env["TMPDIR"] = str(tmp)
    return env


def find(mutant: str, suite: str, backends: str, tmp: Path) -> tuple[Path | None, str]:
    """Run the suite with the mutant; the schedule of a failing combination with a durable or
    networked backend, or None and why."""
    schedules = tmp / "schedules"
    argv = [sys.executable, "-m", "pytest", "-q", "--pyargs", "prism_testkit.suites", "-p", f"tests.mutants.{mutant}"]
    argv += [f"--prism-backend={backends}", f"--prism-pattern={suite}", "--hypothesis-profile=prism-mutant"]
    argv += ["-p", "no:cacheprovider", "-p", "no:randomly", f"--prism-schedules={schedules}"]
    done = subprocess.run(argv, cwd=tmp, env=_env(tmp), capture_output=True, text=True)
    for path in sorted(schedules.glob("*.json"), key=lambda p: p.stat().st_mtime):
        combination = json.loads(path.read_text())["combination"]
        if set(combination.values()) & DURABLE_OR_NETWORKED:
            return path, ""
    if done.returncode == 0:
        return None, "not caught"
    return None, f"no schedule on a durable or networked backend (pytest exit {done.returncode})"


def rerun(schedule: Path, tmp: Path) -> tuple[bool | None, str, float]:
    """One ``prism-testkit replay``: reproduced (None: it could not run), its last line, seconds."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "prism_testkit", "replay", str(schedule)]
    done = subprocess.run(argv, cwd=tmp, env=_env(tmp), capture_output=True, text=True)
    seconds = time.monotonic() - started
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, 1):
        return None, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1], seconds
    return done.returncode == 1, last.split(": ", 1)[-1], seconds


def measure(mutant: str, suite: str, backends: str, reruns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prism-replay-bench-") as folder:
        tmp = Path(folder)
        schedule, why = find(mutant, suite, backends, tmp)
        row: dict[str, Any] = {"mutant": mutant, "suite": suite, "backends": backends}
        if schedule is None:
            return {**row, "caught": False, "why": why}
        data = json.loads(schedule.read_text())
        outcomes: Counter[str] = Counter()
        reproduced = 0
        seconds = []
        for _ in range(reruns):
            ok, line, took = rerun(schedule, tmp)
            seconds.append(took)
            if ok:
                reproduced += 1
            else:
                outcomes["could not run: " + line if ok is None else line] += 1
        return {
            **row,
            "caught": True,
            "combination": " ".join(f"{slot}={name}" for slot, name in data["combination"].items()),
            "failure": data["failure"],
            "steps": len(data["steps"]),
            "faults": sum(1 for step in data["steps"] if step["fault"]),
            "reruns": reruns,
            "reproduced": reproduced,
            "not_reproduced": dict(outcomes),
            "seconds_per_replay": round(sum(seconds) / len(seconds), 1) if seconds else None,
        }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mutant | suite | combination | failure | steps (faults) | reproduced |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["caught"]:
            lines.append(f"| `{row['mutant']}` | {row['suite']} | {row['backends']} | {row['why']} | | |")
            continue
        reproduced = f"{row['reproduced']}/{row['reruns']}"
        if row["not_reproduced"]:
            reproduced += " (" + "; ".join(f"{n}x {why}" for why, n in row["not_reproduced"].items()) + ")"
        lines.append(
            f"| `{row['mutant']}` | {row['suite']} | {row['combination']} | {row['failure']} | "
            f"{row['steps']} ({row['faults']}) | {reproduced} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reruns", type=int, default=20, help="replays of each schedule (default 20)")
    parser.add_argument("--mutant", action="append", help="only these mutants (repeatable)")
    parser.add_argument("--out", type=Path, help="directory for replay.json")
    args = parser.parse_args(argv)
    rows = []
    for mutant, suite, backends in BACKENDS:
        if args.mutant and mutant not in args.mutant:
            continue
        row = measure(mutant, suite, backends, args.reruns)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if args.out is not None:  # after each mutant: a long run cut short keeps what it measured
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "replay.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
