"""Schedule files: what a replay of a failing stateful example needs beyond Hypothesis's data.

A seed replays the data, not the timing: on real servers, whether a rule's precondition held
(a partition still in force, a step still in flight) depends on the clock and the machine's
load, so re-drawing the example from its seed may take another path. A schedule records the
path itself: every step of the failing example in the order it was issued, each with its
arguments and the values it drew inside (a power cut's storage fault, a corruption's file kind),
the history ops it issued, and for each fault the client operation it followed and the ones
still in flight. ``--prism-replay=FILE`` (or ``prism-testkit replay FILE``) issues those steps
again, one after the other, each completed before the next; nothing is drawn anew.

The file is JSON (:data:`VERSION` 1). Values are plain JSON where JSON can hold them; bytes,
tuples, sets and dataclasses carry a ``"$type"`` tag so they come back as what the rule was
given. A value of another kind is kept as its ``repr`` and makes the schedule unreplayable,
which the replay says rather than guessing.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import importlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VERSION = 1


class ScheduleError(ValueError):
    """A schedule file that cannot be read or replayed; the message is one line."""


# -- values --------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as JSON data that :func:`decode` turns back into an equal value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else {"$type": "float", "repr": repr(value)}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple):
        return {"$type": "tuple", "items": [encode(item) for item in value]}
    if isinstance(value, frozenset | set):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return {"$type": kind, "items": sorted((encode(item) for item in value), key=json.dumps)}
    if isinstance(value, bytes | bytearray):
        return {"$type": "bytes", "base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode(item) for key, item in value.items()}
        return {"$type": "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"$type": "dataclass", "class": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    return {"$type": "unrecorded", "repr": repr(value)[:200]}


def decode(data: Any) -> Any:
    """The value :func:`encode` recorded; :class:`ScheduleError` for one it could not."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    kind = data.get("$type")
    if kind is None:
        return {key: decode(item) for key, item in data.items()}
    try:
        if kind == "tuple":
            return tuple(decode(item) for item in data["items"])
        if kind in ("frozenset", "set"):
            return (frozenset if kind == "frozenset" else set)(decode(item) for item in data["items"])
        if kind == "bytes":
            return base64.b64decode(data["base64"], validate=True)
        if kind == "float":
            return float(data["repr"])
        if kind == "dict":
            return {decode(k): decode(v) for k, v in data["items"]}
        if kind == "dataclass":
            module, _, qualname = str(data["class"]).partition(":")
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            return target(**{name: decode(item) for name, item in data["fields"].items()})
    except ScheduleError:
        raise
    except Exception as exc:
        raise ScheduleError(f"a recorded {kind} value cannot be rebuilt: {type(exc).__name__}: {exc}") from None
    if kind == "unrecorded":
        raise ScheduleError(f"a step was given a value the schedule could not record: {data.get('repr')}")
    raise ScheduleError(f"unknown recorded value type {kind!r}")


# -- steps and schedules -------------------------------------------------------------------


@dataclass
class Step:
    """One rule as it was issued: its arguments, what it drew inside, the history ops it
    issued (``process f``), and, for a fault, the client operation it followed and how many
    client operations were still in flight when it started."""

    rule: str
    arguments: dict[str, Any] = field(default_factory=dict)  # encoded; a data object is "$data"
    draws: list[Any] = field(default_factory=list)  # encoded, in the order they were drawn
    ops: list[str] = field(default_factory=list)
    fault: bool = False  # it issued an op of process 'nemesis'
    after: str | None = None  # the last client op completed before it started
    in_flight: int = 0  # client ops invoked and not completed when it started

    def describe(self) -> str:
        what = "fault" if self.fault else "step"
        args = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.arguments.items() if v != DATA)
        text = f"{what} {self.rule}({args})"
        if self.draws:
            text += f" drew {json.dumps(self.draws)}"
        if self.fault:
            text += f" after [{self.after or 'nothing'}]"
        return text


DATA = "$data"  # an argument that was a Hypothesis data object: its draws are the step's ``draws``


@dataclass
class Schedule:
    """A failing example's steps and what it takes to run its test again."""

    test: str  # the test file's absolute path and the test's name: ``/x/suites/test_a.py::test_b[...]``
    nodeid: str
    backends: list[str]
    combination: dict[str, str]  # slot -> backend
    failure: str  # one line: the verdicts or the error
    signature: list[str]  # what a replay must show again: ``checker:anomaly`` pairs, or ``error:Type``
    steps: list[Step]
    seed: int | None = None
    profile: str | None = None
    simulate: bool = False
    buggify: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)  # the run's ``-p`` plugins (a mutant, say)
    import_paths: list[str] = field(default_factory=list)  # where the run imported its ``-p`` plugins from
    # the clusters the example failed over unasked, after its first client ops (a failover pass)
    forced_failovers: list[str] = field(default_factory=list)
    # the run's --prism-load with the seed of the failing process's stalls (None: no load)
    load: str | None = None
    written: str = ""
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_data(cls, data: Any, label: str) -> Schedule:
        if not isinstance(data, dict):
            raise ScheduleError(f"{label}: not a schedule (a JSON object with 'test' and 'steps' expected)")
        if data.get("version") != VERSION:
            found = data.get("version")
            raise ScheduleError(f"{label}: schedule version {found!r}, this prism-testkit reads {VERSION}")
        try:
            steps = [Step(**step) for step in data["steps"]]
            names = {f.name for f in dataclasses.fields(cls)} - {"steps"}
            return cls(steps=steps, **{k: v for k, v in data.items() if k in names})
        except (KeyError, TypeError) as exc:
            raise ScheduleError(f"{label}: not a schedule: {type(exc).__name__}: {exc}") from None

    def render(self) -> str:
        """The steps, one per line (a failure message's "recorded schedule")."""
        return "\n".join(f"  {n:>2}. {step.describe()}" for n, step in enumerate(self.steps, 1))


def read(path: str | os.PathLike[str]) -> Schedule:
    """The schedule in ``path``; :class:`ScheduleError` (one line) when it cannot be one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScheduleError(f"{path}: cannot read: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"{path}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    return Schedule.from_data(data, str(path))


def write(schedule: Schedule, folder: Path) -> Path:
    """Write ``schedule`` into ``folder`` under a name made of the test and the time; the path."""
    schedule.written = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", schedule.test.rsplit("/", 1)[-1].replace("::", "."))[:150]
    stamp = schedule.written.replace(":", "").replace("+0000", "Z")
    path = folder / f"{name}.{stamp}.{os.getpid()}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{name}.{stamp}.{os.getpid()}-{n}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(schedule.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


# -- what reproduces ---------------------------------------------------------------------------


def reproduces(recorded: list[str], replayed: list[str]) -> bool:
    """A replay reproduces a failure when it fails with every anomaly (or the error type) the
    recorded failure had; finding more as well still reproduces it."""
    return bool(replayed) and set(recorded) <= set(replayed)


@dataclass
class ReplayResult:
    """What one replay of a schedule gave."""

    reproduced: bool
    verdict: str  # the replay's own: its failure line, or "passed: every checker valid"
    notes: list[str] = field(default_factory=list)  # where the replay went another way than the recording
    error: Exception | None = field(default=None, repr=False, compare=False)  # what the replay raised

    def line(self) -> str:
        head = "reproduced" if self.reproduced else "did not reproduce"
        return f"{head}: {self.verdict}"

    def as_property(self) -> dict[str, Any]:
        return {"reproduced": self.reproduced, "verdict": self.verdict, "notes": self.notes}


REPLAY = pytest.StashKey[tuple[Schedule, Path]]()  # on the config of a run given --prism-replay
