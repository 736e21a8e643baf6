"""Cost against size: what one operation costs at 10^3, 10^4 and 10^5 items, with the slope of
log(cost) against log(size). A slope near 0 is flat (the cost does not grow with the size); near
1, each operation gets linearly dearer, which is only right where the work itself grows.

- ``log.read(1)`` at a random offset, against the log's length: should be flat.
- ``queue.receive + ack`` against the queue's depth: should be flat.
- the Jepsen checkers (``total_queue``, ``log_anomalies``) per history operation, against the
  history's length (flat per operation = linear in total), and the history's memory per
  operation (flat).

Each size is measured in ``trials`` rounds; a cell is the median per-operation cost with its
interquartile range. Filling is not timed: logs are filled in transactions of 1,000 appends
where the backend has them, queues one send at a time (a durable queue fsyncs every send, so
its sizes stop at ``durable_queue_max``).
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from prism_testkit.capabilities import Capability, DeliveryGuarantee
from prism_testkit.driver import Driver
from prism_testkit.interfaces import Message
from prism_testkit.isolation import Namespace
from prism_testkit.stateful.checkers import log_anomalies, total_queue
from prism_testkit.stateful.history import History

from .stats import loglog_slope, summarize

SIZES = (1_000, 10_000, 100_000)
LOG_BACKENDS = ("memstore", "sqlite", "postgres")  # logs with transactions: fast to fill
QUEUE_BACKENDS = ("memstore", "sqlite")
DURABLE_QUEUE_MAX = 10_000  # ~2,000 fsynced sends/s: 10^5 would take most of a minute to fill
PAYLOAD = b"g" * 64


def row(measure: str, backend: str, size: int, unit: str, per_trial: Sequence[float]) -> dict[str, Any]:
    s = summarize(per_trial)
    return {
        "measure": measure,
        "backend": backend,
        "size": size,
        "unit": unit,
        "cost": s.median,
        "cost_q1": s.q1,
        "cost_q3": s.q3,
        "cost_min": s.low,
        "cost_max": s.high,
        "trials": s.trials,
    }


async def log_read_growth(
    driver: Driver, ns: Namespace, sizes: Sequence[int], reads: int, trials: int
) -> list[dict[str, Any]]:
    log, name = driver.log(), ns.name("growth-log")
    transactions = driver.transactions() if driver.supports(Capability.TRANSACTIONS) else None
    rows, length = [], 0
    for size in sizes:
        while length < size:  # not timed
            batch = min(1000, size - length)
            if transactions is not None:
                async with transactions.transaction() as t:
                    for _ in range(batch):
                        await t.append(name, Message(PAYLOAD))
            else:
                for _ in range(batch):
                    await log.append(name, Message(PAYLOAD))
            length += batch
        per_trial = []
        for trial in range(trials):
            offsets = random.Random(trial).sample(range(size), reads)
            started = time.perf_counter()
            for offset in offsets:
                await log.read(name, offset, limit=1)
            per_trial.append((time.perf_counter() - started) / reads * 1e6)
        rows.append(row("log.read(1) vs log length", driver.name, size, "us/op", per_trial))
    return rows


async def queue_receive_growth(
    driver: Driver, ns: Namespace, sizes: Sequence[int], receives: int, trials: int
) -> list[dict[str, Any]]:
    queue, name = driver.queue(), ns.name("growth-queue")
    rows, depth = [], 0
    for size in sizes:
        while depth < size:  # not timed
            await queue.send(name, Message(PAYLOAD))
            depth += 1
        per_trial = []
        for _ in range(trials):
            started = time.perf_counter()
            for _ in range(receives):
                delivery = await queue.receive(name, wait=5.0)
                assert delivery is not None
                await queue.ack(name, delivery)
            per_trial.append((time.perf_counter() - started) / receives * 1e6)
            for _ in range(receives):  # not timed: back to this depth
                await queue.send(name, Message(PAYLOAD))
        rows.append(row("queue.receive+ack vs depth", driver.name, size, "us/op", per_trial))
    return rows


def queue_history(ops: int) -> History:
    """``ops`` enqueues by 8 producers, the same values dequeued, then a final drain: a history of
    about 4 * ``ops`` events, every anomaly check exercised and none found."""
    h = History(clock=iter(range(10**9)).__next__)
    for v in range(ops):
        h.invoke(f"p{v % 8}", "enqueue", "q", v).ok()
    for v in range(ops):
        h.invoke(f"c{v % 8}", "dequeue", "q").ok(value=v)
    h.invoke("d", "drain", "q").ok(value=[])
    return h


def log_history(ops: int) -> History:
    """``ops`` appends by 8 writers, then a consumer polling them back in batches of 100."""
    h = History(clock=iter(range(10**9)).__next__)
    for v in range(ops):
        h.invoke(f"w{v % 8}", "append", "l", v).ok(offset=v)
    for start in range(0, ops, 100):
        records = [(o, o) for o in range(start, min(ops, start + 100))]
        h.invoke("c", "poll", "l", offset=start).ok(value=records)
    return h


def checker_growth(sizes: Sequence[int], trials: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    workloads: list[tuple[str, Callable[[int], History], Callable[[History], Any]]] = [
        ("total_queue", queue_history, lambda h: total_queue(h, DeliveryGuarantee.AT_LEAST_ONCE)),
        ("log_anomalies", log_history, lambda h: log_anomalies(h, DeliveryGuarantee.AT_LEAST_ONCE)),
    ]
    for checker, build, check in workloads:
        for size in sizes:
            tracemalloc.start()
            history = build(size)
            memory, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            per_trial = []
            for _ in range(trials):
                started = time.perf_counter()
                verdict = check(history)
                per_trial.append((time.perf_counter() - started) / size * 1e6)
                verdict.assert_valid()  # a history the checker had to walk in full
            rows.append(row(f"checker {checker} vs ops", "-", size, "us/op", per_trial))
            rows.append(row(f"history memory ({checker}) vs ops", "-", size, "bytes/op", [memory / size]))
    return rows


def with_slopes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One slope per (measure, backend) series, from the median costs."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["measure"], r["backend"]), []).append(r)
    slopes = []
    for (measure, backend), points in series.items():
        if len(points) >= 2:
            slope = loglog_slope([p["size"] for p in points], [p["cost"] for p in points])
            sizes = [p["size"] for p in points]
            slopes.append({"measure": measure, "backend": backend, "slope": slope, "sizes": sizes})
    return slopes


def markdown(rows: list[dict[str, Any]], slopes: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    sizes = sorted({r["size"] for r in rows})
    header = " | ".join(f"{size:,}" for size in sizes)
    lines = [
        "",
        "## Growth: cost per operation against size (median, IQR)",
        "",
        f"| measure | backend | unit | {header} | slope (log-log) |",
        "|---|---|---|" + "---:|" * len(sizes) + "---:|",
    ]
    for s in slopes:
        cells = {r["size"]: r for r in rows if (r["measure"], r["backend"]) == (s["measure"], s["backend"])}
        unit = next(iter(cells.values()))["unit"]
        text = [
            f"{c['cost']:.1f} ({c['cost_q1']:.1f} - {c['cost_q3']:.1f})" if (c := cells.get(size)) else "-"
            for size in sizes
        ]
        lines.append(f"| {s['measure']} | {s['backend']} | {unit} | {' | '.join(text)} | {s['slope']:+.2f} |")
    lines += ["", "Slope ~0: flat (per operation; for the checkers, linear in total). Slope ~1: linear per operation."]
    return lines
