"""Side-by-side benchmarks: every backend's raw operation rates and latencies, the claim
check's, the outbox's and tiered storage's overhead as ratios against the raw operations they
replace, the claim check's memory bound, server time-to-ready, and what the installed plugin
adds to an unrelated pytest run (``benchmarks.import_overhead``, side by side with ``-p no:prism``).

    python -m benchmarks.run --prism-backend=all --ops 300 --out benchmarks/results

Everything is measured in one run on one machine, so the ratios are comparable; absolute
numbers are this machine's. Nothing here asserts a timing: tests never do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckQueue
from prism_testkit.patterns.outbox import Outbox, OutboxConfig, OutboxRelay, QueueSink
from prism_testkit.patterns.tiered_storage import (
    KeyValueTier,
    Migrator,
    ObjectTier,
    TieredStorage,
    TieredStorageConfig,
)

from benchmarks import import_overhead
from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.interfaces import Message
from prism_testkit.isolation import Namespace, NamespaceFactory
from prism_testkit.registry import BackendRegistry, BackendSpec, build_registry, make_plugin_manager
from prism_testkit.runtime import PrismRuntime

from .wal import applier_markdown, applier_rows, wal_markdown, wal_rows

PAYLOAD = b"x" * 256


@dataclass
class Measurement:
    backend: str
    operation: str
    ops: int
    rate: float  # operations per second
    p50_ms: float
    p99_ms: float


async def measure(backend: str, operation: str, ops: int, step: Callable[[int], Awaitable[object]]) -> Measurement:
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(ops):
        t0 = time.perf_counter()
        await step(i)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Measurement(backend, operation, ops, ops / elapsed, cuts[49] * 1000, cuts[98] * 1000)


async def interface_rates(driver: Driver, ns: Namespace, ops: int) -> list[Measurement]:
    name, out = driver.name, []
    if driver.supports(Capability.KEYVALUE):
        kv = driver.keyvalue()
        out.append(await measure(name, "kv.put", ops, lambda i: kv.put(ns.name(f"k{i}"), PAYLOAD)))
        out.append(await measure(name, "kv.get", ops, lambda i: kv.get(ns.name(f"k{i}"))))
    if driver.supports(Capability.QUEUE):
        queue, q = driver.queue(), ns.name("q")
        out.append(await measure(name, "queue.send", ops, lambda i: queue.send(q, Message(PAYLOAD))))

        async def receive_ack(_: int) -> None:
            delivery = await queue.receive(q, wait=5.0)
            assert delivery is not None
            await queue.ack(q, delivery)

        out.append(await measure(name, "queue.receive+ack", ops, receive_ack))
    if driver.supports(Capability.LOG):
        log, lname = driver.log(), ns.name("log")
        out.append(await measure(name, "log.append", ops, lambda i: log.append(lname, Message(PAYLOAD))))
        out.append(await measure(name, "log.read(1)", ops, lambda i: log.read(lname, i, limit=1)))
    if driver.supports(Capability.PUBSUB):
        pubsub, topic = driver.pubsub(), ns.name("topic")
        subscription = await pubsub.subscribe(topic)

        async def round_trip(_: int) -> None:
            await pubsub.publish(topic, Message(PAYLOAD))
            assert await subscription.receive(5.0) is not None

        out.append(await measure(name, "pubsub.publish->receive", ops, round_trip))
        await subscription.close()
    if driver.supports(Capability.OBJECTS):
        objects, bucket, body = driver.objects(), ns.name("bucket"), PAYLOAD * 16
        await objects.create_bucket(bucket)
        out.append(await measure(name, "objects.put(4KiB)", ops, lambda i: objects.put(bucket, f"o{i}", body)))
        out.append(await measure(name, "objects.get(4KiB)", ops, lambda i: objects.get(bucket, f"o{i}")))
    if driver.supports(Capability.TRANSACTIONS):
        transactions, tlog = driver.transactions(), ns.name("txlog")

        async def commit(i: int) -> None:
            async with transactions.transaction() as t:
                await t.put(ns.name(f"t{i}"), PAYLOAD)
                await t.append(tlog, Message(PAYLOAD))

        out.append(await measure(name, "transaction(put+append)", ops, commit))
    return out


async def claim_check_overhead(messaging: Driver, objects_driver: Driver, ns: Namespace, ops: int) -> list[dict]:
    """Pattern vs raw, on the same backends in the same run: below the threshold the pattern
    only inspects the size (ratio vs raw send); above it, vs raw object put + raw send."""
    queue, objects = messaging.queue(), objects_driver.objects()
    bucket, q = ns.name("claims"), ns.name("ccq")
    await objects.create_bucket(bucket)
    claim_check = ClaimCheck(objects, ClaimCheckConfig(threshold=1024, bucket=bucket, on_consume="keep"))
    claimed = ClaimCheckQueue(queue, claim_check)
    small, large = b"s" * 512, bytes(range(256)) * 256  # 512 B inline, 64 KiB claimed
    label = f"messaging={messaging.name} objects={objects_driver.name}"
    raw_small = await measure(label, "raw send 512B", ops, lambda i: queue.send(q, Message(small)))
    cc_small = await measure(label, "claim check send 512B", ops, lambda i: claimed.send(q, Message(small)))

    async def raw_put_send(i: int) -> None:
        await objects.put(bucket, f"raw{i}", large)
        await queue.send(q, Message(b"", {"ref": f"raw{i}"}))

    raw_large = await measure(label, "raw put+send 64KiB", ops, raw_put_send)
    cc_large = await measure(label, "claim check send 64KiB", ops, lambda i: claimed.send(q, Message(large)))
    return [ratio(label, raw_small, cc_small), ratio(label, raw_large, cc_large)]


def ratio(label: str, raw: Measurement, pattern: Measurement) -> dict:
    """One side-by-side row: the pattern against the raw operations it replaces."""
    return {
        "combination": label,
        "raw": raw.operation,
        "pattern": pattern.operation,
        "raw_rate": raw.rate,
        "pattern_rate": pattern.rate,
        "time_ratio": raw.rate / pattern.rate,  # >1: the pattern is slower by this factor
    }


async def outbox_overhead(store: Driver, sink: Driver, ns: Namespace, ops: int) -> list[dict]:
    """The outbox against what it replaces, in the same run: a business transaction with and
    without its outbox event, and the relay's publish rate against raw sends to the sink."""
    label = f"store={store.name} sink={sink.name}"
    transactions, queue = store.transactions(), sink.queue()
    config = OutboxConfig(log=ns.name(f"outbox-{sink.name}"), batch_size=100)
    outbox = Outbox(transactions, config)

    async def plain(i: int) -> None:
        async with transactions.transaction() as t:
            await t.put(ns.name(f"plain{i}"), PAYLOAD)

    async def with_event(i: int) -> None:
        async with outbox.transaction() as t:
            await t.put(ns.name(f"row{i}"), PAYLOAD)
            await t.publish(f"agg-{i % 8}", "Changed", PAYLOAD)

    raw_commit = await measure(label, "transaction(put)", ops, plain)
    outbox_commit = await measure(label, "transaction(put) + outbox event", ops, with_event)
    raw_send = await measure(label, "raw send", ops, lambda i: queue.send(ns.name("raw-sink"), Message(PAYLOAD)))
    relay = OutboxRelay(store.log(), store.keyvalue(), QueueSink(queue, ns.name("sink")), config, "bench")
    started = time.perf_counter()
    relayed = 0
    while published := await relay.run_once():
        relayed += published
    elapsed = time.perf_counter() - started
    operation = f"relay publish ({relayed} events, batches of 100)"
    relay_rate = Measurement(label, operation, relayed, relayed / elapsed, 0.0, 0.0)  # a rate, no per-op latency
    return [ratio(label, raw_commit, outbox_commit), ratio(label, raw_send, relay_rate)]


async def tiered_storage_overhead(kv_driver: Driver, objects_driver: Driver, ns: Namespace, ops: int) -> list[dict]:
    """Tiered storage against the raw operations it wraps, in the same run: a put and a hot
    read (one reference read plus the copy, plus the access count's compare-and-set) against
    raw key-value calls, a cold read against a raw object get, and the migrator's move rate."""
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
    raw_put = await measure(label, "raw kv put", ops, lambda i: kv.put(f"{prefix}-raw{i}", PAYLOAD))
    tiered_put = await measure(label, "tiered put (hot)", ops, lambda i: store.put(f"k{i}", PAYLOAD))
    raw_get = await measure(label, "raw kv get", ops, lambda i: kv.get(f"{prefix}-raw{i}"))
    hot_get = await measure(label, "tiered get (hot)", ops, lambda i: store.get(f"k{i}"))
    clock[0] += 2 * 86400  # past the hot tier's default ttl: every key is due for the cold tier
    migrator = Migrator(store)
    started, moved = time.perf_counter(), 0
    while done := await migrator.run_once():
        moved += done
    elapsed = time.perf_counter() - started
    move_rate = Measurement(label, f"migrate to cold ({moved} keys)", moved, moved / elapsed, 0.0, 0.0)
    await objects.put(config.bucket, f"{prefix}-raw", PAYLOAD)
    raw_object_get = await measure(label, "raw object get", ops, lambda i: objects.get(config.bucket, f"{prefix}-raw"))
    cold_get = await measure(label, "tiered get (cold)", ops, lambda i: store.get(f"k{i}"))

    async def raw_move_step(i: int) -> None:
        value = await kv.get(f"{prefix}-raw{i}")
        await objects.put(config.bucket, f"{prefix}-moved{i}", value or b"")
        await kv.delete(f"{prefix}-raw{i}")

    raw_move = await measure(label, "raw kv get + object put + kv delete", ops, raw_move_step)

    rows = [ratio(label, raw_put, tiered_put), ratio(label, raw_get, hot_get), ratio(label, raw_object_get, cold_get)]
    rows.append(ratio(label, raw_move, move_rate))
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


def markdown(results: dict) -> str:
    lines = ["## Raw operations", "", "| backend | operation | ops/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]
    for m in results["operations"]:
        lines.append(f"| {m['backend']} | {m['operation']} | {m['rate']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} |")
    lines += [
        "",
        "## Claim check overhead (same run)",
        "",
        "| combination | raw | pattern | raw ops/s | pattern ops/s | time ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += ratio_rows(results["claim_check"])
    lines += [
        "",
        "## Outbox overhead (same run)",
        "",
        "| combination | raw | pattern | raw ops/s | pattern ops/s | time ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += ratio_rows(results["outbox"])
    lines += [
        "",
        "## Tiered storage overhead (same run)",
        "",
        "| combination | raw | pattern | raw ops/s | pattern ops/s | time ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += ratio_rows(results["tiered_storage"])
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
    if results.get("wal"):
        lines += wal_markdown(results["wal"])
    if results.get("wal_applier"):
        lines += applier_markdown(results["wal_applier"])
    lines += ["", "## Time to ready (servers started by the harness)", "", "| backend | seconds |", "|---|---:|"]
    for backend, seconds in results["time_to_ready"].items():
        lines.append(f"| {backend} | {seconds:.2f} |")
    if "import_overhead" in results:
        lines += ["", *import_overhead.markdown(import_overhead.ImportOverhead(**results["import_overhead"]))]
    if results["unavailable"]:
        lines += ["", "Unavailable: " + "; ".join(f"{b}: {r}" for b, r in results["unavailable"].items())]
    return "\n".join(lines) + "\n"


def ratio_rows(rows: list[dict]) -> list[str]:
    return [
        f"| {r['combination']} | {r['raw']} | {r['pattern']} | {r['raw_rate']:.0f} | "
        f"{r['pattern_rate']:.0f} | {r['time_ratio']:.2f}x |"
        for r in rows
    ]


def select(registry: BackendRegistry, which: str) -> list[BackendSpec]:
    if which == "all":
        return list(registry)
    if which == "embedded":
        return registry.embedded
    return registry.select(part.strip() for part in which.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prism-backend", default="all")
    parser.add_argument("--ops", type=int, default=300, help="operations per measurement")
    parser.add_argument("--stream-mib", type=int, default=64, help="payload size for the memory measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--import-trials", type=int, default=15, help="pairs of pytest runs (0: skip)")
    parser.add_argument(
        "--sections",
        default="all",
        help="comma-separated: operations, claim_check, outbox, tiered_storage, memory, wal (or all)",
    )
    parser.add_argument("--trials", type=int, default=5, help="interleaved trials per WAL row")
    args = parser.parse_args(argv)

    registry = build_registry(make_plugin_manager())
    runtime = PrismRuntime(registry, select(registry, args.prism_backend), {}, NamespaceFactory(worker="bench"))
    results: dict = {
        "operations": [],
        "claim_check": [],
        "outbox": [],
        "tiered_storage": [],
        "memory": [],
        "wal": [],
        "wal_applier": [],
        "time_to_ready": {},
        "unavailable": runtime.unavailable,
    }
    try:
        drivers = {spec.name: runtime.driver(spec.name) for spec in runtime.available}
        for name in drivers:
            control = runtime.control(name)
            if control is not None and getattr(control, "time_to_ready", None) is not None:
                results["time_to_ready"][name] = control.time_to_ready
        ns = runtime.namespaces.new()
        sections = set(results) if args.sections == "all" else {s.strip() for s in args.sections.split(",")}
        if "operations" in sections:
            for driver in drivers.values():
                print(f"measuring {driver.name} ...", file=sys.stderr)
                results["operations"] += [asdict(m) for m in runtime.run(interface_rates(driver, ns, args.ops))]
        queues = [d for d in drivers.values() if d.supports(Capability.QUEUE)]
        stores = [d for d in drivers.values() if d.supports(Capability.OBJECTS)]
        if "claim_check" in sections:
            for messaging in queues:
                for store in stores:
                    results["claim_check"] += runtime.run(claim_check_overhead(messaging, store, ns, args.ops))
        if "outbox" in sections:
            for store in [d for d in drivers.values() if d.supports(Capability.TRANSACTIONS)]:
                for sink in queues:
                    results["outbox"] += runtime.run(outbox_overhead(store, sink, ns, args.ops))
        if "memory" in sections:
            for store in stores:
                if store.name != "memstore":  # memstore keeps objects in memory by design
                    results["memory"].append(runtime.run(claim_check_memory(store, ns, args.stream_mib << 20)))
        if "tiered_storage" in sections:
            tiered = [Capability.KEYVALUE, Capability("keyvalue.cas"), Capability("keyvalue.scan")]
            for kv_driver in [d for d in drivers.values() if all(d.supports(c) for c in tiered)]:
                for store in stores[:1] + [s for s in stores[1:] if s.name == kv_driver.name]:
                    results["tiered_storage"] += runtime.run(tiered_storage_overhead(kv_driver, store, ns, args.ops))
        if "wal" in sections:
            for spec in runtime.available:
                driver = drivers[spec.name]
                if spec.properties.durable and driver.supports(Capability.LOG) and driver.supports(Capability.KEYVALUE):
                    print(f"measuring the WAL on {spec.name} ...", file=sys.stderr)
                    results["wal"] += runtime.run(wal_rows(driver, spec, ns, args.ops, args.trials))
                    results["wal_applier"] += runtime.run(applier_rows(driver, spec, ns, args.ops))
        for driver in drivers.values():
            runtime.run(driver.purge(ns.prefix))
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
