"""The WAL's write path against a direct write to its target, per durable log, in one run.

For 1, 8 and 64 concurrent writers, each trial measures three things back to back (rotating
their order from trial to trial, so drift and warm-up do not favour one): ``kv.put`` on the
target, WAL ``put`` with group commit, and WAL ``put`` without it. A row gives the median of the
per-trial time ratios (WAL / direct) and their spread (min - max); ops/s and p50 / p99 are those
of the median trial. The target is the log backend's own key-value, so both sides pay for the
same server and fsync policy. RFC-014's anchor is 10k-50k ops/s at 2-5 ms per durable write.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.wal import LogDurability, WalApplier, WalConfig, WriteAheadLog
from prism_testkit.registry.backends import BackendSpec

from .stats import ratio_fields

WRITERS = (1, 8, 64)
PAYLOAD = b"x" * 256
_serial = itertools.count()


def fresh_value() -> bytes:
    """256 bytes never written before: SQLite skips rewriting a row with identical content, fsync
    and all, so a repeated (key, value) would make the direct write look free."""
    return next(_serial).to_bytes(8, "big") + PAYLOAD[8:]


@dataclass
class Trial:
    rate: float
    p50_ms: float
    p99_ms: float


async def concurrently(writers: int, ops: int, step: Callable[[int], Awaitable[object]]) -> Trial:
    """``ops`` operations split across ``writers`` concurrent writers; every latency recorded."""
    per_writer = max(1, ops // writers)
    latencies: list[float] = []

    async def writer(w: int) -> None:
        for i in range(per_writer):
            started = time.perf_counter()
            await step(w * per_writer + i)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Trial(len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000)


def putter(wal: WriteAheadLog, ns: Namespace) -> Callable[[int], Awaitable[int]]:
    return lambda i: wal.put(ns.name(f"w{i % 512}"), fresh_value())


async def wal_rows(driver: Driver, spec: BackendSpec, ns: Namespace, ops: int, trials: int) -> list[dict]:
    kv = driver.keyvalue()
    log_transactions = driver.transactions() if driver.supports(Capability.TRANSACTIONS) else None
    durability = LogDurability.of(spec)
    rows: list[dict] = []
    for writers in WRITERS:
        config = WalConfig(log=ns.name(f"bench-wal-{writers}"), guard_prefix=ns.name("bench-applied/"))
        grouped = WriteAheadLog(driver.log(), kv, config, durability=durability, log_transactions=log_transactions)
        single = WriteAheadLog(
            driver.log(), kv, config.model_copy(update={"group_commit": False}), durability=durability
        )
        sides: dict[str, Callable[[int], Awaitable[object]]] = {
            "direct kv.put": lambda i: kv.put(ns.name(f"direct{i % 512}"), fresh_value()),
            "WAL put (group commit)": putter(grouped, ns),
            "WAL put (one append each)": putter(single, ns),
        }
        measured: dict[str, list[Trial]] = {name: [] for name in sides}
        order = list(sides)
        for trial in range(trials):
            for name in order[trial % len(order) :] + order[: trial % len(order)]:
                measured[name].append(await concurrently(writers, ops, sides[name]))
        direct = measured["direct kv.put"]
        for name in order[1:]:
            if name == "WAL put (group commit)" and log_transactions is None:
                continue  # no log transactions: the same path as one append each
            ratios = [d.rate / w.rate for d, w in zip(direct, measured[name], strict=True)]
            middle = sorted(range(trials), key=lambda t: ratios[t])[trials // 2]
            raw, wal = direct[middle], measured[name][middle]
            rows.append(
                {
                    "log": spec.name,
                    "writers": writers,
                    "pattern": name,
                    "raw_rate": raw.rate,
                    "raw_p50_ms": raw.p50_ms,
                    "raw_p99_ms": raw.p99_ms,
                    "wal_rate": wal.rate,
                    "wal_p50_ms": wal.p50_ms,
                    "wal_p99_ms": wal.p99_ms,
                    **ratio_fields(ratios),
                    "groups": grouped.group_commit.groups if grouped.group_commit and "group" in name else None,
                }
            )
    return rows


async def applier_rows(driver: Driver, spec: BackendSpec, ns: Namespace, ops: int) -> list[dict]:
    """How fast an applier drains ``ops`` mutations into the target: one target transaction per
    batch (when the target has transactions) against one write (+ applied offset) each."""
    kv = driver.keyvalue()
    transactions = driver.transactions() if driver.supports(Capability.TRANSACTIONS) else None
    rows: list[dict] = []
    for how, target_tx in (("batch in one transaction", transactions), ("one write each", None)):
        if how.startswith("batch") and target_tx is None:
            continue
        config = WalConfig(log=ns.name(f"bench-apply-{len(rows)}"), batch_size=100, checkpoint_interval=1.0)
        wal = WriteAheadLog(driver.log(), kv, config, durability=LogDurability.of(spec))
        for i in range(ops):
            await wal.put(ns.name(f"a{i % 512}"), PAYLOAD)
        applier = WalApplier(driver.log(), kv, config, transactions=target_tx)
        started = time.perf_counter()
        await applier.drain(within=600.0)
        rows.append({"log": spec.name, "applier": how, "mutations": ops, "rate": ops / (time.perf_counter() - started)})
    return rows


def applier_markdown(rows: list[dict]) -> list[str]:
    lines = ["", "## WAL applier drain rate (target = the log's backend)", ""]
    lines += ["| log = target | applier | mutations | applied/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['log']} | {r['applier']} | {r['mutations']} | {r['rate']:.0f} |" for r in rows]
    return lines


def wal_markdown(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "## WAL put vs direct write to the target (same run, interleaved trials)",
        "",
        "| log = target | writers | WAL path | direct ops/s | direct p50 / p99 ms | WAL ops/s | WAL p50 / p99 ms "
        "| time ratio (IQR; min - max) | verdict |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['log']} | {r['writers']} | {r['pattern']} | {r['raw_rate']:.0f} | "
            f"{r['raw_p50_ms']:.2f} / {r['raw_p99_ms']:.2f} | {r['wal_rate']:.0f} | "
            f"{r['wal_p50_ms']:.2f} / {r['wal_p99_ms']:.2f} | {r['time_ratio']:.2f}x "
            f"({r.get('ratio_q1', r['ratio_min']):.2f} - {r.get('ratio_q3', r['ratio_max']):.2f}; "
            f"{r['ratio_min']:.2f} - {r['ratio_max']:.2f}) | {r.get('verdict', '')} |"
        )
    return lines
