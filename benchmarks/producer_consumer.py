"""The producer's batched publishing against a raw publish loop, and the consumer against a raw
receive loop, per backend with a queue, in one run (issue #40).

Producer: one trial hands ``messages`` fresh messages to a started :class:`Producer` with
``send`` and waits for the last (``flush``), at batch sizes 1, 16 and 128, without and with
deduplication (the marks in the same backend's key-value: a ``get`` before each message is queued
and a ``put`` after the sink accepted it); the raw side is ``queue.send`` of as many fresh messages in a
loop. A queue has no batch call, so batching cannot beat the loop here: the ratio is what the
pattern's buffering, flusher hand-off, ids and headers (and the marks) cost per message.

Consumer: ``messages`` messages (each with a ``prism-message-id``, as the producer sends them)
are queued untimed; the raw side receives and acks them one by one; the consumer side calls
``poll()`` as many times (receive, processed-mark lookup, a no-op handler, the mark's write with
its TTL, ack), and the log rows read the same number of records in batches of 100 by hand
against a log consumer saving its position after every record and after every 100.

Every trial of a backend runs all its sides back to back in rotating order (raw included, so one
raw trial is the baseline of every pattern side of that trial); a row is the median of the
per-trial time ratios with their spread. A backend's rows are measured under one time bound, and
a backend that fails gives an error row instead of its rows: the other backends and sections
are not affected.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable

from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Message
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.consumer import Consumer, ConsumerConfig
from prism_testkit.patterns.producer import Producer, ProducerConfig

from .stats import interleaved, ratio_fields, ratios

BATCH_SIZES = (1, 16, 128)
PAYLOAD = b"x" * 256
MIN_TRIAL_SECONDS = 0.1  # the raw side's trial; faster backends get more messages per trial
MAX_MESSAGES = 128 * 40
BACKEND_BOUND = 150.0  # seconds for one backend's rows: a hung server costs this, not the run
_serial = itertools.count()

Trial = Callable[[int], Awaitable[float]]  # trial number -> seconds


def fresh(prefix: str) -> Message:
    """A message never sent before: with deduplication every one is published (no mark hit)."""
    n = next(_serial)
    return Message(n.to_bytes(8, "big") + PAYLOAD[8:], {MESSAGE_ID_HEADER: f"{prefix}-{n}"})


def round_up(n: int, multiple: int) -> int:
    return max(multiple, math.ceil(n / multiple) * multiple)


async def timed(body: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await body()
    return time.perf_counter() - started


async def messages_per_trial(ops: int, send: Callable[[], Awaitable[object]]) -> int:
    """``ops`` rounded up to a multiple of the largest batch, more when the raw loop is so fast
    that a trial would last under ``MIN_TRIAL_SECONDS`` (probe: 20 sends)."""
    probe = await timed(lambda: _repeat(20, send))
    wanted = max(ops, math.ceil(MIN_TRIAL_SECONDS / max(probe / 20, 1e-9)))
    return min(MAX_MESSAGES, round_up(wanted, max(BATCH_SIZES)))


async def _repeat(n: int, step: Callable[[], Awaitable[object]]) -> None:
    for _ in range(n):
        await step()


def rows_of(label: str, raw: str, messages: int, measured: dict[str, list[float]]) -> list[dict]:
    """One row per pattern side: its per-trial time against the same trial's raw time."""
    raw_seconds = measured.pop(raw)
    rows = []
    for name, seconds in measured.items():
        rows.append(
            {
                "combination": label,
                "raw": raw,
                "pattern": name,
                "messages": messages,
                "raw_rate": messages / statistics.median(raw_seconds),
                "pattern_rate": messages / statistics.median(seconds),
                "raw_us": 1e6 * statistics.median(raw_seconds) / messages,
                "pattern_us": 1e6 * statistics.median(seconds) / messages,
                **ratio_fields(ratios(raw_seconds, seconds)),
            }
        )
    return rows


async def producer_rows(driver: Driver, ns: Namespace, ops: int, trials: int) -> list[dict]:
    queue, kv = driver.queue(), driver.keyvalue()
    label = f"sink=queue on {driver.name}, state=its key-value"
    raw_queue = ns.name(f"pc-raw-{driver.name}")
    messages = await messages_per_trial(ops, lambda: queue.send(raw_queue, fresh("probe")))

    async def raw(_trial: int) -> float:
        batch = [fresh("raw") for _ in range(messages)]

        async def loop() -> None:
            for message in batch:
                await queue.send(raw_queue, message)

        return await timed(loop)

    producers: dict[str, Producer] = {}
    for size in BATCH_SIZES:
        for dedup in (False, True):
            config = ProducerConfig(
                destination=ns.name(f"pc-producer-{driver.name}-{size}-{int(dedup)}"),
                batch_size=size,
                batch_interval=1.0,  # a batch goes out when full (or on the closing flush)
                deduplication=dedup,
                state_prefix=ns.name(f"pc-dedup-{size}/"),
            )
            name = f"producer batch {size}" + (", dedup marks" if dedup else "")
            producers[name] = Producer(queue, config, state=kv if dedup else None)

    def producing(producer: Producer) -> Trial:
        async def trial(_trial: int) -> float:
            batch = [fresh("producer") for _ in range(messages)]

            async def body() -> None:
                futures = [await producer.send(message) for message in batch]
                await producer.flush()
                for future in futures:
                    future.result()  # raises if one failed: a failed publish is no measurement

            return await timed(body)

        return trial

    sides: dict[str, Trial] = {"raw queue.send loop": raw}
    sides.update({name: producing(p) for name, p in producers.items()})
    for p in producers.values():
        await p.start()
    try:
        measured = await interleaved(list(sides), trials, lambda name, t: sides[name](t))
    finally:
        for p in producers.values():
            await p.stop(within=10.0)
    return rows_of(label, "raw queue.send loop", messages, measured)


async def consumer_rows(driver: Driver, ns: Namespace, ops: int, trials: int) -> list[dict]:
    queue, kv = driver.queue(), driver.keyvalue()
    label = f"source=queue/log on {driver.name}, state=its key-value"
    raw_queue, our_queue = ns.name(f"pc-rawq-{driver.name}"), ns.name(f"pc-conq-{driver.name}")
    messages = await messages_per_trial(ops, lambda: queue.send(ns.name("pc-probe"), fresh("probe")))

    async def fill(name: str) -> None:  # not timed
        for _ in range(messages):
            await queue.send(name, fresh("c"))

    async def raw(_trial: int) -> float:
        await fill(raw_queue)

        async def loop() -> None:
            for _ in range(messages):
                delivery = await queue.receive(raw_queue, wait=5.0)
                assert delivery is not None, "raw receive: a queued message did not come"
                await queue.ack(raw_queue, delivery)

        return await timed(loop)

    async def handle(_message: Message) -> None:
        return None

    consumer = Consumer(
        queue,
        kv,
        handle,
        ConsumerConfig(source=our_queue, name="bench", poll_wait=5.0, state_prefix=ns.name("pc-consumer/")),
        background=False,
    )

    async def consume(_trial: int) -> float:
        await fill(our_queue)

        async def loop() -> None:
            for _ in range(messages):
                if not await consumer.poll():
                    raise RuntimeError("consumer poll: a queued message did not come")

        return await timed(loop)

    sides: dict[str, Trial] = {"raw receive+ack loop": raw, "consumer poll (mark get + put, ack)": consume}
    rows: list[dict] = []
    await consumer.start()
    try:
        measured = await interleaved(list(sides), trials, lambda name, t: sides[name](t))
    finally:
        await consumer.stop(within=10.0)
    rows += rows_of(label, "raw receive+ack loop", messages, measured)
    if driver.supports(Capability.LOG):
        rows += await consumer_log_rows(driver, ns, messages, trials, label)
    return rows


async def consumer_log_rows(driver: Driver, ns: Namespace, messages: int, trials: int, label: str) -> list[dict]:
    log, kv = driver.log(), driver.keyvalue()
    names = {"raw": ns.name(f"pc-rawlog-{driver.name}")}

    async def append(name: str) -> int:  # not timed: the records to read; the first one's offset
        first = await log.append(name, fresh("l"))
        for _ in range(messages - 1):
            await log.append(name, fresh("l"))
        return first

    async def raw(_trial: int) -> float:
        start = await append(names["raw"])

        async def loop() -> None:
            offset = start
            while offset < start + messages:
                records = await log.read(names["raw"], offset, limit=min(100, start + messages - offset), wait=5.0)
                offset += len(records)

        return await timed(loop)

    async def handle(_message: Message) -> None:
        return None

    def consuming(every: int) -> Trial:
        name = names.setdefault(f"c{every}", ns.name(f"pc-conlog-{driver.name}-{every}"))
        config = ConsumerConfig(
            source=name, name=f"bench{every}", commit_every=every, poll_wait=5.0, state_prefix=ns.name("pc-clog/")
        )

        async def trial(_trial: int) -> float:
            await append(name)
            consumer = Consumer(log, kv, handle, config, background=False)
            await consumer.start()  # not timed: reads the saved position

            async def loop() -> None:
                taken = 0
                while taken < messages:
                    taken += await consumer.poll()
                await consumer.stop(within=10.0)  # saves the last position

            return await timed(loop)

        return trial

    sides: dict[str, Trial] = {
        "raw log.read(100) loop": raw,
        "consumer log, position saved each record": consuming(1),
        "consumer log, position saved each 100": consuming(100),
    }
    measured = await interleaved(list(sides), trials, lambda name, t: sides[name](t))
    return rows_of(label, "raw log.read(100) loop", messages, measured)


async def isolated(what: str, driver: Driver, rows: Awaitable[list[dict]]) -> list[dict]:
    """``rows`` within ``BACKEND_BOUND``; a failure or a timeout becomes one error row."""
    try:
        async with asyncio.timeout(BACKEND_BOUND):
            return await rows
    except Exception as exc:  # one backend's failure must not cost the others
        detail = "".join(traceback.format_exception_only(exc)).strip()
        return [{"combination": f"{what} on {driver.name}", "error": detail or type(exc).__name__}]


def fitting(drivers: list[Driver]) -> list[Driver]:
    """The drivers with a queue and key-value, the first of each backend kind only (``nats``, not
    also ``jetstream-r3``; ``postgres``, not also ``postgres-ha``): the rows measure the patterns,
    and the replicated variants would add minutes to a full run without telling more about them.
    Name a variant alone in ``--prism-backend`` to measure it."""
    seen: set[str] = set()
    chosen = []
    for driver in drivers:
        fits = driver.supports(Capability.QUEUE) and driver.supports(Capability.KEYVALUE)
        if fits and driver.backend_name not in seen:
            seen.add(driver.backend_name)
            chosen.append(driver)
    return chosen


def markdown(title: str, rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        f"## {title} (same run, interleaved trials)",
        "",
        "| combination | raw | pattern | messages / trial | raw us/msg | pattern us/msg "
        "| time ratio, median (IQR; min - max) | verdict |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['combination']} | - | - | - | - | - | failed: {r['error']} | - |")
            continue
        lines.append(
            f"| {r['combination']} | {r['raw']} | {r['pattern']} | {r['messages']} | {r['raw_us']:.0f} "
            f"| {r['pattern_us']:.0f} | {r['time_ratio']:.2f}x ({r['ratio_q1']:.2f} - {r['ratio_q3']:.2f}; "
            f"{r['ratio_min']:.2f} - {r['ratio_max']:.2f}) | {r['verdict']} |"
        )
    return lines
