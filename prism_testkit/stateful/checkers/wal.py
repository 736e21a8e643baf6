"""The WAL's checker: rebuilds the target state the log demands and names every difference.

Inputs, gathered once every fault is healed and a fresh applier has drained the log:

- the history: ``write`` ops (key, value id; a delete's value id ends in ``/del``), ok with the
  receipt as offset, fail, or info (maybe appended);
- the log as it is now (the durable truth): offset -> (key, put value id or None for a delete);
- every apply the appliers reported, in the order they happened (offset, key), and the offsets
  the applied-offset guard skipped on a replay (proof of an earlier apply whose answer was lost);
- the target's final value of every key, and what sits in the dead-letter log.

Anomalies:

- ``lost``: an acknowledged write that is not in the log at its receipt; or a logged mutation
  no applier ever applied (nor skipped as already applied);
- ``phantom``: a log record or target value no write ever produced;
- ``reordered``: a key's mutations applied out of log order, or a key whose final value is an
  older mutation than its last one;
- ``doubled``: a mutation applied more than once in effect. Without target transactions the
  applied-offset guard is written after the value, so a crash between the two re-applies the
  same mutation on replay: with ``idempotent_replays`` that is tolerated (``reapplied``) as long as
  no later mutation of the key was applied in between, since the value is then the same;
- ``dead-lettered``: a mutation given up on, when nothing in the workload is poison.
- ``empty-history``: nothing was written, logged or applied, so nothing was checked.

Tolerated, with a count: ``rolled-back-after-apply``, a target value from a write whose outcome
was unknown (never acknowledged) that the log no longer holds after a failover, where the
applier applied an entry of that key the final log does not hold. The log served the entry
before a replica had it (Redis applies a write before ``WAIT`` asks the replicas, so readers
of the primary see it), and the failover rolled it back:
``survives_failover`` promises acknowledged writes only. An acknowledged write rolled back is
still ``lost``, and the same value without a failover, or without that apply, is ``phantom``.

One event, one verdict: an acknowledged write lost from the log is judged ``lost`` once. What
the appliers did with it before it went (the target holding its value, or its delete; its
offset, given again to the next write, applied twice or passed over) is marked as following
that loss (``FOLLOWS``), so where a failover the log's backend does not promise to survive
excuses the loss, it is not judged again (:mod:`prism_testkit.stateful.checkers.failover`).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from prism_testkit.stateful.checkers.failover import failed_over
from prism_testkit.stateful.checkers.verdict import EMPTY, FOLLOWS, Anomaly, Verdict, suite_verdict
from prism_testkit.stateful.history import History, Pair

DELETE_SUFFIX = "/del"
ROLLED_BACK = "rolled-back-after-apply"


@dataclass(frozen=True)
class LoggedMutation:
    key: str
    value: str | None  # the put's value id; None for a delete


def check_wal(
    history: History,
    logged: Mapping[int, LoggedMutation],
    applies: Sequence[tuple[int, str]],
    skipped: set[int],
    final: Mapping[str, str | None],
    dead_letters: Sequence[int] = (),
    *,
    idempotent_replays: bool = False,
) -> Verdict:
    """Judges a drained WAL run (the module docstring lists the inputs and the anomalies): the
    writes indexed once, then the log, the applies and the target's final values classified in
    turn, each finding with the writes that witness it."""
    index = _index_wal(history, logged, applies)
    findings = _WalFindings(history)
    if not (index.writes or logged or applies or any(v is not None for v in final.values()) or dead_letters):
        # An example that wrote, logged and applied nothing judged nothing: it must not pass as
        # judged (the runner counts it vacuous; a test of only those fails).
        findings.add(EMPTY, "nothing was written, logged or applied: the history checks nothing")
    _classify_acknowledged(findings, index)
    _classify_logged(findings, index, logged)
    _classify_applies(findings, index, logged, applies, skipped, dead_letters, idempotent_replays)
    _classify_apply_order(findings, applies)
    _classify_final_values(findings, index, logged, applies, final)
    stats = {
        "writes": len(index.writes),
        "acknowledged": len(index.acknowledged),
        "logged": len(logged),
        "applies": len(applies),
    }
    return findings.verdict(stats)


@dataclass(frozen=True)
class _WalIndex:
    """What :func:`check_wal` judges the log, the applies and the target against: the clients'
    writes, found by the value they put or the offset their receipt named, and the
    acknowledged ones the log lost."""

    writes: list[Pair]  # the clients' writes (not the nemesis's), in history order
    by_value: dict[str, Pair]
    by_offset: dict[int, Pair]
    acknowledged: list[Pair]
    # Acknowledged writes gone from the log, in history order and by the offset their receipt
    # named: what the target and the appliers did with them before they were lost is that loss
    # seen again (FOLLOWS).
    gone: list[Pair]
    gone_at: dict[int | None, list[Pair]]
    applied: set[tuple[int, str]]  # (offset, key) of every apply

    def writer_of(self, offset: int, record: LoggedMutation) -> list[Pair]:
        """The write that logged ``record``: by the value it put, or (a delete has none) by the
        offset its acknowledgement named."""
        pair = self.by_value.get(record.value) if record.value is not None else self.by_offset.get(offset)
        return [pair] if pair is not None else []

    def applied_then_lost(self, key: str, put: str | None) -> list[Pair]:
        """The acknowledged writes of ``key`` (``put``'s value; None: a delete) lost from the log
        after an applier applied them from their offset."""
        return [
            p
            for offset, lost in self.gone_at.items()
            for p in lost
            if p.key == key and _as_logged(p).value == put and (offset, key) in self.applied
        ]


def _index_wal(history: History, logged: Mapping[int, LoggedMutation], applies: Sequence[tuple[int, str]]) -> _WalIndex:
    """The clients' writes looked up once: every later step finds a write by value or offset,
    and needs the acknowledged writes the log lost to tell a loss seen again from a new finding."""
    writes = [p for p in history.pairs() if p.f == "write" and p.process != "nemesis"]
    acknowledged = [p for p in writes if p.ok]
    gone = [p for p in acknowledged if (logged.get(p.offset) if p.offset is not None else None) != _as_logged(p)]
    gone_at: dict[int | None, list[Pair]] = defaultdict(list)
    for pair in gone:
        gone_at[pair.offset].append(pair)
    return _WalIndex(
        writes,
        by_value={str(p.invoke.value): p for p in writes},
        by_offset={p.offset: p for p in writes if p.offset is not None},
        acknowledged=acknowledged,
        gone=gone,
        gone_at=gone_at,
        applied=set(applies),
    )


class _WalFindings:
    """Collects the WAL's anomalies, each witnessed by the writes it names, with what it
    tolerates: re-applies counted, values a failover rolled back listed."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.found: dict[str, list[Anomaly]] = defaultdict(list)
        self.tolerated: Counter[str] = Counter()
        self.rolled_back: list[Anomaly] = []

    def add(self, name: str, message: str, pairs: Sequence[Pair] = (), /, **data: object) -> None:
        self.found[name].append(Anomaly(name, message, self.history.subhistory(pairs), dict(data)))

    def roll_back(self, message: str, write: Pair, key: str) -> None:
        """Tolerated, not found: ``write``'s value a failover rolled back after it was applied."""
        self.rolled_back.append(Anomaly(ROLLED_BACK, message, self.history.subhistory([write]), {"key": key}))

    def verdict(self, stats: dict[str, int]) -> Verdict:
        stats |= dict(self.tolerated)
        if self.rolled_back:
            stats[ROLLED_BACK] = len(self.rolled_back)
        verdict = suite_verdict("wal", dict(self.found), stats)
        return replace(verdict, tolerated={ROLLED_BACK: self.rolled_back}) if self.rolled_back else verdict


def _echo(gone: Sequence[Pair]) -> dict[str, object]:
    """The ``data`` saying a finding follows the loss of ``gone`` (nothing: of its own)."""
    return {FOLLOWS: tuple((p.key, str(p.invoke.value)) for p in gone)} if gone else {}


def _classify_acknowledged(findings: _WalFindings, index: _WalIndex) -> None:
    """An acknowledged write not in the log at its receipt is ``lost``."""
    for pair in index.gone:
        findings.add(
            "lost",
            f"acknowledged write {pair.invoke.value} at offset {pair.offset} is not in the log",
            [pair],
            key=pair.key,
            value=str(pair.invoke.value),
        )


def _classify_logged(findings: _WalFindings, index: _WalIndex, logged: Mapping[int, LoggedMutation]) -> None:
    """A log record no write produced is a ``phantom``: a put by its value, deletes (which carry
    none) by outnumbering the deletes invoked on their key."""
    writes, by_value = index.writes, index.by_value
    deletes_invoked = Counter(p.key for p in writes if str(p.invoke.value).endswith(DELETE_SUFFIX) and not _failed(p))
    deletes_logged: Counter[str] = Counter()
    for offset, record in sorted(logged.items()):
        if record.value is None:
            deletes_logged[record.key] += 1
        elif record.value not in by_value or _failed(by_value[record.value]):
            findings.add("phantom", f"log offset {offset} holds {record.value}, which no write produced", offset=offset)
    for key, count in deletes_logged.items():
        if count > deletes_invoked[key]:
            findings.add("phantom", f"{count} deletes of {key} in the log, {deletes_invoked[key]} invoked", key=key)


def _classify_applies(
    findings: _WalFindings,
    index: _WalIndex,
    logged: Mapping[int, LoggedMutation],
    applies: Sequence[tuple[int, str]],
    skipped: set[int],
    dead_letters: Sequence[int],
    idempotent_replays: bool,
) -> None:
    """Each logged mutation by how often it was applied: never (``lost``, unless the guard
    skipped it as applied before or it was dead-lettered), once, or more (``doubled``, or a
    tolerated ``reapplied`` replay); and each dead-lettered one."""
    counts = Counter(offset for offset, _ in applies)
    for offset, record in sorted(logged.items()):
        if counts[offset] == 0 and offset not in skipped and offset not in dead_letters:
            findings.add(
                "lost",
                f"mutation {record.value or 'delete'} of {record.key} at offset {offset} was never applied",
                index.writer_of(offset, record),
                offset=offset,
            )
        if counts[offset] > 1 and idempotent_replays and _same_value_again(applies, offset, record.key):
            findings.tolerated["reapplied"] += counts[offset] - 1
        elif counts[offset] > 1:
            findings.add(
                "doubled",
                f"mutation at offset {offset} ({record.key}) was applied {counts[offset]} times",
                index.writer_of(offset, record),
                offset=offset,
                # a lost write held this offset first: the offset applied twice is that loss again
                **_echo(index.gone_at.get(offset, [])),
            )
    for offset in dead_letters:
        findings.add("dead-lettered", f"mutation at offset {offset} went to the dead-letter log", offset=offset)


def _classify_apply_order(findings: _WalFindings, applies: Sequence[tuple[int, str]]) -> None:
    """A key whose mutations were applied against log order is ``reordered``."""
    per_key: dict[str, list[int]] = defaultdict(list)
    for offset, key in applies:
        per_key[key].append(offset)
    for key, offsets in per_key.items():
        backwards = [(a, b) for a, b in itertools.pairwise(offsets) if b < a]
        if backwards:
            findings.add("reordered", f"{key}: offset {backwards[0][1]} applied after {backwards[0][0]}", key=key)


def _classify_final_values(
    findings: _WalFindings,
    index: _WalIndex,
    logged: Mapping[int, LoggedMutation],
    applies: Sequence[tuple[int, str]],
    final: Mapping[str, str | None],
) -> None:
    """Each key's final value against its last logged mutation: right; a value no write (or no
    logged one) produced, ``phantom``; an older one, ``reordered``; none, ``lost``; or a
    tolerated value a failover rolled back after it was applied."""
    history, by_value, gone_at, applied = findings.history, index.by_value, index.gone_at, index.applied
    for key, value in final.items():
        history_of_key = [(o, r) for o, r in sorted(logged.items()) if r.key == key]
        expected = history_of_key[-1][1].value if history_of_key else None
        if value == expected:
            continue
        earlier = {r.value for _, r in history_of_key}
        # The target ending with a lost write applied before its loss (a delete: None), or short
        # of the mutation that took a lost write's offset (the applier had passed it), is that
        # loss seen again.
        last = history_of_key[-1][0] if history_of_key else None
        skipped_for = [p for p in gone_at.get(last, []) if (last, p.key) in applied] if last is not None else []
        if value is not None and value not in by_value:
            findings.add("phantom", f"{key} holds {value}, which no write produced", key=key)
        elif value in earlier or value is None:
            findings.add(
                "reordered" if value is not None else "lost",
                f"{key} ends as {value}, but its last logged mutation is {expected or 'a delete'}",
                index.writer_of(*history_of_key[-1]) if history_of_key else [],
                key=key,
                **_echo(skipped_for if value is not None else [*index.applied_then_lost(key, None), *skipped_for]),
            )
        elif _rolled_back_after_apply(history, by_value[value], logged, applies, key):
            message = f"{key} holds {value}, an unacknowledged write the log served and a failover rolled back"
            findings.roll_back(message, by_value[value], key)
        else:
            findings.add(
                "phantom",
                f"{key} holds {value}, which was never logged for it",
                key=key,
                **_echo(index.applied_then_lost(key, value)),
            )


def _rolled_back_after_apply(
    history: History, write: Pair, logged: Mapping[int, LoggedMutation], applies: Sequence[tuple[int, str]], key: str
) -> bool:
    """``write`` (its outcome unknown) was applied from an entry of ``key`` that a failover took
    out of the log: see ``rolled-back-after-apply`` in the module docstring."""
    if write.ok or _failed(write) or not failed_over(history):
        return False
    return any(k == key and (offset not in logged or logged[offset].key != key) for offset, k in applies)


def _same_value_again(applies: Sequence[tuple[int, str]], offset: int, key: str) -> bool:
    """No later mutation of ``key`` was applied between the first and the last application of
    ``offset``: re-applying it wrote the value the key already had."""
    positions = [i for i, (o, _) in enumerate(applies) if o == offset]
    between = applies[positions[0] + 1 : positions[-1]]
    return not any(k == key and o > offset for o, k in between)


def _failed(pair: Pair) -> bool:
    return pair.completion is not None and pair.type.value == "fail"


def _as_logged(pair: Pair) -> LoggedMutation:
    value = str(pair.invoke.value)
    assert pair.key is not None
    return LoggedMutation(pair.key, None if value.endswith(DELETE_SUFFIX) else value)
