"""Helpers shared by the interface contract suites (no backend-specific knowledge here).

Everything that more than one suite needs lives here: Hypothesis settings, draining queues,
subscriptions and logs, order checks that honour the backend's declared ordering, timing,
polling for expiry, payload-limit cases and the purge check every suite runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, Protocol, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import BackendProperties, Driver, Message, Ordering, PrismEnv, patience
from prism_testkit.hunting.identity import OWN_SUITES
from prism_testkit.interfaces import Log, PubSub, Queue, QueueDelivery, Record, Subscription, Transaction, Transactions
from prism_testkit.isolation import Namespace
from prism_testkit.provision.base import Endpoint
from prism_testkit.provision.cluster import Cluster, FailoverCluster

T = TypeVar("T")

# --- Hypothesis ----------------------------------------------------------------------------

# max_examples is left to the active profile (prism-dev / prism-ci / prism-hunt).
prism_settings = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

payloads: st.SearchStrategy[bytes] = st.binary(max_size=64)
header_maps: st.SearchStrategy[dict[str, str]] = st.dictionaries(
    st.text(alphabet="abcdefghij-", min_size=1, max_size=8),
    st.text(max_size=8),
    max_size=3,
)
messages: st.SearchStrategy[Message] = st.builds(
    Message,
    payload=payloads,
    headers=header_maps,
    key=st.none() | st.text(alphabet="abcxyz", min_size=1, max_size=4),
)

# --- timing --------------------------------------------------------------------------------

SHORT_TTL = 0.3  # seconds: TTLs and visibility timeouts the suites let run out
EXPIRY_DEADLINE = 1.0  # how long after SHORT_TTL a backend may take to make expiry visible
WAIT = 0.3  # a receive / read wait used where nothing is expected to arrive
WAIT_OVERRUN = 0.7  # seconds past its end a wait on nothing may return (x the machine's slowness)


def replay_command(module: str, backend: str, select: str) -> str:
    """The command that runs the tests of suite ``module`` (its ``__name__``) matching
    ``select`` (``-k``) on ``backend``, from any directory: the module named by its package
    identity under ``--pyargs``, the same in a checkout, an installed package and an author's
    project (a path such as ``prism_testkit/suites/...`` exists only in this project's checkout)."""
    target = f"{OWN_SUITES}.{module.rpartition('.')[2]}"
    return shlex.join(
        ["pytest", "--pyargs", target, f"--prism-backend={backend}", "-k", select, "-p", "no:cacheprovider"]
    )


def arrival_wait() -> float:
    """A wait that something known to be coming must cut short: as long as a calm operation may
    take on this machine now, since a healthy run never waits it out (a fixed 1 s did, on a
    loaded machine, for a message a JetStream cluster was still storing)."""
    return patience.bound("calm-op")


class Stopwatch:
    """Elapsed wall time since creation, in seconds."""

    def __init__(self) -> None:
        self.start = clocks.monotonic()

    @property
    def elapsed(self) -> float:
        return clocks.monotonic() - self.start


def expiry_deadline() -> float:
    """How long past a TTL or visibility timeout a backend may take to show it ran out, on this
    machine now: a loaded server expires late, never early."""
    return EXPIRY_DEADLINE * patience.slowness()


def before_expiry(watch: Stopwatch, ttl: float) -> bool:
    """Whether what was just read was read before a TTL of ``ttl`` seconds, set after ``watch``
    started, can have run out. On a slow machine it may already have: then only its expiry may
    be asserted, never that the value was still there."""
    return watch.elapsed < ttl


async def eventually(check: Callable[[], Awaitable[bool]], within: float | None = None) -> bool:
    """Poll ``check`` until it returns True or ``within`` seconds pass (by default the expiry
    deadline on this machine); its last answer."""
    within = expiry_deadline() if within is None else within
    deadline = clocks.monotonic() + within  # hand-rolled: a caller's own time, no named bound; answers False
    while True:
        if await check():
            return True
        if clocks.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


def assert_waited_about(elapsed: float, wait: float) -> None:
    """A wait on nothing lasted roughly ``wait`` (not cut short, not wildly over)."""
    assert elapsed >= wait * 0.8, f"returned after {elapsed:.3f}s, before the {wait}s wait ran out"
    over = WAIT_OVERRUN * patience.slowness()  # a loaded machine is late, never early
    assert elapsed < wait + over, f"returned after {elapsed:.3f}s for a {wait}s wait (allowed: {over:.1f}s over)"


# --- collecting ----------------------------------------------------------------------------


async def collect(items: AsyncIterator[T]) -> list[T]:
    """Everything an async iterator yields."""
    return [item async for item in items]


def norm(message: Message) -> tuple[bytes, dict[str, str], str | None]:
    """A message as plain comparable values (bytes, dict, key) whatever types a backend returns."""
    return bytes(message.payload), dict(message.headers), message.key


def norms(messages_: Iterable[Message]) -> list[tuple[bytes, dict[str, str], str | None]]:
    return [norm(m) for m in messages_]


def numbered(count: int, tag: str = "m") -> list[Message]:
    """``count`` distinct messages with a sequence header, for order and duplicate checks."""
    return [Message(f"{tag}-{i}".encode(), {"seq": str(i)}) for i in range(count)]


async def drain_queue(
    queue: Queue,
    name: str,
    *,
    wait: float = 0.1,
    ack: bool = True,
    visibility_timeout: float | None = None,
    limit: int = 10_000,
    expect: int = 0,
) -> list[QueueDelivery]:
    """Receive (and by default ack) until a receive waiting ``wait`` seconds returns None.
    While fewer than ``expect`` (messages known to be there) came, each receive waits up to
    the "calm-op" bound instead: a loaded server hands them out late, not never. Each is held
    for ``visibility_timeout`` (by default a lease that outlasts the drain)."""
    held = patience.handed("lease") if visibility_timeout is None else visibility_timeout
    out: list[QueueDelivery] = []
    while len(out) < limit:
        patient = patience.bound("calm-op") if len(out) < expect else wait
        delivery = await queue.receive(name, wait=patient, visibility_timeout=held)
        if delivery is None:
            break
        out.append(delivery)
        if ack:
            await queue.ack(name, delivery)
    return out


async def drain_subscription(sub: Subscription, *, wait: float = 0.2, limit: int = 10_000) -> list[Message]:
    """Receive until a receive waiting ``wait`` seconds returns None."""
    out: list[Message] = []
    while len(out) < limit:
        message = await sub.receive(wait)
        if message is None:
            break
        out.append(message)
    return out


async def read_all(log: Log, name: str, start: int = 0, *, page: int = 100) -> list[Record]:
    """Every record of ``name`` from ``start`` on, reading ``page`` at a time."""
    out: list[Record] = []
    offset = start
    while True:
        batch = await log.read(name, offset, limit=page)
        if not batch:
            return out
        assert len(batch) <= page, f"read(limit={page}) returned {len(batch)} records"
        out.extend(batch)
        offset = batch[-1].offset + 1


@asynccontextmanager
async def subscribed(pubsub: PubSub, topic: str) -> AsyncIterator[Subscription]:
    """A subscription closed when the block ends."""
    sub = await pubsub.subscribe(topic)
    try:
        yield sub
    finally:
        await sub.close()


# --- ordering ------------------------------------------------------------------------------


def assert_delivered(ordering: Ordering, sent: Sequence[Message], received: Sequence[Message]) -> None:
    """``received`` holds exactly ``sent`` (no loss, no duplicates), in the order the backend
    declares: total order, order per key, or any order."""
    got, want = norms(received), norms(sent)
    difference = what_differs(want, got)
    assert difference is None, difference
    if ordering is Ordering.TOTAL:
        assert got == want, f"all {len(want)} messages arrived, out of order: {_first_difference(want, got)}"
    if ordering is Ordering.PER_KEY:
        for key in {m.key for m in sent}:
            mine, ours = [w for w in want if w[2] == key], [g for g in got if g[2] == key]
            assert ours == mine, f"key {key!r} arrived out of order: {_first_difference(mine, ours)}"


def what_differs(want: Sequence[Any], got: Sequence[Any]) -> str | None:
    """In words: which sent messages were lost, duplicated, or never sent at all (None when
    ``got`` holds exactly ``want``, in any order). Compared by equality: headers are dicts,
    whose order means nothing."""
    remaining = list(got)
    lost = []
    for item in want:
        if item in remaining:
            remaining.remove(item)
        else:
            lost.append(item)
    duplicated = [item for item in remaining if item in want]
    unexpected = [item for item in remaining if item not in want]
    parts = [
        f"{len(label)} {name}: {_short(label)}"
        for name, label in (("lost", lost), ("duplicated", duplicated), ("never sent", unexpected))
        if label
    ]
    return f"sent {len(want)}, received {len(got)}; " + "; ".join(parts) if parts else None


def _first_difference(want: Sequence[Any], got: Sequence[Any]) -> str:
    at = next(i for i, (w, g) in enumerate(zip(want, got, strict=False)) if w != g)
    return f"position {at} holds {_short([got[at]])} where {_short([want[at]])} was sent"


def _short(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(item)[:80] for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- payload limits ------------------------------------------------------------------------

LARGEST_CHECKED_LIMIT = 16 << 20  # exact-limit checks above this would make the suites slow
UNLIMITED_PROBE = 1 << 20  # a backend without a declared limit must carry at least this


def payload_limit_cases(properties: BackendProperties) -> tuple[int, int | None]:
    """(a payload size that must be carried, a size that must be refused with PayloadTooLarge
    or None) for the backend's declared ``max_payload``."""
    limit = properties.max_payload
    if limit is None:
        return UNLIMITED_PROBE, None
    if limit > LARGEST_CHECKED_LIMIT:
        return UNLIMITED_PROBE, None
    return limit, limit + 1


# --- cleanup -------------------------------------------------------------------------------


def outside(ns: Namespace) -> Namespace:
    """A namespace next to ``ns`` but not inside it ('...-t4z-' for '...-t4-'): a purge of
    ``ns`` must leave it alone."""
    return Namespace(ns.prefix.rstrip("-") + "z-")


def _unlisted(names: Collection[str], listed: Collection[str]) -> list[str]:
    return [n for n in names if not any(n in item for item in listed)]


async def check_purge(
    prism_env: PrismEnv, slot: str, create: Callable[[Namespace], Awaitable[Collection[str]]]
) -> None:
    """``create`` things in the test namespace and in a sibling namespace; leftovers must list
    the first, a purge must remove exactly them, and leftovers must then be empty."""
    driver = prism_env.driver(slot)
    sibling = outside(prism_env.ns)
    try:
        created = await create(prism_env.ns)
        kept = await create(sibling)
        assert created, "the purge check created nothing"
        left = await prism_env.leftovers()
        listed = left.get(driver.name, [])
        assert not _unlisted(created, listed), f"leftovers {left} do not list {sorted(created)}"
        assert not any(sibling.prefix in item for item in listed), f"leftovers of {prism_env.ns} list {listed}"
        await prism_env.purge()
        assert await prism_env.leftovers() == {}
        survivors = await driver.leftovers(sibling.prefix)
        assert not _unlisted(kept, survivors), f"purge of {prism_env.ns.prefix!r} removed {sibling.prefix!r}"
    finally:
        await driver.purge(sibling.prefix)
    assert await driver.leftovers(sibling.prefix) == []


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """``asyncio.gather`` that cancels the rest when one fails (no stray tasks after a test)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class RunsUntilStopped(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class PauseWatch(asyncio.Event):
    """A background loop's stop event that notes, at each pause between batches (the loop waits
    on its stop event there), the progress ``progress()`` reads: how many pauses there were and
    where each fell, with no clock read."""

    def __init__(self, progress: Callable[[], int]) -> None:
        super().__init__()
        self.progress = progress
        self.progress_at_pauses: list[int] = []
        self.paused = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.progress_at_pauses.append(self.progress())
        self.paused.set()
        return await super().wait()


class Paged(Protocol):
    """A pattern process working through pages (batches) in the background: its own loop
    (``run(stop)``) or its lifecycle (``start`` / ``stop``), which waits on ``_stop_requested``."""

    _stop_requested: asyncio.Event

    async def run(self, stop: asyncio.Event) -> None: ...

    async def start(self) -> None: ...

    async def stop(self, within: float | None = None) -> Any: ...


async def progress_at_first_pause(process: Paged, driven: str, progress: Callable[[], int]) -> int:
    """Run ``process`` in the background (``driven``: "run" or "lifecycle") until its loop first
    pauses between batches, stop it, and return ``progress()`` at that pause. With a poll
    interval that outlasts the test, that pause is the only one: where it fell shows whether the
    loop waited with work still pending, without timing anything."""
    watch = PauseWatch(progress)
    task: asyncio.Task[None] | None = None
    if driven == "run":
        task = asyncio.create_task(process.run(watch))
    else:
        process._stop_requested = watch  # the lifecycle's loop pauses on its stop event
        await process.start()
    try:
        await asyncio.wait_for(watch.paused.wait(), patience.bound("calm-op"))
    finally:
        if task is None:
            await process.stop()
        else:
            watch.set()
            await asyncio.wait_for(task, patience.bound("calm-op"))
    return watch.progress_at_pauses[0]


@asynccontextmanager
async def in_background(
    worker: RunsUntilStopped, *, ending: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[asyncio.Task[None]]:
    """``worker.run(stop)`` in a task for the block (read models following their store, a
    connector...); stopped when the block ends and given 10 s to finish. ``ending``: how the
    task may legitimately have ended instead (cancelled, or killed by the test's fault)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        with suppress(*ending):
            await asyncio.wait_for(task, patience.bound("calm-op"))


class ReadPathTransactions:
    """A store's transactions without ``append_numbered`` (``transactions.numbering``): a
    pattern that numbers through the store falls back to reading and bumping its counter in
    the transaction, the path every store without the capability takes."""

    def __init__(self, inner: Transactions) -> None:
        self._inner = inner

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._inner.transaction() as t:
            yield ReadPathTransaction(t)


class ReadPathTransaction:
    def __init__(self, inner: Transaction) -> None:
        self._inner = inner

    async def get(self, key: str) -> bytes | None:
        return await self._inner.get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._inner.put(key, value)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)

    async def append(self, log: str, message: Message) -> None:
        await self._inner.append(log, message)


# --- clusters ------------------------------------------------------------------------------


@asynccontextmanager
async def client_of_node(prism_env: PrismEnv, slot: str, node: int) -> AsyncIterator[Driver]:
    """A driver of ``slot``'s backend connected to node ``node`` of its cluster alone, as a
    client near one node is (a cluster whose every node serves clients: JetStream); closed when
    the block ends. Connected within the "calm-op" bound: before any fault."""
    cluster = prism_env.control(slot)
    servers = getattr(cluster, "servers", None)
    if not servers:
        raise TypeError(f"{prism_env.combination[slot]}: not a cluster of server processes")
    endpoint = prism_env.runtime.endpoint(prism_env.combination[slot]).rerouted(servers[node].host, servers[node].port)
    async with _connected(prism_env, slot, endpoint) as driver:
        yield driver


@asynccontextmanager
async def own_client(prism_env: PrismEnv, slot: str) -> AsyncIterator[Driver]:
    """A driver of ``slot``'s backend of the test's own, given the endpoint the harness gives its
    own (every node of a cluster): the harness's failover and restarts reconnect theirs, never
    this one, so it shows what a long-lived client of the system meets. Connected within the
    "calm-op" bound; closed when the block ends."""
    async with _connected(prism_env, slot, prism_env.runtime.endpoint(prism_env.combination[slot])) as driver:
        yield driver


@asynccontextmanager
async def _connected(prism_env: PrismEnv, slot: str, endpoint: Endpoint) -> AsyncIterator[Driver]:
    spec = prism_env.spec(slot)
    connect = spec.driver_class.connect(spec.name, spec.capabilities, endpoint)
    driver = await asyncio.wait_for(connect, patience.bound("calm-op"))
    try:
        yield driver
    finally:
        with suppress(Exception):  # its server may be the one a test killed
            await driver.close()


def _node_of_new_connection(nodes: Sequence[tuple[str, int]], before: set[int]) -> int | None:
    """Which of ``nodes`` (host, port) the one TCP connection this process opened since
    ``before`` (its socket inodes then) leads to; None when not exactly one such connection."""
    addresses = {(socket.gethostbyname(host), port): index for index, (host, port) in enumerate(nodes)}
    mine, found = _socket_inodes() - before, set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                inode, (address, port) = int(fields[9]), fields[2].split(":")
                if fields[3] != "01" or inode not in mine:  # 01: established
                    continue
                packed = bytes.fromhex(address)
                ip = socket.inet_ntoa(packed[::-1] if len(packed) == 4 else packed[-4:][::-1])
                if (ip, int(port, 16)) in addresses:
                    found.add(addresses[(ip, int(port, 16))])
    return found.pop() if len(found) == 1 else None


def _socket_inodes() -> set[int]:
    """The inodes of this process's open sockets."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    return inodes


@asynccontextmanager
async def client_on_node(prism_env: PrismEnv, slot: str, node: int) -> AsyncIterator[Driver]:
    """A driver of ``slot``'s backend given every node of its cluster, as a client of the whole
    cluster is, and connected to node ``node`` (which node a client lands on is the client's
    choice: it is connected again until its connection, seen among this process's sockets, leads
    there). So a test can kill the very node a client is connected to: the client must move to
    another. Connected within the "calm-op" bound: before any fault; closed when the block ends."""
    cluster = prism_env.control(slot)
    servers = getattr(cluster, "servers", None)
    if not servers:
        raise TypeError(f"{prism_env.combination[slot]}: not a cluster of server processes")
    spec = prism_env.spec(slot)
    endpoint = prism_env.runtime.endpoint(prism_env.combination[slot])
    urls = [endpoint.rerouted(server.host, server.port).url for server in servers]
    everyone = dataclasses.replace(endpoint.rerouted(servers[node].host, servers[node].port), url=",".join(urls))
    deadline = clocks.monotonic() + patience.bound("calm-op")  # hand-rolled: it also bounds each connect
    landed: list[int | None] = []
    while True:
        before = _socket_inodes()
        connect = spec.driver_class.connect(spec.name, spec.capabilities, everyone)
        driver = await asyncio.wait_for(connect, max(0.1, deadline - clocks.monotonic()))
        landed.append(_node_of_new_connection([(s.host, s.port) for s in servers], before))
        if landed[-1] == node:
            break
        await driver.close()
        if clocks.monotonic() > deadline:
            waited = patience.bound("calm-op")
            raise patience.Unsettled(f"client: a connection to node {node}", waited, "calm-op", landed)
    try:
        yield driver
    finally:
        with suppress(Exception):  # its node may be the one a test killed
            await driver.close()


def electing_cluster(prism_env: PrismEnv, *, what: str, slot: str = "backend") -> Cluster:
    """The slot's cluster, whose streams elect their own leaders and whose nodes' copies and
    stream leaders can be read one by one; the test is skipped (saying why) where it is not one."""
    name = prism_env.combination[slot]
    cluster = prism_env.control(slot)
    if not isinstance(cluster, Cluster) or isinstance(cluster, FailoverCluster):
        pytest.skip(f"{name}: not {what}")
    if cluster.stream_states is None or cluster.stream_leaders is None:
        pytest.skip(f"{name}: its nodes' copies and stream leaders cannot be read one by one")
    return cluster
