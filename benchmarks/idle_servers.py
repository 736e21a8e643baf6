"""What each server kind costs while it waits (issue 65: "the CPU each server kind uses while
idle over a main job"): a backend started as the harness starts it, left alone, and the CPU of
every process it started (the servers, their helpers, a cluster's every node) over a window.

Each backend is started ``--trials`` times, interleaved with the others (A B C, C B A, ...), so
a change of the machine's load reaches every kind; each trial waits ``--settle`` seconds after
the start before its window. Figures are CPU-seconds per minute of idleness (median, min - max),
and what that comes to over a main job of ``--run`` seconds.

    python -m benchmarks.idle_servers --backends postgres,redis,jetstream-r3 --window 60

The processes are this script's descendants, read from ``/proc`` (utime + stime) at the window's
two ends: a process that ends inside the window is missed (none should: nothing happens). The
script is its tree's child subreaper, so a server that daemonises (``pg_ctl`` starts the
postmaster and exits) stays among them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.process_cpu import become_subreaper
from prism_testkit.provision.base import ProvisionContext
from prism_testkit.registry.backends import build_registry, make_plugin_manager

TICKS = os.sysconf("SC_CLK_TCK")


def descendants_cpu() -> dict[tuple[int, str], float]:
    """CPU-seconds so far of every descendant of this process, by (pid, start time)."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = fields
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    mine.discard(os.getpid())
    return {(pid, stats[pid][19]): (int(stats[pid][11]) + int(stats[pid][12])) / TICKS for pid in mine}


def idle_cpu(name: str, settle: float, window: float) -> float:
    """CPU-seconds per minute the backend ``name`` used while idle, once."""
    spec = next(spec for spec in build_registry(make_plugin_manager()) if spec.name == name)
    with tempfile.TemporaryDirectory(prefix="prism-idle-") as where:
        ctx = ProvisionContext(name, None, Path(where), "bench", "bench")
        endpoint = spec.provisioner.start(ctx)
        try:
            time.sleep(settle)
            before = descendants_cpu()
            time.sleep(window)
            after = descendants_cpu()
        finally:
            spec.provisioner.stop(endpoint)
    used = sum(seconds - before.get(key, 0.0) for key, seconds in after.items())
    return used * 60 / window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="postgres,redis,jetstream,jetstream-r3,postgres-ha,redis-sentinel")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--run", type=float, default=1100.0, help="a main job's seconds, to scale to")
    args = parser.parse_args()
    if not become_subreaper():
        parser.error("cannot become the child subreaper: a server that daemonises would be missed")
    names = args.backends.split(",")
    found: dict[str, list[float]] = {name: [] for name in names}
    for trial in range(args.trials):
        for name in names if trial % 2 == 0 else names[::-1]:
            found[name].append(idle_cpu(name, args.settle, args.window))
            print(f"{name}: {found[name][-1]:.2f} CPU-s a minute idle", flush=True)
    print(f"\n| backend | CPU-s a minute idle, median (min - max) | over a {args.run:.0f} s main job |")
    print("|---|---:|---:|")
    for name, values in found.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} ({min(values):.2f} - {max(values):.2f}) | {median * args.run / 60:.0f} s |")


if __name__ == "__main__":
    main()
