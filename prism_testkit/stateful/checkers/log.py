"""Append-only logs: :func:`log_anomalies`, the anomalies of Jepsen's Kafka workload (offsets,
duplicates, lost writes, a consumer's skips and rewinds, a transaction's sends)."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers._committed import _committed_by_reads, _proven
from prism_testkit.stateful.checkers.verdict import FOLLOWS, Verdict, _Findings, _judged_nothing, _ops
from prism_testkit.stateful.history import History, OpType, Pair, Process


@dataclass
class _Log:
    """Everything observed about one log: who wrote what, and what each offset was seen to hold."""

    attempts: dict[Hashable, list[Pair]] = field(default_factory=lambda: defaultdict(list))
    acked: list[Pair] = field(default_factory=list)  # ok appends, in history order
    # offset -> value -> first op showing that value there
    at: dict[int, dict[Hashable, Pair]] = field(default_factory=lambda: defaultdict(dict))
    seen: dict[Hashable, Pair] = field(default_factory=dict)  # value -> first read that returned it
    reads: list[tuple[Pair, int]] = field(default_factory=list)  # ok reads with their highest offset
    drains: list[Pair] = field(default_factory=list)

    def observe(self, offset: int, value: Hashable, evidence: Pair) -> None:
        self.at[offset].setdefault(value, evidence)

    def evidence(self, offset: int) -> Pair:
        return next(iter(self.at[offset].values()))


@dataclass
class _Cursor:
    """A consumer's position in one log: the next offset it should read, and the op that set it
    (``by_record``: set by a record that op returned, so a step from it is internal to the op).
    ``otherwise``: where the consumer is if polls of unknown outcome since then did happen
    (just past the records each returned); the next read may start at any of these."""

    next: int
    anchor: Pair
    by_record: bool = False
    otherwise: tuple[_Cursor, ...] = ()

    def fits(self, offset: int, known: list[int]) -> bool:
        """Whether reading ``offset`` next neither goes back nor jumps over an existing offset."""
        if offset < self.next:
            return False
        return bisect.bisect_left(known, self.next) == bisect.bisect_left(known, offset)


def _returned(pair: Pair) -> Any:
    """What a read returned: an ok one's value, or what an info or fail one recorded before
    its outcome was lost or it was undone (``None``, unknown, unless its completion carries a
    value of its own)."""
    if pair.ok:
        return pair.value
    completion = pair.completion
    if completion is not None and completion.value != pair.invoke.value:
        return completion.value
    return None


def _records(pair: Pair) -> list[tuple[int, Hashable]]:
    records = []
    for record in _returned(pair) or ():
        if not (isinstance(record, tuple) and len(record) == 2 and isinstance(record[0], int)):
            raise ValueError(f"op {pair.invoke.index} ({pair.f}): expected (offset, value) records, got {record!r}")
        records.append((record[0], record[1]))
    return records


def log_anomalies(
    history: History,
    guarantee: DeliveryGuarantee,
    *,
    appends: Collection[str] = ("append",),
    polls: Collection[str] = ("poll",),
    drains: Collection[str] = ("drain",),
    seeks: Collection[str] = ("seek",),
    resets: Collection[str] = ("assign", "subscribe"),
) -> Verdict:
    """The Kafka workload's anomalies over append-only logs (each op's ``key`` names its log).

    Inputs: ``append`` invokes carry the value and complete ok with the ``offset`` it got;
    ``poll`` completes ok with a list of ``(offset, value)`` records, read in that order;
    ``drain`` is a final poll to the end, starting at its invoke ``offset`` (default 0);
    ``seek`` (ok, with the next ``offset`` to read) moves a consumer, ``assign``/``subscribe``
    reassign it: the consumer keeps its position in the logs the op's ``value`` (a list of log
    names; else its ``key``) still covers and forgets the others, as Jepsen does.

    A poll or drain that failed did not happen and moves nothing, but the records it returned
    before it was undone (``fail(value=...)``: a poll in a transaction that then aborted) are
    still checked, within the poll and against the position the last read that happened left,
    and join the version order (offsets, duplicates): as in Jepsen, a consumer must return
    right records even in a transaction that aborts. They do not count as reads for
    ``lost-write`` or ``unexpected``. The records of a poll whose outcome is unknown
    (``info(value=...)``) are checked the same way and do count as reads; the consumer is then
    either where it was (the poll did not happen; Jepsen's only choice) or just past them, and
    its next read may start at either. An unknown-outcome poll that recorded nothing forgets
    the position. An ok drain looked at the log even when it returned nothing. A poll's invoke
    ``offset`` (where ``Log.read`` was asked to start) sets the position only when it is
    unknown: later requests are not trusted, the records returned are what is checked, so a
    consumer that computes a wrong offset shows up as a skip. The *version order*
    of a log is what every ok append and every read says each offset holds.

    - ``inconsistent-offsets``: one offset seen holding two different values (by appends'
      acknowledgements or reads). Witness: one op showing each value.
    - ``duplicate``: one value at two offsets. Witness: one op showing each offset.
    - ``lost-write``: an acknowledged append whose value no read ever returned, although a read
      returned an offset at or above the append's (Jepsen's rule: readers saw the log past
      it), or a drain invoked after the append's acknowledgement missed it. Witness: the
      append and that read. (A reader that starts mid-log without a seek can make this rule
      accuse a write it simply never looked at: record seeks, or rely on drains.)
    - ``unseen``: an acknowledged append never read, with no read covering it. Nobody looked,
      so it is no proof of loss, but it is invalid as ``lost-write`` is (only at-most-once
      tolerates it): a history must end by reading every log, as Jepsen's (whose ``unseen``
      is an error too).
    - ``unexpected``: a value read from a log that no append attempted, or whose appends all
      failed (Jepsen's ``G1a``). When the failed append had been given an offset, its data
      holds it as ``failed_offset``, and the message says whether the read found the value at
      that very offset (the aborted record itself was read). A failed append's offset never
      joins the version order: the record was undone, so it proves nothing the log holds.
    - ``poll-skip``: a consumer's next record (in its own sequence of reads, within a poll or
      across polls) is past the offset it should read next, and an offset it jumped over
      exists in the version order. Witness: the read (or seek) that set the position, the
      read that skipped, and one op showing a skipped offset.
    - ``nonmonotonic-poll``: a consumer's next record is at or below an offset it already read,
      with no seek in between. Witness: the op that set the position and the read.
    - ``nonmonotonic-send``: one process's appends to a log got decreasing offsets: acknowledged
      ones, and ones of unknown outcome carrying the offset they were given (``info(offset=...)``)
      once they provably happened (their transaction proven committed, or their value read), as
      Jepsen judges ``:info`` sends. A failed append's offset takes no part.
    - ``int-poll-skip`` / ``int-nonmonotonic-poll``: the same, between two records of one poll.
    - ``int-send-skip`` / ``int-nonmonotonic-send``: appends of one transaction (same ``txn``)
      to a log at offsets with others' records between them (reported only), or decreasing.
    - ``empty-history``: nothing appended and nothing read.

    Position anomalies are invalid under every guarantee: a consumer that rewinds or skips on
    purpose (at-least-once replay from a committed offset, say) records a ``seek``.
    """
    findings = _Findings(history)
    pairs = history.pairs()
    index = _index_logs(pairs, appends=appends, polls=polls, drains=drains)
    if not any(log.attempts for log in index.logs.values()) and not index.returned:
        _judged_nothing(findings, "appended or read")
    # Each family of anomalies reads the whole version order, so each runs once it is complete.
    logs, proof = index.logs, index.proof
    recovered: list[Any] = []  # unknown appends whose value was read: they did happen
    _send_order_anomalies(findings, pairs, logs, proof, appends=appends, resets=resets)
    for name, log in logs.items():
        _offset_anomalies(findings, name, log)
        _write_anomalies(findings, name, log, recovered, proof)
    _transaction_send_anomalies(findings, pairs, logs, appends, proof)
    _position_anomalies(findings, pairs, logs, polls=polls, drains=drains, seeks=seeks, resets=resets)
    return findings.verdict("log", guarantee, index.counts(recovered), {"recovered": recovered})


@dataclass(frozen=True)
class _LogIndex:
    """What :func:`log_anomalies` judges, gathered from the history before any judging."""

    logs: dict[str | None, _Log]
    returned: list[Pair]  # polls and drains that returned records, aborted ones included
    proof: dict[str, Pair]  # transactions a read proved committed: txn -> that read

    def counts(self, recovered: list[Any]) -> dict[str, int]:
        reads = [p for p in self.returned if p.type is not OpType.FAIL]
        return {
            "logs": len(self.logs),
            "attempted": sum(len(log.attempts) for log in self.logs.values()),
            "acknowledged": sum(len(log.acked) for log in self.logs.values()),
            "read": sum(len(_records(p)) for p in reads),
            "recovered": len(recovered),
        }


def _index_logs(
    pairs: list[Pair], *, appends: Collection[str], polls: Collection[str], drains: Collection[str]
) -> _LogIndex:
    """Each log's writers, readers and version order, and the transactions reads proved
    committed. The order of the passes is the order of evidence: an offset's evidence is the
    first op that showed it, so acknowledgements come first, then reads that happened, then
    aborted ones (they only show offsets), then unknown appends proven committed."""
    logs: dict[str | None, _Log] = defaultdict(_Log)
    returned = [p for p in pairs if (p.f in polls or p.f in drains) and _records(p)]
    for pair in pairs:
        if pair.f in appends:
            _index_append(logs[pair.key], pair)
    for pair in returned:
        if pair.type is not OpType.FAIL:
            _index_read(logs[pair.key], pair)
    for pair in returned:
        if pair.type is OpType.FAIL:
            for offset, value in _records(pair):
                logs[pair.key].observe(offset, value, pair)
    for pair in pairs:  # an ok drain looked, even when it found nothing
        if pair.ok and pair.f in drains:
            logs[pair.key].drains.append(pair)
    return _LogIndex(logs, returned, _place_proven_appends(logs))


def _index_append(log: _Log, pair: Pair) -> None:
    """An append attempt; an acknowledged one places its value at the offset it got."""
    log.attempts[pair.invoke.value].append(pair)
    if pair.ok:
        log.acked.append(pair)
        if pair.offset is not None:
            log.observe(pair.offset, pair.invoke.value, pair)


def _index_read(log: _Log, pair: Pair) -> None:
    """A read that happened (or may have): what each offset held, and how far it reached."""
    records = _records(pair)
    for offset, value in records:
        log.observe(offset, value, pair)
        log.seen.setdefault(value, pair)
    log.reads.append((pair, max(offset for offset, _ in records)))


def _place_proven_appends(logs: dict[str | None, _Log]) -> dict[str, Pair]:
    """The transactions a read proved committed (Jepsen's *must have committed*). An unknown
    append of one, given an offset, joins the version order: it provably happened there."""
    attempts = {(name, value): tries for name, log in logs.items() for value, tries in log.attempts.items()}
    seen = {(name, value): reader for name, log in logs.items() for value, reader in log.seen.items()}
    proof = _committed_by_reads(attempts, seen)
    for log in logs.values():
        for tries in log.attempts.values():
            for attempt in tries:
                if attempt.type is OpType.INFO and attempt.txn in proof and attempt.offset is not None:
                    log.observe(attempt.offset, attempt.invoke.value, attempt)
    return proof


def _send_order_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    proof: dict[str, Pair],
    *,
    appends: Collection[str],
    resets: Collection[str],
) -> None:
    """``nonmonotonic-send``: one process's appends to a log, in its own order, at decreasing
    offsets. An append takes part when its offset is known to hold it: acknowledged, or of
    unknown outcome with the offset it was given (``info(offset=...)``) once it provably
    happened (its transaction was proven committed, or its value was read), as Jepsen's
    analysis judges ``:info`` sends whose effects were visible. Another unknown append, or a
    failed one, changes nothing."""
    last_sent: dict[tuple[Process, str | None], Pair] = {}
    for pair in pairs:
        if pair.f in resets and pair.type is not OpType.FAIL:  # Jepsen forgets sends to logs no longer assigned
            covered = _assigned(pair)
            for place in [s for s in last_sent if s[0] == pair.process and s[1] not in covered]:
                del last_sent[place]
        if pair.f not in appends or pair.offset is None or not _placed(pair, logs[pair.key], proof):
            continue
        previous = last_sent.get((pair.process, pair.key))
        if (
            previous is not None
            and (pair.txn is None or previous.txn != pair.txn)  # within one: int-nonmonotonic-send
            and previous.offset is not None
            and pair.offset <= previous.offset
        ):
            unknown = [p for p in (previous, pair) if not p.ok]
            why = f"; op {_ops(*unknown)} had an unknown outcome but provably happened" if unknown else ""
            # The earlier append acknowledged and never read (judged lost): its offset given
            # again is that loss seen again (FOLLOWS), not a second finding.
            gone = previous.ok and previous.invoke.value not in logs[pair.key].seen
            findings.add(
                "nonmonotonic-send",
                f"process {pair.process!r} appended to {pair.key!r} at offset {pair.offset} "
                f"after offset {previous.offset} (ops {_ops(previous, pair)}){why}",
                [previous, pair],
                key=pair.key,
                offsets=[previous.offset, pair.offset],
                **({FOLLOWS: ((pair.key, previous.invoke.value),)} if gone else {}),
            )
        last_sent[(pair.process, pair.key)] = pair


def _placed(append: Pair, log: _Log, proof: dict[str, Pair]) -> bool:
    """Whether the offset ``append`` completed with is known to hold its value."""
    if append.ok:
        return True
    if append.type is not OpType.INFO:
        return False
    return append.txn in proof or append.invoke.value in log.seen


def _offset_anomalies(findings: _Findings, name: str | None, log: _Log) -> None:
    offsets_of: dict[Hashable, list[int]] = defaultdict(list)
    for offset in sorted(log.at):
        held = log.at[offset]
        for value in held:
            offsets_of[value].append(offset)
        if len(held) > 1:
            (v1, p1), (v2, p2) = list(held.items())[:2]
            # An acknowledged value no read ever returned is judged lost (lost-write, unseen):
            # when the others at this offset are one value, the offset was given again after
            # that loss, which is the loss seen again (FOLLOWS), not a second finding.
            gone = [v for v in held if v not in log.seen and any(p.ok for p in log.attempts.get(v, []))]
            echo = {FOLLOWS: tuple((name, v) for v in gone)} if gone and len(held) - len(gone) <= 1 else {}
            findings.add(
                "inconsistent-offsets",
                f"offset {offset} of {name!r} holds {v1!r} (op {_ops(p1)}) and {v2!r} (op {_ops(p2)})",
                [p1, p2],
                key=name,
                offset=offset,
                values=list(held),
                **echo,
            )
    for value, offsets in offsets_of.items():
        if len(offsets) > 1:
            p1, p2 = log.at[offsets[0]][value], log.at[offsets[1]][value]
            findings.add(
                "duplicate",
                f"{value!r} is at offsets {offsets} of {name!r} (ops {_ops(p1, p2)})",
                [p1, p2],
                key=name,
                value=value,
                offsets=offsets,
            )


def _write_anomalies(
    findings: _Findings, name: str | None, log: _Log, recovered: list[Any], proof: dict[str, Pair]
) -> None:
    for value, reader in log.seen.items():
        tries = log.attempts.get(value, [])
        if not tries or all(p.type is OpType.FAIL for p in tries):
            why = f"its append failed (op {_ops(tries[0])})" if tries else "never appended"
            given = next((p.offset for p in tries if p.offset is not None), None)
            facts: dict[str, Any] = {}
            if given is not None:
                why += f" after it was given offset {given}"
                if value in log.at.get(given, {}):
                    why += "; the aborted record itself was read"
                facts["failed_offset"] = given
            findings.add(
                "unexpected",
                f"{value!r} read from {name!r} (op {_ops(reader)}) but {why}",
                [reader, *tries[:1]],
                key=name,
                value=value,
                **facts,
            )
        elif not any(p.ok for p in tries):
            recovered.append(value)
    reported: set[Hashable] = set()
    # Acknowledged appends, then unknown-outcome ones whose transaction a read proved committed
    # (their value must be readable from when that read completed, if they never completed).
    committed: list[tuple[Pair, Pair, Pair | None]] = [(a, a, None) for a in log.acked]
    for tries in log.attempts.values():
        if not any(p.ok for p in tries) and (proven := _proven(tries, proof)) is not None:
            attempt, proving = proven
            committed.append((attempt, attempt if attempt.completion is not None else proving, proving))
    for append, since, proving_read in committed:
        value = append.invoke.value
        if value in log.seen or value in reported:
            continue
        reported.add(value)
        offset = append.offset
        beyond = None
        if offset is not None:
            beyond = next((p for p, highest in log.reads if highest >= offset), None)
        covering = beyond or next((d for d in log.drains if since.completed_before(d)), None)
        why = "a later drain missed it" if beyond is None else "a read went past its offset"
        if proving_read is not None and covering is not None:
            findings.add(
                "lost-write",
                f"{value!r} appended to {name!r} (op {_ops(append)}) in transaction {append.txn!r}, which "
                f"committed (op {_ops(proving_read)} read another of its values), was never read; "
                f"{why} (op {_ops(covering)})",
                [append, proving_read, covering],
                key=name,
                value=value,
                txn=append.txn,
            )
            continue
        if covering is None:
            findings.add(
                "unseen",
                f"{value!r} appended to {name!r} (op {_ops(append)}, offset {offset}) was never read",
                [append],
                key=name,
                value=value,
                offset=offset,
            )
            continue
        findings.add(
            "lost-write",
            f"{value!r} appended to {name!r} at offset {offset} (op {_ops(append)}) was never read; "
            f"{why} (op {_ops(covering)})",
            [append, covering],
            key=name,
            value=value,
            offset=offset,
        )


def _position_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    *,
    polls: Collection[str],
    drains: Collection[str],
    seeks: Collection[str],
    resets: Collection[str],
) -> None:
    known = {name: sorted(log.at) for name, log in logs.items()}
    cursors: dict[tuple[Process, str | None], _Cursor] = {}
    for pair in pairs:
        where = (pair.process, pair.key)
        if pair.f not in seeks and pair.f not in resets and pair.f not in polls and pair.f not in drains:
            continue
        if pair.f in resets:
            if pair.type is not OpType.FAIL:  # it did not happen: the assignment stands
                covered = _assigned(pair)
                for place in [c for c in cursors if c[0] == pair.process and c[1] not in covered]:
                    del cursors[place]
            continue
        if pair.f in seeks:
            if pair.ok and pair.offset is not None:
                cursors[where] = _Cursor(pair.offset, pair)
            elif pair.type is OpType.INFO:  # it may have moved the consumer: position unknown
                cursors.pop(where, None)
            continue
        if _returned(pair) is None and not pair.ok:  # what it returned is unknown
            if pair.type is OpType.INFO:  # and it may have moved the consumer
                cursors.pop(where, None)
            continue
        before = cursors.get(where)
        cursor = before
        if pair.f in drains:
            cursor = _Cursor(pair.invoke.offset or 0, pair)
        elif cursor is None and pair.invoke.offset is not None:  # a first read names where it starts
            cursor = _Cursor(pair.invoke.offset, pair)
        start = cursor
        for offset, _value in _records(pair):
            if cursor is not None:
                _check_step(findings, pair, cursor, offset, known.get(pair.key, []), logs[pair.key])
            cursor = _Cursor(offset + 1, pair, by_record=True)
        if pair.type is OpType.INFO and cursor is not None and cursor is not start:
            # Either it did not happen (the consumer is where it was) or it did (just past its records).
            stayed = before if before is not None else start
            if stayed is not None:
                cursor = _Cursor(stayed.next, stayed.anchor, stayed.by_record, (*stayed.otherwise, cursor))
            else:
                cursor = None
        elif pair.type is OpType.FAIL:  # undone: the position stands
            cursor = before
        if cursor is None:
            cursors.pop(where, None)
        else:
            cursors[where] = cursor


def _assigned(pair: Pair) -> set[str | None]:
    """The logs an assign / subscribe op gives its process: its value's names, else its key."""
    value = pair.invoke.value
    if isinstance(value, tuple):
        return set(value)
    return {pair.key} if pair.key is not None else set()


def _transaction_send_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    appends: Collection[str],
    proof: dict[str, Pair],
) -> None:
    """Jepsen's int-send-skip / int-nonmonotonic-send: one committed transaction's appends to
    a log, in the order it made them, land out of order or with others' records between. An
    append's offset is the one it was given, else the one a read found its value at."""
    sends: dict[tuple[str, str | None], list[tuple[Pair, int]]] = defaultdict(list)
    for pair in pairs:
        if pair.f not in appends or pair.txn is None or not (pair.ok or pair.txn in proof):
            continue
        log = logs[pair.key]
        offset = pair.offset
        if offset is None:
            offset = next((o for o in sorted(log.at) if pair.invoke.value in log.at[o]), None)
        if offset is not None:
            sends[(pair.txn, pair.key)].append((pair, offset))
    for (txn, name), group in sends.items():
        log = logs[name]
        known = sorted(log.at)
        ours = {offset for _, offset in group}
        for (before, first), (after, then) in itertools.pairwise(group):
            if then <= first:
                findings.add(
                    "int-nonmonotonic-send",
                    f"transaction {txn!r} appended to {name!r} at offset {then} after offset "
                    f"{first} (ops {_ops(before, after)})",
                    [before, after],
                    key=name,
                    txn=txn,
                    offsets=[first, then],
                )
                continue
            between = known[bisect.bisect_right(known, first) : bisect.bisect_left(known, then)]
            others = [o for o in between if o not in ours]
            if others:
                findings.add(
                    "int-send-skip",
                    f"transaction {txn!r} appended to {name!r} at offsets {first} and {then} "
                    f"with other records at {others} between them (ops {_ops(before, after, log.evidence(others[0]))})",
                    [before, after, log.evidence(others[0])],
                    key=name,
                    txn=txn,
                    skipped=others,
                )


def _check_step(findings: _Findings, pair: Pair, cursor: _Cursor, offset: int, known: list[int], log: _Log) -> None:
    if cursor.otherwise and not cursor.fits(offset, known) and any(o.fits(offset, known) for o in cursor.otherwise):
        return  # the poll of unknown outcome happened, and this read carries on from it
    who, name, expected = pair.process, pair.key, cursor.next
    same_txn = pair.txn is not None and cursor.anchor.txn == pair.txn
    internal = "int-" if cursor.by_record and (cursor.anchor is pair or same_txn) else ""
    if offset < expected:
        findings.add(
            f"{internal}nonmonotonic-poll",
            f"process {who!r} read offset {offset} of {name!r} when offset {expected} was next, "
            f"without a seek (ops {_ops(cursor.anchor, pair)})",
            [cursor.anchor, pair],
            key=name,
            process=who,
            expected=expected,
            offset=offset,
        )
    elif offset > expected:
        skipped = known[bisect.bisect_left(known, expected) : bisect.bisect_left(known, offset)]
        if skipped:
            evidence = log.evidence(skipped[0])
            findings.add(
                f"{internal}poll-skip",
                f"process {who!r} read offset {offset} of {name!r} when offset {expected} was next, "
                f"skipping existing offsets {skipped} (ops {_ops(cursor.anchor, pair)}; "
                f"offset {skipped[0]} shown by op {_ops(evidence)})",
                [cursor.anchor, pair, evidence],
                key=name,
                process=who,
                expected=expected,
                offset=offset,
                skipped=skipped,
            )
