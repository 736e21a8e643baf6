"""A replica with damaged data that becomes the leader (Jepsen's NATS 2.12.1 analysis, nats-server
#7549): corruption on a minority matters once a damaged node leads.

On a cluster whose streams elect their own leaders and whose nodes' data files and stream
leaders can be reached one by one (JetStream: ``Cluster.stream_files``, ``stream_leaders``,
``move_stream_leader``), a log gets ~1 KB records until its stream spans several data files on
every node (JetStream's message blocks: 8 MB each for such a stream, so about 10,000 records).
Once every copy holds every record, one follower is killed, its stream's files are damaged (bit
flips, or a truncation at a random length: the middle of the stream, as the last file is the
only one a node rebuilds from its peers), and it is started again. Leadership is then moved to
it, :data:`EXTRA` more records are appended while it leads, and every acknowledged record is
read back through the cluster. After that, leadership visits every other node and everything is
read again through each, so each node's copy is read as its clients would get it.

The guarantee judged is the vendor's (an acknowledged publish to an R3 stream survives one
failed server), not a declaration: a record unreadable in any of those reads, or read with
other bytes, is lost. A loss that is a known finding (``prism_testkit.findings``) is an xfail
naming it; once it stops reproducing the test fails until docs/findings.md is updated.

The control (``restarted``) does the same with the damage left out: the follower is killed and
started again, leads, and everything must be read back. Both prove the scenario happened or
fail: the damaged run checks that the files' bytes changed on disk (the control that they did
not), and each checks that the chosen node led while the extra records were appended.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from prism_testkit import Driver, Message, PrismEnv, Slot, findings, patience, prism_suite
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.cluster import damage

from ._helpers import electing_cluster, replay_command
from ._stream_copies import lead, states, stream_of_log

pytestmark = prism_suite("damaged_leader", backend=Slot.needs("log"))

RECORD = 1000  # bytes a record carries: Jepsen's and issue 54's ~1 KB
BATCH = 200  # appends in flight at once while the stream grows
SPAN = 2  # data files every copy must span: damage then lands in the middle of the stream
MOST = 40_000  # records a stream may take to span them before the test gives up (40 MB)
EXTRA = 100  # records appended while the damaged node leads
FLIPS, SEED = 10, 7  # bits flipped per file, and the seed of where (and of a truncation's length)
READ = 100  # records one read asks for; reads run a few at a time

MODES = {"restarted": None, "bitflip": "bitflip", "truncate": "truncate"}


def _payload(index: int) -> bytes:
    return b"%08d:" % index + b"r" * (RECORD - 9)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _unreadable(driver: Driver, name: str, expected: dict[int, bytes]) -> tuple[set[int], set[int]]:
    """The acknowledged offsets a full read of the log does not return, and those it returns
    with other bytes than were appended."""
    got: dict[int, bytes] = {}
    limit = asyncio.Semaphore(4)

    async def chunk(offset: int) -> None:
        async with limit:
            for record in await driver.log().read(name, offset, limit=READ):
                got[record.offset] = bytes(record.message.payload)

    await asyncio.gather(*(chunk(offset) for offset in range(0, max(expected) + 1, READ)))
    return set(expected) - set(got), {o for o, payload in expected.items() if o in got and got[o] != payload}


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_damaged_replica_that_leads_serves_every_acknowledged_record(
    prism_env: PrismEnv, request: pytest.FixtureRequest, mode: str
) -> None:
    name = prism_env.combination["backend"]
    cluster = electing_cluster(prism_env, what="a cluster whose streams elect their own leaders")
    if cluster.stream_files is None or cluster.move_stream_leader is None:
        pytest.skip(f"{name}: a stream's data files or its leader's move are not offered by its cluster")
    leaders = cluster.stream_leaders
    assert leaders is not None
    driver = prism_env.driver("backend")
    log_name = prism_env.ns.name("log")
    replay = replay_command(__name__, name, mode)
    expected: dict[int, bytes] = {}

    async def append(index: int) -> None:
        payload = _payload(index)
        expected[await driver.log().append(log_name, Message(payload))] = payload

    await asyncio.to_thread(cluster.wait_settled)  # a stream created before every peer is current is refused
    stream = await stream_of_log(cluster, lambda: append(0))
    pattern = cluster.stream_files(stream)

    def spans() -> int:
        return min(len(cluster.files(node, pattern)) for node in range(cluster.size))

    while spans() < SPAN:
        assert len(expected) < MOST, f"{name}: {len(expected)} records never spanned {SPAN} files ({pattern})"
        await asyncio.gather(*(append(len(expected) + i) for i in range(BATCH)))
    written = len(expected)
    whole = (1, written, written)
    await patience.until(
        lambda: states(cluster),
        lambda now: all((held or {}).get(stream) == whole for held in now.values()),
        what=f"replica: every node to hold {written} records of {stream}",
    )

    leader = (await asyncio.to_thread(leaders)).get(stream)
    assert leader is not None, f"{name}: no node names a leader of {stream}"
    victim = (leader + 1) % cluster.size  # a follower: one node of the cluster, a minority
    files = cluster.files(victim, pattern)
    home = cluster.servers[victim].cwd
    assert home is not None
    await asyncio.to_thread(cluster.kill_node, victim)
    before = {path: _digest(path) for path in files}
    if (how := MODES[mode]) is not None:
        damage(files, home, mode=how, flips=FLIPS, rng=random.Random(SEED))
    changed = sorted(str(p.relative_to(home)) for p in files if _digest(p) != before[p])
    refused = ""
    try:
        await asyncio.to_thread(cluster.restore_node, victim)
    except ProvisioningError as exc:  # it detected the damage: nothing served from it, none lost
        refused = str(exc)[-300:]
        for path in files:
            path.unlink()  # the remedy an operator applies: it starts again and catches up
        await asyncio.to_thread(cluster.restore_node, victim)
    # the fault happened or the test proves nothing: the damage changed every file's bytes on
    # disk, and the control's restart alone changed none
    if how is None:
        assert not changed, f"{name}: a restart alone changed {changed}: the control is not a control"
    else:
        assert changed == sorted(str(p.relative_to(home)) for p in files), (
            f"{name}: the {mode} left bytes of n{victim}'s files unchanged (changed: {changed} of {len(files)})"
        )
    restarted = (await states(cluster)).get(f"n{victim}")
    await asyncio.to_thread(cluster.wait_settled)

    lost: dict[str, set[int]] = {}
    wrong: set[int] = set()
    led = "n/a: it refused to start"
    if not refused:
        await lead(cluster, stream, victim)
        await asyncio.gather(*(append(written + i) for i in range(EXTRA)))
        still = (await asyncio.to_thread(leaders)).get(stream)
        assert still == victim, (
            f"{name}: n{victim} lost the lead of {stream} to n{still} while the extra records were appended: "
            f"the scenario did not run (not a pass)\nreplay: {replay}"
        )
        led = f"n{victim} led while {EXTRA} more were appended"
        missing, other = await _unreadable(driver, log_name, expected)
        lost[f"through n{victim} (damaged)" if how else f"through n{victim}"] = missing
        wrong |= other
    for node in (n for n in range(cluster.size) if n != victim):
        await lead(cluster, stream, node)
        missing, other = await _unreadable(driver, log_name, expected)
        lost[f"through n{node}"] = missing
        wrong |= other
    settled = await states(cluster)
    gone = set().union(*lost.values()) | wrong
    detail = (
        f"{len(expected)} acknowledged in {stream} ({written} before the fault, spanning {len(files)} files on "
        f"n{victim}); n{victim} {'damaged: ' + mode if how else 'restarted undamaged'}, its own copy then "
        f"{restarted.get(stream) if restarted else None}{'; it refused to start: ' + refused if refused else ''}; "
        f"{led}; unreadable per read: "
        + ", ".join(f"{where}: {len(missing)}" for where, missing in lost.items())
        + f"; read with other bytes: {len(wrong)}; each node's copy (first, last, held) at the end: "
        + ", ".join(f"{node}: {(held or {}).get(stream)}" for node, held in settled.items())
    )
    findings.judge(
        request,
        scenario="damaged-leader" if how else "restarted-leader",
        backend=name,
        version=driver.server_version,
        lost=len(gone),
        acknowledged=len(expected),
        detail=detail,
        replay=replay,
    )
