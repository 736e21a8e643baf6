"""Side-by-side benchmarks: every backend's raw operation rates and latencies, the claim
check's, the outbox's and tiered storage's overhead as ratios against the raw operations they
replace, the producer's batching against a raw publish loop and the consumer against a raw
receive loop (``benchmarks.producer_consumer``), the claim check's memory bound, server
time-to-ready, and what the installed plugin adds to an unrelated pytest run
(``benchmarks.import_overhead``, side by side with ``-p no:prism``).

    python -m benchmarks.run --prism-backend=all --ops 100 --trials 5 --out benchmarks/results
    python -m benchmarks.run compare before/results.json after/results.json

Everything is measured in one run on one machine, so the ratios are comparable; absolute
numbers are this machine's. Every ratio comes from interleaved trials and is reported as the
median of the per-trial ratios with their spread (see ``benchmarks.stats``); the output starts
with this machine's fsync floor. Nothing here asserts a timing: tests never do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import math
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import import_overhead
from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.interfaces import Message
from prism_testkit.isolation import Namespace, NamespaceFactory
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckQueue
from prism_testkit.patterns.outbox import Outbox, OutboxConfig, OutboxRelay, QueueSink
from prism_testkit.patterns.tiered_storage import (
    KeyValueTier,
    Migrator,
    ObjectTier,
    TieredStorage,
    TieredStorageConfig,
)
from prism_testkit.provision.cluster import FailoverCluster
from prism_testkit.registry.backends import BackendRegistry, BackendSpec, build_registry, make_plugin_manager
from prism_testkit.runtime import PrismRuntime

from . import floor, growth, producer_consumer
from .failover import failover_markdown, failover_row
from .stats import compare_files, interleaved, rate_spread, ratio_fields, ratio_spread, ratios, summarize
from .wal import applier_markdown, applier_rows, wal_markdown, wal_rows

PAYLOAD = b"x" * 256


@dataclass
class Measurement:
    backend: str
    operation: str
    ops: int  # per trial
    rate: float  # operations per second: the median trial's
    p50_ms: float  # over every operation of every trial
    p99_ms: float
    rate_min: float = 0.0
    rate_max: float = 0.0
    rate_q1: float = 0.0
    rate_q3: float = 0.0
    trials: int = 1


@dataclass
class Sample:
    """One trial of one side: ``ops`` operations in ``seconds``."""

    ops: int
    seconds: float
    latencies: list[float]

    @property
    def per_op(self) -> float:
        return self.seconds / self.ops


Step = Callable[[int], Awaitable[object]]


async def run_ops(ops: int, step: Step, first: int = 0) -> Sample:
    """``step(first)`` ... ``step(first + ops - 1)``: each trial passes its own ``first``, so a
    write never repeats an earlier trial's (SQLite skips rewriting an identical row, fsync and
    all: a repeated put would make the baseline look free)."""
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(first, first + ops):
        t0 = time.perf_counter()
        await step(i)
        latencies.append(time.perf_counter() - t0)
    return Sample(ops, time.perf_counter() - started, latencies)


def summarize_samples(backend: str, operation: str, samples: list[Sample]) -> Measurement:
    rates = summarize([s.ops / s.seconds for s in samples])
    latencies = [x for s in samples for x in s.latencies]
    if len(latencies) > 1:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    else:
        p50 = p99 = 0.0  # a rate without per-operation latencies (a relay or migrator drain)
    return Measurement(
        backend,
        operation,
        samples[0].ops,
        rates.median,
        p50,
        p99,
        rates.low,
        rates.high,
        rates.q1,
        rates.q3,
        len(samples),
    )


async def measure(backend: str, operation: str, ops: int, step: Step, trials: int = 1) -> Measurement:
    """``trials`` rounds of ``ops`` operations of one kind, one after the other."""
    return summarize_samples(backend, operation, [await run_ops(ops, step, t * ops) for t in range(trials)])


async def pair_trials(
    label: str,
    raw: tuple[str, Callable[[int], Awaitable[Sample]]],
    pattern: tuple[str, Callable[[int], Awaitable[Sample]]],
    trials: int,
) -> dict:
    """Raw and pattern interleaved over ``trials`` rounds (each side is given the trial number
    and returns its sample): one time ratio per round, the row their median and spread."""
    sides = dict([raw, pattern])
    measured = await interleaved([raw[0], pattern[0]], trials, lambda name, trial: sides[name](trial))
    return ratio_row(label, raw[0], measured[raw[0]], pattern[0], measured[pattern[0]])


MIN_TRIAL_SECONDS = 0.02  # a trial shorter than a few scheduler ticks measures the scheduler
MAX_SCALE = 50


async def calibrated(ops: int, step: Step, min_seconds: float) -> int:
    """``ops``, or more for a step so fast that ``ops`` of it would take under ``min_seconds``
    (up to ``MAX_SCALE`` times more). The probe writes at negative indices, never reused."""
    probe = await run_ops(max(5, ops // 10), step, -(10**6))
    return min(ops * MAX_SCALE, max(ops, math.ceil(min_seconds / max(probe.per_op, 1e-9))))


async def pair(
    label: str, raw: tuple[str, Step], pattern: tuple[str, Step], ops: int, trials: int, min_seconds: float = 0.0
) -> dict:
    """The common case: each side is ``ops`` calls of one step per round. With ``min_seconds``
    (write-only steps: any index is a fresh write), ``ops`` grows until the raw side's round
    lasts that long, so microsecond operations are not measured in sub-millisecond rounds."""
    if min_seconds:
        ops = await calibrated(ops, raw[1], min_seconds)

    def runner(step: Step) -> Callable[[int], Awaitable[Sample]]:
        return lambda trial: run_ops(ops, step, trial * ops)

    return await pair_trials(label, (raw[0], runner(raw[1])), (pattern[0], runner(pattern[1])), trials)


def ratio_row(label: str, raw: str, raw_samples: list[Sample], pattern: str, pattern_samples: list[Sample]) -> dict:
    """One side-by-side row: the pattern against the raw operations it replaces."""
    per_trial = ratios([s.per_op for s in raw_samples], [s.per_op for s in pattern_samples])
    return {
        "combination": label,
        "raw": raw,
        "pattern": pattern,
        "raw_rate": statistics.median(s.ops / s.seconds for s in raw_samples),
        "pattern_rate": statistics.median(s.ops / s.seconds for s in pattern_samples),
        **ratio_fields(per_trial),  # >1: the pattern is slower by this factor
    }


async def interface_rates(driver: Driver, ns: Namespace, ops: int, trials: int = 1) -> list[Measurement]:
    name, out = driver.name, []
    if driver.supports(Capability.KEYVALUE):
        kv = driver.keyvalue()
        out.append(await measure(name, "kv.put", ops, lambda i: kv.put(ns.name(f"k{i}"), PAYLOAD), trials))
        out.append(await measure(name, "kv.get", ops, lambda i: kv.get(ns.name(f"k{i}")), trials))
    if driver.supports(Capability.QUEUE):
        queue, q = driver.queue(), ns.name("q")
        out.append(await measure(name, "queue.send", ops, lambda i: queue.send(q, Message(PAYLOAD)), trials))

        async def receive_ack(_: int) -> None:
            delivery = await queue.receive(q, wait=5.0)
            assert delivery is not None
            await queue.ack(q, delivery)

        out.append(await measure(name, "queue.receive+ack", ops, receive_ack, trials))
    if driver.supports(Capability.LOG):
        log, lname = driver.log(), ns.name("log")
        out.append(await measure(name, "log.append", ops, lambda i: log.append(lname, Message(PAYLOAD)), trials))
        out.append(await measure(name, "log.read(1)", ops, lambda i: log.read(lname, i, limit=1), trials))
    if driver.supports(Capability.PUBSUB):
        pubsub, topic = driver.pubsub(), ns.name("topic")
        subscription = await pubsub.subscribe(topic)

        async def round_trip(_: int) -> None:
            await pubsub.publish(topic, Message(PAYLOAD))
            assert await subscription.receive(5.0) is not None

        out.append(await measure(name, "pubsub.publish->receive", ops, round_trip, trials))
        await subscription.close()
    if driver.supports(Capability.OBJECTS):
        objects, bucket, body = driver.objects(), ns.name("bucket"), PAYLOAD * 16
        await objects.create_bucket(bucket)
        out.append(await measure(name, "objects.put(4KiB)", ops, lambda i: objects.put(bucket, f"o{i}", body), trials))
        out.append(await measure(name, "objects.get(4KiB)", ops, lambda i: objects.get(bucket, f"o{i}"), trials))
    if driver.supports(Capability.TRANSACTIONS):
        transactions, tlog = driver.transactions(), ns.name("txlog")

        async def commit(i: int) -> None:
            async with transactions.transaction() as t:
                await t.put(ns.name(f"t{i}"), PAYLOAD)
                await t.append(tlog, Message(PAYLOAD))

        out.append(await measure(name, "transaction(put+append)", ops, commit, trials))
    return out


async def claim_check_overhead(
    messaging: Driver, objects_driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    """Pattern vs raw, on the same backends, interleaved: below the threshold the pattern only
    inspects the size (vs a raw send); above it, vs a raw object put + raw send, and vs the same
    plus the SHA-256 of the payload (the price of integrity, which the pattern must pay and a raw
    put does not); the SHA-256 alone is its own row."""
    queue, objects = messaging.queue(), objects_driver.objects()
    bucket, q = ns.name("claims"), ns.name("ccq")
    await objects.create_bucket(bucket)
    claim_check = ClaimCheck(objects, ClaimCheckConfig(threshold=1024, bucket=bucket, on_consume="keep"))
    claimed = ClaimCheckQueue(queue, claim_check)
    small, large = b"s" * 512, bytes(range(256)) * 256  # 512 B inline, 64 KiB claimed
    label = f"messaging={messaging.name} objects={objects_driver.name}"

    async def raw_put_send(i: int) -> None:
        await objects.put(bucket, f"raw{i}", large)
        await queue.send(q, Message(b"", {"ref": f"raw{i}"}))

    async def raw_sha_put_send(i: int) -> None:
        digest = hashlib.sha256(large).hexdigest()
        await objects.put(bucket, f"sha{i}", large)
        await queue.send(q, Message(b"", {"ref": f"sha{i}", "sha256": digest}))

    async def claimed_send(i: int) -> None:
        await claimed.send(q, Message(large))

    rows = [
        await pair(
            label,
            ("raw send 512B", lambda i: queue.send(q, Message(small))),
            ("claim check send 512B", lambda i: claimed.send(q, Message(small))),
            ops,
            trials,
            MIN_TRIAL_SECONDS,
        ),
        await pair(
            label,
            ("raw put+send 64KiB", raw_put_send),
            ("claim check send 64KiB", claimed_send),
            ops,
            trials,
            MIN_TRIAL_SECONDS,
        ),
        await pair(
            label,
            ("raw sha256+put+send 64KiB", raw_sha_put_send),
            ("claim check send 64KiB", claimed_send),
            ops,
            trials,
            MIN_TRIAL_SECONDS,
        ),
    ]
    return rows


def sha256_row(ops: int, trials: int) -> dict:
    """The checksum alone: what the claim check's integrity costs per 64 KiB payload."""
    large = bytes(range(256)) * 256
    samples = []
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(ops):
            hashlib.sha256(large).hexdigest()
        samples.append(Sample(ops, time.perf_counter() - started, []))
    m = summarize_samples("cpu", "sha256(64KiB)", samples)
    return asdict(m)


def outbox_event(outbox: Outbox, ns: Namespace, prefix: str) -> Step:
    """A business row and its outbox event in one transaction; each caller its own rows (a
    rewrite of an identical row is free on SQLite, which would flatter either side)."""

    async def step(i: int) -> None:
        async with outbox.transaction() as t:
            await t.put(ns.name(f"{prefix}{i}"), PAYLOAD)
            await t.publish(f"agg-{i % 8}", "Changed", PAYLOAD)

    return step


async def outbox_commit_overhead(store: Driver, ns: Namespace, ops: int, trials: int) -> list[dict]:
    """A business transaction with its outbox event against the same transaction without it,
    and against the same transaction with the event appended by hand (the pattern's own cost:
    the event id and headers, the aggregate's sequence number). The sink plays no part."""
    label = f"store={store.name}"
    transactions = store.transactions()
    outbox = Outbox(transactions, OutboxConfig(log=ns.name(f"outbox-commit-{store.name}")))
    by_hand_log = ns.name(f"by-hand-{store.name}")

    async def plain(i: int) -> None:
        async with transactions.transaction() as t:
            await t.put(ns.name(f"plain{i}"), PAYLOAD)

    async def by_hand(i: int) -> None:
        async with transactions.transaction() as t:
            await t.put(ns.name(f"hand{i}"), PAYLOAD)
            await t.append(by_hand_log, Message(PAYLOAD, {"type": "Changed"}, key=f"agg-{i % 8}"))

    # Without the aggregate's sequence the event needs no read inside the transaction: what is
    # left is the pattern's own work (event id, headers) over the same append.
    unsequenced = Outbox(
        transactions, OutboxConfig(log=ns.name(f"outbox-unsequenced-{store.name}"), aggregate_sequence=False)
    )
    pattern, least = "transaction(put) + outbox event", MIN_TRIAL_SECONDS
    first, second = outbox_event(outbox, ns, "row"), outbox_event(outbox, ns, "row2-")
    third = outbox_event(unsequenced, ns, "row3-")
    return [
        await pair(label, ("transaction(put)", plain), (pattern, first), ops, trials, least),
        await pair(label, ("transaction(put + append)", by_hand), (pattern, second), ops, trials, least),
        await pair(
            label, ("transaction(put + append)", by_hand), (f"{pattern}, no sequence", third), ops, trials, least
        ),
    ]


async def outbox_relay_overhead(store: Driver, sink: Driver, ns: Namespace, ops: int, trials: int) -> dict:
    """The relay's publish rate against reading the store's log and sending to the sink by hand."""
    label = f"store={store.name} sink={sink.name}"
    queue = sink.queue()
    config = OutboxConfig(log=ns.name(f"outbox-{sink.name}"), batch_size=100)
    relayed_event = outbox_event(Outbox(store.transactions(), config), ns, f"relayed-{sink.name}-")
    relay = OutboxRelay(store.log(), store.keyvalue(), QueueSink(queue, ns.name("sink")), config, "bench")
    log, raw_log, raw_sink = store.log(), ns.name(f"raw-relay-{sink.name}"), ns.name(f"raw-sink-{sink.name}")

    async def relay_by_hand(_trial: int) -> Sample:
        """What the relay does, without its lease, fencing and offset: read the store's log in
        batches of 100 and send each record to the sink."""
        first = await log.append(raw_log, Message(PAYLOAD))
        for _ in range(ops - 1):  # not timed: the records to relay
            await log.append(raw_log, Message(PAYLOAD))
        started, sent, offset = time.perf_counter(), 0, first
        while sent < ops:
            records = await log.read(raw_log, offset, limit=min(100, ops - sent), wait=5.0)
            for record in records:
                await queue.send(raw_sink, record.message)
            sent, offset = sent + len(records), offset + len(records)
        return Sample(sent, time.perf_counter() - started, [])

    async def relay_drain(trial: int) -> Sample:
        for i in range(ops):  # not timed: the events the relay will publish
            await relayed_event(trial * ops + i)
        started, relayed = time.perf_counter(), 0
        while published := await relay.run_once():
            relayed += published
        return Sample(relayed, time.perf_counter() - started, [])

    return await pair_trials(
        label,
        ("log read + send by hand (batches of 100)", relay_by_hand),
        (f"relay publish ({ops} events, batches of 100)", relay_drain),
        trials,
    )


async def tiered_storage_overhead(
    kv_driver: Driver, objects_driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    """Tiered storage against the raw operations it wraps, interleaved: a put and a hot read
    (one reference read plus the copy, plus the access count's compare-and-set) against raw
    key-value calls, the migrator's move rate against raw get + put + delete, and a cold read
    against a raw object get."""
    label = f"hot+reference={kv_driver.name} cold={objects_driver.name}"
    kv, objects = kv_driver.keyvalue(), objects_driver.objects()
    prefix = ns.name(f"tier-{kv_driver.name}-{objects_driver.name}")
    config = TieredStorageConfig(
        reference_prefix=prefix + "-ref/", data_prefix=prefix + "-data/", bucket=prefix, rules=[]
    )
    cold = ObjectTier(objects, config.bucket, stream_threshold=config.stream_threshold, chunk_size=config.chunk_size)
    clock = [time.time()]
    store = TieredStorage({"hot": KeyValueTier(kv), "cold": cold}, kv, config, clock=lambda: clock[0])
    await store.prepare()
    rows = [
        await pair(
            label,
            ("raw kv put", lambda i: kv.put(f"{prefix}-raw{i}", PAYLOAD)),
            ("tiered put (hot)", lambda i: store.put(f"k{i}", PAYLOAD)),
            ops,
            trials,
        ),
        await pair(
            label,
            ("raw kv get", lambda i: kv.get(f"{prefix}-raw{i}")),
            ("tiered get (hot)", lambda i: store.get(f"k{i}")),
            ops,
            trials,
        ),
    ]

    async def raw_move(trial: int) -> Sample:
        for i in range(ops):  # not timed: what the moves will read
            await kv.put(f"{prefix}-raw{trial}-{i}", PAYLOAD)

        async def step(i: int) -> None:
            value = await kv.get(f"{prefix}-raw{trial}-{i}")
            await objects.put(config.bucket, f"{prefix}-moved{trial}-{i}", value or b"")
            await kv.delete(f"{prefix}-raw{trial}-{i}")

        return await run_ops(ops, step)

    migrator = Migrator(store)
    clock[0] += 2 * 86400  # not timed: the keys put above move now, so each trial moves only its own
    while await migrator.run_once():
        pass

    async def migrate(trial: int) -> Sample:
        for i in range(ops):  # not timed: keys that will be due for the cold tier
            await store.put(f"m{trial}-{i}", PAYLOAD)
        clock[0] += 2 * 86400  # past the hot tier's default ttl
        started, moved = time.perf_counter(), 0
        while done := await migrator.run_once():
            moved += done
        return Sample(max(moved, 1), time.perf_counter() - started, [])

    rows.append(
        await pair_trials(
            label, ("raw kv get + object put + kv delete", raw_move), ("migrate to cold", migrate), trials
        )
    )
    await objects.put(config.bucket, f"{prefix}-raw", PAYLOAD)
    rows.append(
        await pair(
            label,
            ("raw object get", lambda i: objects.get(config.bucket, f"{prefix}-raw")),
            ("tiered get (cold)", lambda i: store.get(f"m0-{i % ops}")),
            ops,
            trials,
        )
    )
    for name in [n async for n in objects.list_keys(config.bucket)]:
        await objects.delete(config.bucket, name)
    await objects.delete_bucket(config.bucket)
    return rows


async def claim_check_memory(objects_driver: Driver, ns: Namespace, size: int) -> dict:
    """Peak Python memory while streaming ``size`` bytes through claim and restore."""
    objects, bucket = objects_driver.objects(), ns.name("stream")
    await objects.create_bucket(bucket)
    claim_check = ClaimCheck(objects, ClaimCheckConfig(threshold=0, bucket=bucket, chunk_size=1 << 20))
    chunk = bytes(range(256)) * 4096

    async def source() -> AsyncIterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    message = await claim_check.outgoing_stream(source())
    restored = 0
    async for part in claim_check.incoming_stream(message):
        restored += len(part)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await claim_check.release(message)
    return {"backend": objects_driver.name, "payload_bytes": restored, "peak_bytes": peak, "peak_ratio": peak / size}


RATIO_HEADER = [
    "| combination | raw | pattern | raw ops/s | pattern ops/s | time ratio, median (IQR; min - max) | verdict |",
    "|---|---|---|---:|---:|---:|---|",
]
METHOD = (
    "Ratios: pattern time / raw time per operation, one per trial; trials interleave the two sides "
    "(alternating which runs first); each cell is the median of the per-trial ratios with their "
    "interquartile range and min - max. An interquartile range containing 1.00 reads 'no measurable difference'."
)


def markdown(results: dict) -> str:
    lines: list[str] = []
    if results.get("fsync_floor"):
        lines += [*floor.markdown(results["fsync_floor"]), ""]
    lines += [METHOD, ""]
    if results.get("sha256"):
        s = results["sha256"]
        lines += [
            f"SHA-256 of 64 KiB (the claim check's integrity check, its floor against an in-memory store): "
            f"{1000 / s['rate']:.3f} ms each; {rate_spread(s).text(',.0f', '/s')} over {s['trials']} trials.",
            "",
        ]
    lines += [
        "## Raw operations",
        "",
        "| backend | operation | ops/s, median (IQR; min - max) | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for m in results["operations"]:
        lines.append(
            f"| {m['backend']} | {m['operation']} | {rate_spread(m).text('.0f', '')} | {m['p50_ms']:.3f} "
            f"| {m['p99_ms']:.3f} |"
        )
    for title, section in (
        ("Claim check overhead", "claim_check"),
        ("Outbox overhead", "outbox"),
        ("Tiered storage overhead", "tiered_storage"),
        ("Driver vs raw client", "driver_vs_raw"),
    ):
        if results.get(section):
            lines += ["", f"## {title} (same run, interleaved trials)", "", *RATIO_HEADER]
            lines += ratio_rows(results[section])
    lines += [
        "",
        "## Claim check streaming memory",
        "",
        "| objects | payload MiB | peak traced MiB | peak / payload |",
        "|---|---:|---:|---:|",
    ]
    for r in results["memory"]:
        lines.append(
            f"| {r['backend']} | {r['payload_bytes'] / 2**20:.0f} | {r['peak_bytes'] / 2**20:.1f} "
            f"| {r['peak_ratio']:.3f} |"
        )
    lines += growth.markdown(results.get("growth", []), results.get("growth_slopes", []))
    if results.get("wal"):
        lines += wal_markdown(results["wal"])
    if results.get("wal_applier"):
        lines += applier_markdown(results["wal_applier"])
    lines += producer_consumer.markdown("Producer batching vs a raw publish loop", results.get("producer", []))
    lines += producer_consumer.markdown("Consumer vs a raw receive loop", results.get("consumer", []))
    lines += ["", "## Time to ready (servers started by the harness)", "", "| backend | seconds |", "|---|---:|"]
    for backend, seconds in results["time_to_ready"].items():
        lines.append(f"| {backend} | {seconds:.2f} |")
    if results.get("failover"):
        lines += failover_markdown(results["failover"])
    if "import_overhead" in results:
        lines += ["", *import_overhead.markdown(import_overhead.ImportOverhead(**results["import_overhead"]))]
    if results["unavailable"]:
        lines += ["", "Unavailable: " + "; ".join(f"{b}: {r}" for b, r in results["unavailable"].items())]
    return "\n".join(lines) + "\n"


def ratio_rows(rows: list[dict]) -> list[str]:
    return [
        f"| {r['combination']} | {r['raw']} | {r['pattern']} | {r['raw_rate']:.0f} | "
        f"{r['pattern_rate']:.0f} | {ratio_spread(r).text()} | {r['verdict']} |"
        for r in rows
    ]


Side = tuple[str, Step]  # a row's side: its label and its step
OBJECT_BODY = PAYLOAD * 16  # 4 KiB, as in the raw operations table


async def driver_vs_raw(runtime: PrismRuntime, driver: Driver, ns: Namespace, ops: int, trials: int) -> list[dict]:
    """Our driver against the same operation written directly with the client library, on the
    same server and the same kind of table, stream, topic or bucket: what the thin interface
    costs. Key-value put / get vs asyncpg (postgres) and redis.asyncio (redis); on NATS
    (nats, jetstream) kv put / get on the ``prism-kv`` bucket and log append / read(1) on a
    stream of the log's configuration vs nats-py; log append / read(1) on a one-partition topic
    vs aiokafka (kafka); objects put / get of 4 KiB vs minio in a worker thread, as the driver
    calls it (s3). Other backends: no rows."""
    compare = RAW_CLIENTS.get(driver.backend_name)
    if compare is None:
        return []
    async with contextlib.AsyncExitStack() as stack:
        return await compare(stack, runtime.endpoint(driver.name).url, driver, ns, ops, trials)


async def _postgres_vs_raw(
    stack: contextlib.AsyncExitStack, url: str, driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    import asyncpg

    pool = await asyncpg.create_pool(dsn=url, min_size=1, max_size=2)
    stack.push_async_callback(pool.close)
    upsert = (
        "INSERT INTO prism.kv (key, value, expires_at) VALUES ($1, $2, NULL) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL"
    )
    select = "SELECT value FROM prism.kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp())"
    put: Side = ("asyncpg put", lambda i: pool.execute(upsert, ns.name(f"raw{i}"), PAYLOAD))
    get: Side = ("asyncpg get", lambda i: pool.fetchval(select, ns.name(f"raw{i % 100}")))
    return await _driver_rows(f"backend={driver.name}", (put, get), _kv_sides(driver, ns), ops, trials)


async def _redis_vs_raw(
    stack: contextlib.AsyncExitStack, url: str, driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    stack.push_async_callback(client.aclose)
    put: Side = ("redis.asyncio put", lambda i: client.set(f"prism:kv:{ns.name(f'raw{i}')}".encode(), PAYLOAD))
    get: Side = ("redis.asyncio get", lambda i: client.get(f"prism:kv:{ns.name(f'raw{i % 100}')}".encode()))
    return await _driver_rows(f"backend={driver.name}", (put, get), _kv_sides(driver, ns), ops, trials)


async def _nats_vs_raw(
    stack: contextlib.AsyncExitStack, url: str, driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    """The driver's names are the harness's as they are ([a-z0-9-] needs no escaping): key
    ``k`` is subject ``$KV.prism-kv.k``, log ``l`` stream ``prism-log-l`` on ``prism.log.l``. Both
    key-value gets are direct gets (``$JS.API.DIRECT.GET``, last by subject)."""
    import nats
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

    nc = await nats.connect(url.split(","))  # a cluster's URL names every node, comma-separated
    stack.push_async_callback(nc.close)
    js, label = nc.jetstream(), f"backend={driver.name}"
    await driver.keyvalue().put(ns.name("ours-warmup"), PAYLOAD)  # the driver creates the bucket
    kv = await js.key_value("prism-kv")
    put: Side = ("nats-py kv.put", lambda i: kv.put(ns.name(f"raw{i}"), PAYLOAD))
    get: Side = ("nats-py kv.get", lambda i: kv.get(ns.name(f"raw{i % 100}")))
    raw_log = ns.name("raw-log")
    await js.add_stream(
        name=f"prism-log-{raw_log}",
        subjects=[f"prism.log.{raw_log}"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        num_replicas=1,
    )
    append: Side = ("nats-py js.publish", lambda i: js.publish(f"prism.log.{raw_log}", PAYLOAD))
    read: Side = ("nats-py get_msg(seq)", lambda i: js.get_msg(f"prism-log-{raw_log}", seq=i % 100 + 1))
    return await _driver_rows(label, (put, get), _kv_sides(driver, ns), ops, trials) + await _driver_rows(
        label, (append, read), _log_sides(driver, ns), ops, trials
    )


async def _kafka_vs_raw(
    stack: contextlib.AsyncExitStack, url: str, driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    """The clients as the driver configures them (producer acks=all; a consumer without a group
    assigned to partition 0, fetch_max_wait_ms 100); log ``l`` is topic ``l.log``."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap, topic = url.split("://", 1)[-1], f"{ns.name('raw-log')}.log"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    stack.push_async_callback(admin.close)
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    stack.push_async_callback(producer.stop)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="none", fetch_max_wait_ms=100
    )
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    consumer.assign([tp])

    async def read_one(i: int) -> None:
        consumer.seek(tp, i % 100)
        while not (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp):
            pass

    append: Side = ("aiokafka send_and_wait", lambda i: producer.send_and_wait(topic, PAYLOAD, partition=0))
    read: Side = ("aiokafka seek+getmany(1)", read_one)
    return await _driver_rows(f"backend={driver.name}", (append, read), _log_sides(driver, ns), ops, trials)


async def _s3_vs_raw(
    stack: contextlib.AsyncExitStack, url: str, driver: Driver, ns: Namespace, ops: int, trials: int
) -> list[dict]:
    """minio is synchronous: the raw side, like the driver, makes each call in a worker thread."""
    import urllib.parse

    from minio import Minio

    parts, bucket = urllib.parse.urlsplit(url), ns.name("raw-bucket")  # s3://ACCESS:SECRET@host:port
    client = Minio(
        parts.netloc.rpartition("@")[2],
        access_key=urllib.parse.unquote(parts.username or "") or None,
        secret_key=urllib.parse.unquote(parts.password or "") or None,
        secure=parts.scheme == "https",
        region="us-east-1",
    )
    stack.callback(client._http.clear)
    await asyncio.to_thread(client.make_bucket, bucket)

    def read(key: str) -> bytes:
        response = client.get_object(bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def write(i: int) -> Awaitable[object]:
        return asyncio.to_thread(client.put_object, bucket, f"o{i}", io.BytesIO(OBJECT_BODY), len(OBJECT_BODY))

    put: Side = ("minio put_object", write)
    get: Side = ("minio get_object", lambda i: asyncio.to_thread(read, f"o{i % 100}"))
    return await _driver_rows(f"backend={driver.name}", (put, get), await _object_sides(driver, ns), ops, trials)


def _kv_sides(driver: Driver, ns: Namespace) -> tuple[Side, Side]:
    kv = driver.keyvalue()
    return (
        ("driver kv.put", lambda i: kv.put(ns.name(f"ours{i}"), PAYLOAD)),
        ("driver kv.get", lambda i: kv.get(ns.name(f"ours{i % 100}"))),
    )


def _log_sides(driver: Driver, ns: Namespace) -> tuple[Side, Side]:
    log, name = driver.log(), ns.name("ours-log")
    return (
        ("driver log.append", lambda i: log.append(name, Message(PAYLOAD))),
        ("driver log.read(1)", lambda i: log.read(name, i % 100, limit=1)),
    )


async def _object_sides(driver: Driver, ns: Namespace) -> tuple[Side, Side]:
    objects, bucket = driver.objects(), ns.name("ours-bucket")
    await objects.create_bucket(bucket)
    return (
        ("driver objects.put(4KiB)", lambda i: objects.put(bucket, f"o{i}", OBJECT_BODY)),
        ("driver objects.get(4KiB)", lambda i: objects.get(bucket, f"o{i % 100}")),
    )


async def _driver_rows(
    label: str, raw: tuple[Side, Side], ours: tuple[Side, Side], ops: int, trials: int
) -> list[dict]:
    """Two rows: a write (any index is a fresh write, so its rounds are lengthened) and a read
    of one of the first 100 indices, which both sides write first, untimed."""
    (raw_write, raw_read), (our_write, our_read) = raw, ours
    for i in range(100):  # not timed: what the reads read
        await our_write[1](i)
        await raw_write[1](i)
    return [
        await pair(label, raw_write, our_write, ops, trials, MIN_TRIAL_SECONDS),
        await pair(label, raw_read, our_read, ops, trials),
    ]


RawComparison = Callable[[contextlib.AsyncExitStack, str, Driver, Namespace, int, int], Awaitable[list[dict]]]
RAW_CLIENTS: dict[str, RawComparison] = {
    "postgres": _postgres_vs_raw,
    "redis": _redis_vs_raw,
    "nats": _nats_vs_raw,
    "kafka": _kafka_vs_raw,
    "s3": _s3_vs_raw,
}


def claim_check_pairs(firsts: list[Driver], seconds: list[Driver]) -> list[tuple[Driver, Driver]]:
    """Every first backend with the in-memory second (the first one's side of the cost) and every
    second with the in-memory first, rather than the full cross product, which takes most of the
    run and adds nothing a row of each does not show."""
    memory_first = next((d for d in firsts if d.name == "memstore"), firsts[0] if firsts else None)
    memory_second = next((d for d in seconds if d.name == "memstore"), seconds[0] if seconds else None)
    pairs = [(d, memory_second) for d in firsts if memory_second is not None]
    pairs += [(memory_first, d) for d in seconds if memory_first is not None and d is not memory_second]
    return pairs


def select(registry: BackendRegistry, which: str) -> list[BackendSpec]:
    if which == "all":
        return list(registry)
    if which == "embedded":
        return registry.embedded
    return registry.select(part.strip() for part in which.split(",") if part.strip())


def compare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run compare",
        description="Compare two results.json files; exit 1 when a row regressed beyond its spread.",
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    changes, table = compare_files(args.before, args.after)
    print(table)
    return 1 if any(c.status == "regression" for c in changes) else 0


@dataclass
class Bench:
    """What every section measures with: the running backends' drivers, one namespace for all
    their keys, and the command line's sizes."""

    runtime: PrismRuntime
    drivers: dict[str, Driver]
    ns: Namespace
    args: argparse.Namespace

    def supporting(self, capability: Capability) -> list[Driver]:
        return [d for d in self.drivers.values() if d.supports(capability)]

    def purge(self) -> None:
        for driver in self.drivers.values():
            self.runtime.run(driver.purge(self.ns.prefix))


Section = Callable[[Bench, dict], None]  # fills its own keys of the results


def _operations(bench: Bench, results: dict) -> None:
    for driver in bench.drivers.values():
        print(f"measuring {driver.name} ...", file=sys.stderr)
        rates = bench.runtime.run(interface_rates(driver, bench.ns, bench.args.ops, bench.args.trials))
        results["operations"] += [asdict(m) for m in rates]


def _claim_check(bench: Bench, results: dict) -> None:
    for messaging, store in claim_check_pairs(bench.supporting(Capability.QUEUE), bench.supporting(Capability.OBJECTS)):
        print(f"claim check: {messaging.name} x {store.name} ...", file=sys.stderr)
        results["claim_check"] += bench.runtime.run(
            claim_check_overhead(messaging, store, bench.ns, bench.args.ops, bench.args.trials)
        )


def _outbox(bench: Bench, results: dict) -> None:
    ns, ops, trials = bench.ns, bench.args.ops, bench.args.trials
    transactional = bench.supporting(Capability.TRANSACTIONS)
    for store in transactional:
        print(f"outbox commit: {store.name} ...", file=sys.stderr)
        results["outbox"] += bench.runtime.run(outbox_commit_overhead(store, ns, ops, trials))
    for store, sink in claim_check_pairs(transactional, bench.supporting(Capability.QUEUE)):  # each once, not all pairs
        print(f"outbox relay: {store.name} -> {sink.name} ...", file=sys.stderr)
        results["outbox"].append(bench.runtime.run(outbox_relay_overhead(store, sink, ns, ops, trials)))


def _driver_vs_raw(bench: Bench, results: dict) -> None:
    for driver in bench.drivers.values():  # backends without a raw comparison give no rows
        print(f"driver vs raw client: {driver.name} ...", file=sys.stderr)
        results["driver_vs_raw"] += bench.runtime.run(
            driver_vs_raw(bench.runtime, driver, bench.ns, bench.args.ops, bench.args.trials)
        )


def _memory(bench: Bench, results: dict) -> None:
    for store in bench.supporting(Capability.OBJECTS):
        if store.name != "memstore":  # memstore keeps objects in memory by design
            results["memory"].append(
                bench.runtime.run(claim_check_memory(store, bench.ns, bench.args.stream_mib << 20))
            )


def _tiered_storage(bench: Bench, results: dict) -> None:
    stores = bench.supporting(Capability.OBJECTS)
    tiered = [Capability.KEYVALUE, Capability("keyvalue.cas"), Capability("keyvalue.scan")]
    for kv_driver in [d for d in bench.drivers.values() if all(d.supports(c) for c in tiered)]:
        # the first object store, and the key-value backend's own when it is one
        for store in stores[:1] + [s for s in stores[1:] if s.name == kv_driver.name]:
            print(f"tiered storage: {kv_driver.name} + {store.name} ...", file=sys.stderr)
            results["tiered_storage"] += bench.runtime.run(
                tiered_storage_overhead(kv_driver, store, bench.ns, bench.args.ops, bench.args.trials)
            )


def _wal(bench: Bench, results: dict) -> None:
    for spec in bench.runtime.available:
        driver = bench.drivers[spec.name]
        if spec.properties.durable and driver.supports(Capability.LOG) and driver.supports(Capability.KEYVALUE):
            print(f"measuring the WAL on {spec.name} ...", file=sys.stderr)
            results["wal"] += bench.runtime.run(wal_rows(driver, spec, bench.ns, bench.args.ops, bench.args.trials))
            results["wal_applier"] += bench.runtime.run(applier_rows(driver, spec, bench.ns, bench.args.ops))


def _against_raw_loop(section: str, rows_of: Callable[[Driver, Namespace, int, int], Awaitable[list[dict]]]) -> Section:
    """The producer's or the consumer's section: each backend's rows isolated, so a failure is
    an error row rather than the end of the run."""

    def measure(bench: Bench, results: dict) -> None:
        for driver in producer_consumer.fitting(list(bench.drivers.values())):
            print(f"{section} vs raw loop: {driver.name} ...", file=sys.stderr)
            rows = rows_of(driver, bench.ns, bench.args.ops, bench.args.trials)
            results[section] += bench.runtime.run(producer_consumer.isolated(section, driver, rows))

    return measure


def _growth(bench: Bench, results: dict) -> None:
    sizes = [int(size) for size in bench.args.growth_sizes.split(",")]
    trials = bench.args.trials
    for name in growth.LOG_BACKENDS:
        if name in bench.drivers:
            print(f"growth: {name} log ...", file=sys.stderr)
            results["growth"] += bench.runtime.run(
                growth.log_read_growth(bench.drivers[name], bench.ns, sizes, 200, trials)
            )
    for name in growth.QUEUE_BACKENDS:
        if name in bench.drivers:
            print(f"growth: {name} queue ...", file=sys.stderr)
            capped = [n for n in sizes if n <= growth.DURABLE_QUEUE_MAX or name == "memstore"]
            results["growth"] += bench.runtime.run(
                growth.queue_receive_growth(bench.drivers[name], bench.ns, capped, 200, trials)
            )
    print("growth: checkers ...", file=sys.stderr)
    results["growth"] += growth.checker_growth(sizes, min(trials, 3))
    results["growth_slopes"] = growth.with_slopes(results["growth"])


def _failover(bench: Bench, results: dict) -> None:
    for name in bench.drivers:
        control = bench.runtime.control(name)
        if isinstance(control, FailoverCluster):
            print(f"failover: {name} ...", file=sys.stderr)
            results["failover"].append(failover_row(name, control, bench.args.trials))


# The order the sections run in. Failover stays last because each of its trials moves the primary
# under the drivers: every other section, and main's purge of the namespace, must use them before.
SECTIONS: dict[str, Section] = {
    "operations": _operations,
    "claim_check": _claim_check,
    "outbox": _outbox,
    "driver_vs_raw": _driver_vs_raw,
    "memory": _memory,
    "tiered_storage": _tiered_storage,
    "wal": _wal,
    "producer": _against_raw_loop("producer", producer_consumer.producer_rows),
    "consumer": _against_raw_loop("consumer", producer_consumer.consumer_rows),
    "growth": _growth,
    "failover": _failover,
}


def chosen_sections(value: str) -> set[str]:
    """``--sections``: names from SECTIONS, comma-separated, or all."""
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    if "all" in chosen:
        return set(SECTIONS)
    unknown = sorted(chosen - SECTIONS.keys())
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown)}: choose from {', '.join(SECTIONS)} (or all)"
        )
    return chosen


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prism-backend", default="all")
    parser.add_argument("--ops", type=int, default=100, help="operations per side per trial")
    parser.add_argument("--stream-mib", type=int, default=64, help="payload size for the memory measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--import-trials", type=int, default=15, help="pairs of pytest runs (0: skip)")
    parser.add_argument(
        "--sections",
        type=chosen_sections,
        default="all",
        help=f"comma-separated, run in this order: {', '.join(SECTIONS)} (or all)",
    )
    parser.add_argument("--trials", type=int, default=5, help="interleaved trials per row")
    parser.add_argument("--growth-sizes", default="1000,10000,100000", help="sizes of the growth table")
    return parser


def _empty_results(runtime: PrismRuntime, args: argparse.Namespace) -> dict:
    """The machine's floors, and an empty place for every section's rows."""
    print("measuring the fsync floor ...", file=sys.stderr)
    return {
        "fsync_floor": floor.fsync_floor(),
        "sha256": sha256_row(args.ops, args.trials),
        "operations": [],
        "claim_check": [],
        "outbox": [],
        "tiered_storage": [],
        "driver_vs_raw": [],
        "memory": [],
        "wal": [],
        "wal_applier": [],
        "producer": [],
        "consumer": [],
        "growth": [],
        "growth_slopes": [],
        "time_to_ready": {},
        "failover": [],
        "unavailable": runtime.unavailable,
    }


def _time_to_ready(runtime: PrismRuntime, drivers: dict[str, Driver]) -> dict[str, float]:
    """How long each server the harness started took to accept connections."""
    ready = {}
    for name in drivers:
        seconds = getattr(runtime.control(name), "time_to_ready", None)
        if seconds is not None:
            ready[name] = seconds
    return ready


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    args = argument_parser().parse_args(argv)
    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, select(registry, args.prism_backend), {}, NamespaceFactory(worker="bench"))
    try:  # the floors too: an interrupt while they are measured still closes the runtime
        results = _empty_results(runtime, args)
        drivers = {spec.name: runtime.driver(spec.name) for spec in runtime.available}
        results["time_to_ready"] = _time_to_ready(runtime, drivers)
        bench = Bench(runtime, drivers, runtime.namespaces.new(), args)
        for name, section in SECTIONS.items():
            if name == "failover":  # clean up while the drivers still reach their primaries
                bench.purge()
            if name in args.sections:
                section(bench, results)
    finally:
        runtime.close()
    if args.import_trials > 0:
        print("measuring the plugin's import overhead ...", file=sys.stderr)
        results["import_overhead"] = asdict(import_overhead.measure(args.import_trials))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
