"""Corrupt Raft snapshots on a minority, then crashes (Jepsen's NATS 2.12.1 analysis, nats-server
#7556): a node that lost its snapshot of the cluster's metadata may forget a stream it holds.

On a cluster whose streams elect their own leaders and whose nodes' copies can be read one by one,
a log gets :data:`WRITTEN` records of :data:`RECORD` bytes (past 8 MB of Raft log, where JetStream
snapshots a stream as it applies), and the test waits until a minority of nodes (one of three,
two of five, none leading the metadata or the stream) hold Raft snapshots written after the log
was created: JetStream's metadata group snapshots once a minute, so its snapshot then records
the stream. One more log is created after that, so each node's Raft log holds entries past its
snapshot, as on any cluster in use. (An orderly restart of the minority makes them write it at
once: nats-server snapshots its metadata as it shuts down.) The minority is SIGKILLed, every snapshot file of theirs
(:data:`SNAPSHOTS`) gets bit flips, and they are started again (a node that refuses to start
over the damage gets the operator's remedy, its damaged snapshots removed). Then every other node
is crashed (SIGKILL) and started again in turn, so the damaged nodes take part in electing the
metadata's and the stream's leaders, as in Jepsen's run. Once the server's own delayed
clean-up (:data:`ORPHAN_CHECK`) has had its time, every acknowledged record is read back through
the cluster and each node's own copy of the stream is compared with the whole.

The guarantee judged is the vendor's (an acknowledged publish to a replicated stream survives the
failure of a minority), not a declaration: a record the cluster does not serve, a stream gone,
or a node whose copy no longer holds every acknowledged record once everything settled is a loss
(a copy deleted for good leaves the stream one failure closer to losing it all). A loss that is a
known finding (``prism_testkit.findings``) is an xfail naming it; once it stops reproducing the
test fails until docs/findings.md is updated.

The control (``restarted``) runs the same kills and restarts without the damage and must lose
nothing. Each row proves its fault or fails: the damage changed every snapshot file's bytes on
disk and each damaged node logged finding it, or the control changed no byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from pathlib import Path

import pytest

from prism_testkit import Driver, Message, PrismEnv, Slot, findings, patience, prism_suite
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.cluster import Cluster, StreamState, damage
from prism_testkit.simulation import clock

from ._helpers import electing_cluster, replay_command
from ._stream_copies import states, stream_of_log

pytestmark = prism_suite("snapshot_corruption", backend=Slot.needs("log"))

RECORD = 48 << 10  # bytes a record carries: 200 pass 8 MB of Raft log, where a stream is snapshotted
WRITTEN = 200
BATCH = 20  # appends in flight at once
READ = 20  # records one read asks for (about 1 MB)
# A node's Raft snapshot files: nats-server's $SYS/_js_/<group>/snapshots/snap.<term>.<index>, for
# the metadata group (_meta_) and each stream's and consumer's group alike.
SNAPSHOTS = "snap.*"
META_GROUP = "_meta_"  # the directory of the metadata group's Raft state (under $SYS/_js_/)
FLIPS, SEED = 10, 7  # bits flipped per file, and the seed of where
# What a node logs when it finds a damaged snapshot: nats-server 2.12.1 and 2.15.1 both warn
# "Snapshot corrupt, checksums did not match" (or "..., too short").
DETECTED = re.compile(r"snapshot corrupt", re.IGNORECASE)
# nats-server compares the streams it holds with its metadata 30 s after it recovered the metadata
# and deletes those it finds no assignment for ("Detected orphaned stream"): the server's own
# timer, so the copies are judged only once it has run on the node restarted last.
ORPHAN_CHECK = 30.0

MODES = {"restarted": None, "bitflip": "bitflip"}


def _payload(index: int) -> bytes:
    return b"%08d:" % index + b"s" * (RECORD - 9)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reported(cluster: Cluster, node: int) -> str | None:
    """The first line of ``node``'s log that reports a damaged snapshot, or None."""
    text = cluster.servers[node].log_path.read_text(errors="replace")
    return next((line.strip()[-200:] for line in text.splitlines() if DETECTED.search(line)), None)


def _short(state: StreamState | None, written: int) -> int:
    """At least how many of the acknowledged records 1..``written`` a node's copy lacks, from its
    (first, last, held) summary: all of them when it holds no copy."""
    if state is None:
        return written
    first, last, held = state
    return max(0, written - held, written - min(last, written), min(first, written + 1) - 1)


async def _read_back(driver: Driver, name: str, expected: dict[int, bytes]) -> tuple[set[int], set[int], str]:
    """The acknowledged offsets a full read through the cluster does not return, those it returns
    with other bytes, and why a read failed ("" when none did: a stream gone reads as all lost)."""
    got: dict[int, bytes] = {}
    failed = ""
    for offset in range(0, max(expected) + 1, READ):
        try:
            for record in await driver.log().read(name, offset, limit=READ):
                got[record.offset] = bytes(record.message.payload)
        except Exception as exc:  # the stream gone or unserved: its records are not readable
            failed = failed or f"{type(exc).__name__}: {exc}"[:300]
    other = {o for o, payload in expected.items() if o in got and got[o] != payload}
    return set(expected) - set(got), other, failed


async def _snapshot_now(cluster: Cluster, nodes: list[int]) -> None:
    """Have each of ``nodes`` write its metadata snapshot now: nats-server writes one as it shuts
    down in order (and again once it has recovered on start), where its timer would take up to a
    minute, x the machine's slowness. The wait that follows still proves the snapshot was written."""
    for node in nodes:
        await asyncio.to_thread(cluster.servers[node].stop)
        await asyncio.to_thread(cluster.restore_node, node)


async def _snapshotted_since(cluster: Cluster, nodes: list[int], since: float) -> None:
    """Wait until each of ``nodes`` holds a snapshot of the metadata group written after
    ``since``: it then records the log's stream. JetStream writes it on a one-minute timer, so no
    change for a while is no stall; the ceiling bounds it. Only the metadata group's: a stream an
    earlier test left on a shared cluster takes no new entries, so its group never snapshots again."""

    async def fresh() -> tuple[bool, ...]:
        def written_at(path: Path) -> float:
            # The server replaces its snapshot while this looks: one gone since the listing is
            # not there (its successor is found on the next look), never an error.
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                return 0.0

        def each(node: int) -> bool:
            meta = [path for path in cluster.files(node, SNAPSHOTS) if META_GROUP in path.parts]
            return max(map(written_at, meta), default=0.0) > since

        return tuple(await asyncio.to_thread(lambda: [each(node) for node in nodes]))

    await patience.until(
        fresh,
        all,
        what=f"snapshot: {', '.join(f'n{n}' for n in nodes)} to snapshot after the log was created",
        stall="settle-ceiling",
    )


async def _copies(cluster: Cluster, stream: str, whole: StreamState) -> dict[str, StreamState | None]:
    """Each node's own copy of ``stream`` (None: it holds none) once every copy is whole, or once
    none changed for the stall bound: a copy deleted for good stays short, and that is judged. A
    node that does not answer a probe (a loaded machine) keeps the copy it last reported, so its
    silence is no change."""
    known: dict[str, StreamState | None] = {}

    async def probe() -> dict[str, StreamState | None]:
        for node, held in (await states(cluster)).items():
            if held is not None:
                known[node] = held.get(stream)
        return dict(known)

    try:
        return await patience.until(
            probe,
            lambda now: len(now) == cluster.size and all(state == whole for state in now.values()),
            what=f"replica: every node's copy of {stream} to be whole",
        )
    except patience.Unsettled:  # copies that stopped changing short of the whole: judged by the caller
        return dict(known)


@pytest.mark.parametrize("mode", list(MODES))
async def test_corrupt_snapshots_on_a_minority_with_crashes_lose_no_acknowledged_record(
    prism_env: PrismEnv, request: pytest.FixtureRequest, mode: str
) -> None:
    name = prism_env.combination["backend"]
    cluster = electing_cluster(prism_env, what="a cluster whose streams elect their own leaders")
    leaders = cluster.stream_leaders
    assert leaders is not None
    driver = prism_env.driver("backend")
    log_name = prism_env.ns.name("log")
    replay = replay_command(__name__, name, mode)
    how = MODES[mode]
    expected: dict[int, bytes] = {}

    async def append(index: int) -> None:
        payload = _payload(index)
        expected[await driver.log().append(log_name, Message(payload))] = payload

    await asyncio.to_thread(cluster.wait_settled)  # a stream created before every peer is current is refused
    created = clock.wall()  # wall clock, as the snapshot files' modification times are
    stream = await stream_of_log(cluster, lambda: append(0))
    while len(expected) < WRITTEN:
        await asyncio.gather(*(append(len(expected) + i) for i in range(min(BATCH, WRITTEN - len(expected)))))
    whole = (1, WRITTEN, WRITTEN)
    await patience.until(
        lambda: states(cluster),
        lambda now: all((held or {}).get(stream) == whole for held in now.values()),
        what=f"replica: every node to hold {WRITTEN} records of {stream}",
    )

    # A minority that leads neither the metadata nor the stream: leadership reaches it only
    # through the crashes below, as in Jepsen's run.
    leading = {cluster.leader(), (await asyncio.to_thread(leaders)).get(stream)}
    minority = [n for n in range(cluster.size) if n not in leading][: (cluster.size - 1) // 2]
    assert minority, f"{name}: {cluster.size} nodes leave no minority outside the leaders {leading}"
    names = ", ".join(f"n{n}" for n in minority)
    await _snapshot_now(cluster, minority)
    await _snapshotted_since(cluster, minority, created)
    await driver.log().append(prism_env.ns.name("after"), Message(b"after"))  # entries past the snapshot

    changed: dict[int, list[str]] = {}
    damaged: dict[int, list[Path]] = {}
    for node in minority:
        await asyncio.to_thread(cluster.kill_node, node)
        home = cluster.servers[node].cwd
        assert home is not None
        files = damaged[node] = cluster.files(node, SNAPSHOTS)
        before = {path: _digest(path) for path in files}
        if how is not None:
            damage(files, home, mode=how, flips=FLIPS, rng=random.Random(SEED + node))
        changed[node] = sorted(str(p.relative_to(home)) for p in files if _digest(p) != before[p])
    # the fault happened or the test proves nothing: the damage changed every snapshot file's
    # bytes on disk, and the control's kills alone changed none
    for node in minority:
        home = cluster.servers[node].cwd
        assert home is not None
        if how is None:
            assert not changed[node], f"{name}: a kill alone changed {changed[node]}: the control is not a control"
        else:
            assert changed[node] == sorted(str(p.relative_to(home)) for p in damaged[node]), (
                f"{name}: the {mode} left bytes of n{node}'s snapshot files unchanged "
                f"(changed: {changed[node]} of {len(damaged[node])})"
            )
    refused: dict[int, str] = {}
    try:
        await asyncio.to_thread(cluster.restore_nodes, minority)
    except ProvisioningError as exc:  # a node refused to start over the damage: detected, not lost
        for node in (n for n in minority if not cluster.servers[n].alive):
            refused[node] = str(exc)[-300:]
            for path in damaged[node]:
                path.unlink(missing_ok=True)  # the operator's remedy: it starts without them
        await asyncio.to_thread(cluster.restore_nodes, minority)
    reports: dict[int, str | None] = {}
    if how is not None:  # each damaged node found the damage (or removed the file it could not read)
        reports = await patience.until(
            lambda: asyncio.to_thread(lambda: {n: _reported(cluster, n) for n in minority}),
            lambda now: all(now.values()),
            what=f"detection: {names} to log their damaged snapshots",
        )

    # Crash every other node in turn, so the damaged ones vote and may lead: a restart that does
    # not settle is what the cluster did, judged by what it serves afterwards.
    unsettled: list[str] = []
    for node in (n for n in range(cluster.size) if n not in minority):
        await asyncio.to_thread(cluster.kill_node, node)
        try:
            await asyncio.to_thread(cluster.restore_node, node)
        except ProvisioningError as exc:
            unsettled.append(f"n{node}: {str(exc)[-200:]}")
    restarted = clock.monotonic()
    # Every node's orphan check, the last restarted's included, fires ORPHAN_CHECK after its own
    # start on the server's real-time timer; what load delays is only its run: a margin, scaled.
    left = ORPHAN_CHECK + patience.bound("stray-grace") - (clock.monotonic() - restarted)
    if left > 0:
        await asyncio.sleep(left)  # the server's own clean-up must have run before the copies are judged
    settled = await _copies(cluster, stream, whole)

    missing, wrong, failed = await _read_back(driver, log_name, expected)
    short = {node: _short(state, WRITTEN) for node, state in settled.items()}
    lost = max([len(missing | wrong), *short.values()])
    detail = (
        f"{WRITTEN} acknowledged in {stream}; {'damaged' if how else 'killed undamaged'}: "
        + "; ".join(
            f"n{n} ({len(damaged[n])} snapshot files{', refused to start, snapshots removed' if n in refused else ''}"
            f"{', reported: ' + str(reports.get(n)) if how else ''})"
            for n in minority
        )
        + "; then the others crashed and restarted in turn"
        + (f" (did not settle: {'; '.join(unsettled)})" if unsettled else "")
        + f"; through the cluster: {len(missing)} unreadable, {len(wrong)} with other bytes"
        + (f" (the read failed: {failed})" if failed else "")
        + "; each node's copy (first, last, held), at least short: "
        + ", ".join(f"{node}: {state}, {short[node]}" for node, state in settled.items())
    )
    findings.judge(
        request,
        scenario="snapshot-corruption" if how else "snapshot-corruption-control",
        backend=name,
        version=driver.server_version,
        lost=lost,
        acknowledged=len(expected),
        detail=detail,
        replay=replay,
    )
