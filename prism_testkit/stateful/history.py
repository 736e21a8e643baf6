"""Operation histories in the style of Jepsen: what clients asked for, and what they were told.

Every operation appears twice: an ``invoke`` when the client starts it, and a completion when the
client learns its outcome:

- ``ok``: it happened (with its result, e.g. the dequeued value or the offset an append got);
- ``fail``: it certainly did not happen (the backend refused it: not supported, too large...);
- ``info``: the outcome is unknown (a timeout, a lost connection): it *may* have happened, now or
  later. An invoke that never completes (the client crashed) counts as ``info`` too.

A *process* is one sequential client: it has at most one operation in flight, so checkers can
read a process's operations as a sequence. Use a distinct process id per concurrent task.

Recording:

    history = History()
    async with history.record("producer-1", "enqueue", key="q", value=7):
        await queue.send("q", encode(7))
    async with history.record("consumer-1", "dequeue", key="q") as op:
        delivery = await queue.receive("q")
        op.set(value=decode(delivery) if delivery else None)

Value conventions the checkers rely on (:mod:`prism_testkit.stateful.checkers`): a write carries its
value on the invoke; ``dequeue`` completes with the dequeued value (``None``: queue empty); a
queue ``drain`` completes with the list of values it read; a log ``poll`` or ``drain``
completes with a list of ``(offset, value)`` records. A poll whose outcome was lost, or that
was undone (its transaction aborted), may still carry the records it returned
(``info(value=...)`` / ``fail(value=...)``), and an append the offset it was given before
that. Lists are stored as tuples so values stay hashable, and survive the JSON round trip
unchanged.
"""

from __future__ import annotations

import json
import reprlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import Enum, StrEnum
from os import PathLike
from types import TracebackType
from typing import IO, Any, Final, Literal, Self

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import DeliveryNotFound, NotSupported, PayloadTooLarge, TransactionAborted
from prism_testkit.redaction import redact

Process = int | str


class OpType(StrEnum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"  # outcome unknown: maybe happened


# Exceptions that mean "the operation did not happen"; anything else leaves the outcome unknown.
DEFINITE_FAILURES: Final[tuple[type[BaseException], ...]] = (
    NotSupported,
    ValueError,
    DeliveryNotFound,
    PayloadTooLarge,
    TransactionAborted,
)


class _Unset(Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET


def freeze(value: Any) -> Any:
    """Lists (recursively) as tuples, so values are hashable and compare equal after a JSON trip."""
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def describe_error(error: BaseException | str | None) -> str | None:
    """A one-line, credential-free description of an error."""
    if error is None:
        return None
    if isinstance(error, str):
        return redact(error)
    message = str(error)
    return redact(f"{type(error).__name__}: {message}" if message else type(error).__name__)


@dataclass(frozen=True, slots=True)
class Op:
    """One event of a history: an invocation or a completion of an operation."""

    index: int  # position in the full history; kept in sub-histories so witnesses point back
    process: Process
    type: OpType
    f: str  # operation name: enqueue, dequeue, drain, append, poll, seek, put, get, commit...
    key: str | None = None  # queue / log / key name
    value: Any = None  # payload identity (an int or str), or a list of them / of (offset, value)
    offset: int | None = None
    time: int = 0  # monotonic nanoseconds
    error: str | None = None  # for fail and info: what the client saw
    txn: str | None = None  # ops sharing it were one transaction: they commit (or not) together

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping; fields that are ``None`` are left out."""
        data = asdict(self)
        data["type"] = self.type.value
        return {name: item for name, item in data.items() if item is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Op:
        fields = dict(data)
        fields["type"] = OpType(fields["type"])
        fields["value"] = freeze(fields.get("value"))
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Pair:
    """An invocation and its completion (``None`` when it never completed: outcome unknown)."""

    invoke: Op
    completion: Op | None

    @property
    def type(self) -> OpType:
        return self.completion.type if self.completion is not None else OpType.INFO

    @property
    def ok(self) -> bool:
        return self.type is OpType.OK

    @property
    def process(self) -> Process:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def key(self) -> str | None:
        return self.invoke.key

    @property
    def value(self) -> Any:
        """The completion's value when there is one (e.g. what a dequeue returned), else the invoke's."""
        return self.completion.value if self.completion is not None else self.invoke.value

    @property
    def offset(self) -> int | None:
        return self.completion.offset if self.completion is not None else self.invoke.offset

    @property
    def txn(self) -> str | None:
        return self.invoke.txn

    @property
    def ops(self) -> tuple[Op, ...]:
        return (self.invoke,) if self.completion is None else (self.invoke, self.completion)

    def completed_before(self, other: Pair) -> bool:
        """True when this operation finished before ``other`` started (no overlap in real time)."""
        return self.completion is not None and self.completion.index < other.invoke.index


class OpHandle:
    """The recorder's handle on one invoked operation: complete it exactly once."""

    def __init__(self, history: History, invoke: Op) -> None:
        self._history = history
        self.invoke = invoke
        self.completion: Op | None = None
        self._value: Any = UNSET
        self._offset: int | _Unset | None = UNSET

    @property
    def done(self) -> bool:
        return self.completion is not None

    def set(self, *, value: Any = UNSET, offset: int | _Unset | None = UNSET) -> None:
        """Remember the result the completion carries: ``ok``'s when ``record``'s block ends
        normally, and ``fail``'s or ``info``'s when it raises afterwards (what the operation
        was told before it was undone or its outcome was lost: the records a poll returned
        before its transaction aborted, the offset an append was given before the commit
        timed out)."""
        if value is not UNSET:
            self._value = value
        if offset is not UNSET:
            self._offset = offset

    def ok(self, value: Any = UNSET, offset: int | _Unset | None = UNSET) -> Op:
        """It happened. Value and offset default to what was ``set``, then to the invoke's."""
        return self._complete(OpType.OK, *self._told(value, offset), None)

    def fail(
        self, error: BaseException | str | None = None, *, value: Any = UNSET, offset: int | _Unset | None = UNSET
    ) -> Op:
        """It certainly did not happen. ``value`` / ``offset``: what it was told before it was
        undone (the records an aborted poll returned, the offset an append of a transaction
        that then aborted was given); left out, what was ``set``, then the invoke's."""
        return self._complete(OpType.FAIL, *self._told(value, offset), error)

    def info(
        self, error: BaseException | str | None = None, *, value: Any = UNSET, offset: int | _Unset | None = UNSET
    ) -> Op:
        """Its outcome is unknown: it may have happened. ``value`` / ``offset``: what it learnt
        before the outcome was lost (the records a poll returned, the offset an append of a
        transaction whose commit then timed out was given); left out, what was ``set``, then
        the invoke's."""
        return self._complete(OpType.INFO, *self._told(value, offset), error)

    def _told(self, value: Any, offset: int | _Unset | None) -> tuple[Any, int | _Unset | None]:
        return (self._value if value is UNSET else value, self._offset if offset is UNSET else offset)

    def _complete(
        self, type_: OpType, value: Any, offset: int | _Unset | None, error: BaseException | str | None
    ) -> Op:
        if self.completion is not None:
            raise RuntimeError(f"operation {self.invoke.index} ({self.invoke.f}) was already completed")
        self.completion = self._history._complete(self.invoke, type_, value, offset, describe_error(error))
        return self.completion


class Recording:
    """Context manager of :meth:`History.record` (usable with ``async with`` and ``with``)."""

    def __init__(self, history: History, invoke_args: dict[str, Any], failures: tuple[type[BaseException], ...]):
        self._history = history
        self._invoke_args = invoke_args
        self._failures = failures
        self._handle: OpHandle | None = None

    def __enter__(self) -> OpHandle:
        self._handle = self._history.invoke(**self._invoke_args)
        return self._handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        handle = self._handle
        assert handle is not None, "exit without enter"
        if handle.done:  # the block completed it explicitly
            return False
        if exc is None:
            handle.ok()
        elif isinstance(exc, self._failures):
            handle.fail(exc)
        else:  # timeouts, lost connections, cancellation: it may have happened
            handle.info(exc)
        return False  # never swallow the exception

    async def __aenter__(self) -> OpHandle:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


class History(Sequence[Op]):
    """An ordered list of operations, and the recorder that appends to it.

    ``History(ops)`` keeps the given indices (they must increase), so a sub-history still points
    into the full history; :meth:`reindexed` renumbers from 0 (for hand-made or edited histories).
    """

    def __init__(
        self,
        ops: Iterable[Op] = (),
        *,
        clock: Callable[[], int] = clocks.monotonic_ns,
        definite_failures: tuple[type[BaseException], ...] = DEFINITE_FAILURES,
    ) -> None:
        self._ops: list[Op] = list(ops)
        for before, after in zip(self._ops, self._ops[1:], strict=False):
            if after.index <= before.index:
                raise ValueError(f"op indices must increase: {before.index} then {after.index}")
        self._clock = clock
        self.definite_failures = definite_failures
        self._lock = threading.Lock()  # recorders may run in several threads, not only tasks
        self._in_flight: dict[Process, Op] = {}

    @classmethod
    def reindexed(cls, ops: Iterable[Op], **kwargs: Any) -> Self:
        """A history of ``ops`` in the given order, renumbered 0, 1, 2..."""
        return cls((_replace_index(op, i) for i, op in enumerate(ops)), **kwargs)

    # --- sequence protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self._ops)

    def __getitem__(self, position: Any) -> Any:
        return self._ops[position]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self._ops == other._ops

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def ops(self) -> tuple[Op, ...]:
        return tuple(self._ops)

    # --- recording ---------------------------------------------------------------------------

    def invoke(
        self,
        process: Process,
        f: str,
        key: str | None = None,
        value: Any = None,
        offset: int | None = None,
        *,
        txn: str | None = None,
    ) -> OpHandle:
        """Record the start of an operation; complete it through the returned handle. Ops of
        one transaction share ``txn`` (each on its own process, or one after the other)."""
        with self._lock:
            if process in self._in_flight:
                busy = self._in_flight[process]
                raise ValueError(
                    f"process {process!r} already has operation {busy.index} ({busy.f}) in flight; "
                    "use a distinct process id per concurrent client"
                )
            op = Op(self._next_index(), process, OpType.INVOKE, f, key, freeze(value), offset, self._clock(), txn=txn)
            self._ops.append(op)
            self._in_flight[process] = op
        return OpHandle(self, op)

    def record(
        self,
        process: Process,
        f: str,
        key: str | None = None,
        value: Any = None,
        offset: int | None = None,
        *,
        txn: str | None = None,
        definite_failures: tuple[type[BaseException], ...] | None = None,
    ) -> Recording:
        """``async with`` (or ``with``) block recording one operation: ok when the block ends
        normally, fail when it raises one of ``definite_failures`` (default: the history's), info
        for any other exception; each carries what the block ``set`` before it ended.
        Exceptions always propagate."""
        failures = self.definite_failures if definite_failures is None else definite_failures
        args = {"process": process, "f": f, "key": key, "value": value, "offset": offset, "txn": txn}
        return Recording(self, args, failures)

    def _complete(self, invoke: Op, type_: OpType, value: Any, offset: int | _Unset | None, error: str | None) -> Op:
        with self._lock:
            op = Op(
                self._next_index(),
                invoke.process,
                type_,
                invoke.f,
                invoke.key,
                invoke.value if value is UNSET else freeze(value),
                invoke.offset if offset is UNSET else offset,
                self._clock(),
                error,
                invoke.txn,
            )
            self._ops.append(op)
            self._in_flight.pop(invoke.process, None)
        return op

    def _next_index(self) -> int:
        return self._ops[-1].index + 1 if self._ops else 0

    # --- reading -----------------------------------------------------------------------------

    def pairs(self) -> list[Pair]:
        """Every invocation with its completion, in invocation order. A completion is matched
        to the open invocation of the same process; an invoke never completed gets ``None``."""
        open_: dict[Process, int] = {}
        pairs: list[Pair] = []
        for op in self._ops:
            if op.type is OpType.INVOKE:
                if op.process in open_:
                    raise ValueError(f"process {op.process!r} invoked op {op.index} while another was in flight")
                open_[op.process] = len(pairs)
                pairs.append(Pair(op, None))
                continue
            slot = open_.pop(op.process, None)
            if slot is None:
                raise ValueError(f"op {op.index} completes nothing: process {op.process!r} has no open invocation")
            invoke = pairs[slot].invoke
            if invoke.f != op.f:
                raise ValueError(f"op {op.index} completes {op.f!r} but process {op.process!r} invoked {invoke.f!r}")
            pairs[slot] = Pair(invoke, op)
        return pairs

    def subhistory(self, ops: Iterable[Op | Pair | int]) -> History:
        """The history of just these ops (or pairs, or indices), in order, keeping their indices."""
        wanted: set[int] = set()
        for item in ops:
            if isinstance(item, Pair):
                wanted.update(op.index for op in item.ops)
            else:
                wanted.add(item.index if isinstance(item, Op) else item)
        return History(op for op in self._ops if op.index in wanted)

    def filter(self, predicate: Callable[[Op], bool]) -> History:
        """A new history of the ops ``predicate`` keeps, in their order; this one is unchanged."""
        return History(op for op in self._ops if predicate(op))

    # --- rendering ---------------------------------------------------------------------------

    def render(self, limit: int | None = None) -> str:
        """One op per line; with ``limit``, the first ``limit`` lines and a count of the rest."""
        shown = self._ops if limit is None else self._ops[:limit]
        lines = [render_op(op) for op in shown]
        if limit is not None and len(self._ops) > limit:
            lines.append(f"... {len(self._ops) - limit} more ops")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<History of {len(self._ops)} ops>"

    # --- JSON lines --------------------------------------------------------------------------

    def to_jsonl(self, target: str | PathLike[str] | IO[str]) -> None:
        """Write one JSON object per op. Values must be JSON-serialisable (ints, strings, lists)."""
        if isinstance(target, str | PathLike):
            with open(target, "w", encoding="utf-8") as file:
                self._write_jsonl(file)
        else:
            self._write_jsonl(target)

    def to_jsonl_text(self) -> str:
        """The JSON lines :meth:`to_jsonl` writes, as one string (what a digest hashes); a
        value JSON cannot hold is written as its ``repr`` rather than refused."""
        return "".join(json.dumps(op.to_dict(), separators=(",", ":"), default=repr) + "\n" for op in self._ops)

    def _write_jsonl(self, file: IO[str]) -> None:
        for op in self._ops:
            try:
                line = json.dumps(op.to_dict(), separators=(",", ":"))
            except TypeError as error:
                raise TypeError(f"op {op.index} cannot be written as JSON: {error}") from None
            file.write(line + "\n")

    @classmethod
    def from_jsonl(cls, source: str | PathLike[str] | IO[str]) -> History:
        """Read what :meth:`to_jsonl` wrote, from a path or an open text file; a line that is not
        an op raises ``ValueError`` naming its line number."""
        if isinstance(source, str | PathLike):
            with open(source, encoding="utf-8") as file:
                return cls._read_jsonl(file)
        return cls._read_jsonl(source)

    @classmethod
    def _read_jsonl(cls, file: IO[str]) -> History:
        ops = []
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                ops.append(Op.from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f"line {number}: not a history op: {error}") from None
        return cls(ops)


_short = reprlib.Repr()
_short.maxlist = _short.maxtuple = 12
_short.maxstring = _short.maxother = 60


def render_op(op: Op) -> str:
    """``  12  p=c1  ok      dequeue  q  value=7`` — compact, aligned, one line."""
    parts = [f"{op.index:>5}", f"p={op.process!s:<4}", f"{op.type.value:<6}", f"{op.f:<8}"]
    if op.key is not None:
        parts.append(op.key)
    if op.value is not None:
        parts.append(f"value={_short.repr(op.value)}")
    if op.offset is not None:
        parts.append(f"offset={op.offset}")
    if op.txn is not None:
        parts.append(f"txn={op.txn}")
    if op.error is not None:
        parts.append(f"({op.error})")
    return "  ".join(parts)


def _replace_index(op: Op, index: int) -> Op:
    return Op(index, op.process, op.type, op.f, op.key, op.value, op.offset, op.time, op.error, op.txn)
