"""Rounds of a crash right after an acknowledgement, shared by the restart suite (a process
crash) and the power-loss suite (a power cut).

Each round writes a short burst through one interface (the interfaces take turns, the burst grows
from one write to three), and the crash follows the last write's acknowledgement at once
(:mod:`prism_testkit.faults.crash_at_ack`): SIGKILL of the server, or of the child process an
embedded backend writes from. Once the backend is back, every write of the round must read back.
A backend that acknowledges before it saves loses the round's last write in every round: one
round's crash at a lucky moment proves nothing, so there are many.

Every round is judged on its own and the verdict says in how many rounds writes were lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prism_testkit import Capability, Driver, Message
from prism_testkit.errors import NotFound
from prism_testkit.faults.crash_at_ack import Write, perform
from prism_testkit.isolation import Namespace
from prism_testkit.patience import bound, handed, until
from prism_testkit.provision.base import Endpoint

INTERFACES = (Capability.KEYVALUE, Capability.QUEUE, Capability.LOG, Capability.OBJECTS)
ROUNDS = 10  # kills per row: each a fresh chance for a write saved after its acknowledgement to be lost
# A cluster's every node is killed and started each round (seconds, not milliseconds): one round
# per interface, so every interface meets the crash once; its single-node twin takes all ten.
CLUSTER_ROUNDS = len(INTERFACES)

# A round's writes, crashed right after the last acknowledgement; returns the driver of the
# backend once it is back, and each write's result (a log append's offset).
Crash = Callable[[Sequence[Write]], Awaitable[tuple[Driver, list[int | None]]]]


@dataclass
class Targets:
    """Where the rounds write: one queue, one log and one bucket for the whole row (made, and
    for the power cut established, before the first round), a fresh key or object per write."""

    ns: Namespace
    interfaces: tuple[Capability, ...]
    queue: str = ""
    log: str = ""
    bucket: str = ""

    def __post_init__(self) -> None:
        self.queue, self.log, self.bucket = self.ns.name("ackq"), self.ns.name("acklog"), self.ns.name("ackbucket")

    def writes(self, round_: int) -> list[Write]:
        interface = self.interfaces[round_ % len(self.interfaces)]
        burst = 1 + (round_ // len(self.interfaces)) % 3
        out = []
        for j in range(burst):
            payload = f"round{round_}-write{j}".encode()
            if interface is Capability.KEYVALUE:
                out.append(Write("keyvalue", self.ns.name(f"ack-r{round_}-{j}"), payload))
            elif interface is Capability.QUEUE:
                out.append(Write("queue", self.queue, payload))
            elif interface is Capability.LOG:
                out.append(Write("log", self.log, payload))
            else:
                out.append(Write("objects", self.bucket, payload, key=f"ack-r{round_}-{j}"))
        return out

    def setup(self) -> list[Write]:
        """One write into each target before the rounds: a queue and a log that exist, a bucket
        to hold objects (its creation is :meth:`prepare`'s)."""
        made = {
            Capability.KEYVALUE: Write("keyvalue", self.ns.name("ack-setup"), b"setup"),
            Capability.QUEUE: Write("queue", self.queue, b"setup"),
            Capability.LOG: Write("log", self.log, b"setup"),
            Capability.OBJECTS: Write("objects", self.bucket, b"setup", key="ack-setup"),
        }
        return [made[i] for i in self.interfaces]

    async def prepare(self, driver: Driver) -> None:
        """Make the targets through ``driver`` and drain the setup message from the queue."""
        if Capability.OBJECTS in self.interfaces:
            await driver.objects().create_bucket(self.bucket)
        for write in self.setup():
            await perform(driver, write)
        if Capability.QUEUE in self.interfaces:
            await drain(driver, self.queue, b"")


def interfaces_of(driver: Driver) -> tuple[Capability, ...]:
    return tuple(c for c in INTERFACES if driver.supports(c))


def rounds_for(endpoint: Endpoint) -> int:
    """How many rounds a row takes: fewer for a cluster, whose every node restarts each round."""
    return CLUSTER_ROUNDS if endpoint.cluster is not None else ROUNDS


async def drain(driver: Driver, queue: str, round_tag: bytes) -> set[bytes]:
    """Every message in ``queue`` up to a marker sent now (all acknowledged ones come before it):
    waits on the marker's arrival, not on a clock; a queue that never yields it is UNSETTLED."""
    marker = b"marker:" + round_tag
    await driver.queue().send(queue, Message(marker))
    got: set[bytes] = set()
    seen_marker = False

    async def step() -> int:
        nonlocal seen_marker
        delivery = await driver.queue().receive(queue, wait=bound("faulted-op"), visibility_timeout=handed("lease"))
        if delivery is not None:
            await driver.queue().ack(queue, delivery)
            if delivery.message.payload == marker:
                seen_marker = True
            else:
                got.add(delivery.message.payload)
        return len(got) + seen_marker

    what = f"queue {queue} to deliver the marker sent after round {round_tag.decode()}'s crash (and what precedes it)"
    await until(step, lambda _: seen_marker, what=what)
    return got


async def missing(after: Driver, writes: Sequence[Write], results: Sequence[int | None], round_: int) -> list[str]:
    """The round's acknowledged writes ``after`` does not hold."""
    lost: list[str] = []
    queued = [w for w in writes if w.interface == "queue"]
    got = await drain(after, queued[0].target, str(round_).encode()) if queued else set()
    for write, result in zip(writes, results, strict=True):
        if write.interface == "keyvalue":
            intact = await after.keyvalue().get(write.target) == write.payload
        elif write.interface == "queue":
            intact = write.payload in got
        elif write.interface == "log":
            assert result is not None
            found = await after.log().read(write.target, result, limit=1)
            intact = bool(found) and found[0].offset == result and found[0].message.payload == write.payload
        else:
            try:
                intact = await after.objects().get(write.target, write.key) == write.payload
            except NotFound:
                intact = False
        if not intact:
            lost.append(write.describe())
    return lost


@dataclass
class Rounds:
    """What the rounds found: per round, the writes acknowledged and those lost."""

    acknowledged: list[int] = field(default_factory=list)
    lost: list[list[str]] = field(default_factory=list)
    last: list[str] = field(default_factory=list)  # per round: the write the crash followed

    @property
    def rounds_lost(self) -> int:
        return sum(1 for lost in self.lost if lost)

    def verdict(self) -> str:
        total = sum(len(lost) for lost in self.lost)
        first = next(i for i, lost in enumerate(self.lost) if lost)
        return (
            f"lost {total} of {sum(self.acknowledged)} acknowledged writes in {self.rounds_lost} of "
            f"{len(self.lost)} rounds, each crashed right after its last acknowledgement "
            f"(round {first}, crashed after {self.last[first]}: lost {', '.join(self.lost[first][:5])})"
        )


async def crash_rounds(targets: Targets, crash: Crash, rounds: int = ROUNDS) -> Rounds:
    """``rounds`` rounds of writes, each crashed right after its last acknowledgement by ``crash``
    and read back from the driver it returns."""
    found = Rounds()
    for r in range(rounds):
        writes = targets.writes(r)
        after, results = await crash(writes)
        found.acknowledged.append(len(writes))
        found.last.append(writes[-1].describe())
        found.lost.append(await missing(after, writes, results, r))
    return found
