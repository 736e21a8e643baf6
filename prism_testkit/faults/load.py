"""Load mode (``--prism-load=SPEC``): what load a run asked for, and the seed that replays it.

A spec is a comma list: ``cpu:N`` (N CPU burners), ``io:N`` (N workers writing and fsyncing in
the run's work dir), ``stall:DUR@EVERY`` (scheduling jitter: on average every EVERY, one process
the harness started is stopped for a seeded time up to DUR, see :mod:`.jitter`) and ``seed:N``.
The burners are :mod:`.burners`; this module only parses, renders and remembers.

Each process that starts servers draws its stalls from its own seed, derived from the run's seed
and its xdist worker id (:func:`jitter_seed`); a process without xdist uses the run's seed as it
is. So a failure's replay command carries its worker's seed, and a replay run without xdist
draws the stalls that worker drew.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace
from typing import NamedTuple

import pytest

from prism_testkit.errors import RepeatedField

EXPECTED = (
    "give a comma list of cpu:N, io:N, stall:DUR@EVERY (e.g. stall:200ms@2s) and seed:N, or 'calibrated' "
    "(the census's strength), e.g. cpu:2,io:1,stall:200ms@2s or calibrated,seed:7"
)
MAX_WORKERS = 256  # burners of one kind: more is a typo, not a load
# The strength a suite must hold under before it lands (the census, benchmarks/census.py): one
# place, so the census, CI's load pass and the docs cannot drift apart. The weakest strength
# measured to reproduce a known speed-bet red on a 2-core machine (docs/load.md#calibration).
CALIBRATED = "cpu:4,stall:500ms@500ms"
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0}


class LoadSpecError(ValueError):
    """A spec that cannot be read; the message says what was expected."""


class RepeatedLoad(LoadSpecError, RepeatedField):
    """A spec that gives one of its fields twice (``calibrated`` gives cpu and stall)."""


class Field(NamedTuple):
    form: str  # what follows ``name:``
    example: str  # a value that reads


# Every field a spec may give, each at most once: the parser reads only these, and the tests
# generate their cases (each field given twice...) from this table, so a new field is covered.
FIELDS: dict[str, Field] = {
    "cpu": Field("N", "2"),
    "io": Field("N", "1"),
    "stall": Field("DUR@EVERY", "200ms@2s"),
    "seed": Field("N", "7"),
}
OPTION = "--prism-load"


@dataclass(frozen=True)
class LoadSpec:
    cpu: int = 0  # CPU burner workers
    io: int = 0  # write + fsync workers
    stall_max: float = 0.0  # seconds a stall lasts at most (0: no jitter)
    stall_every: float = 0.0  # mean seconds between two stalls
    seed: int | None = None  # None until :meth:`seeded`

    @property
    def stalls(self) -> bool:
        return self.stall_max > 0

    @property
    def burns(self) -> bool:
        return self.cpu > 0 or self.io > 0

    def seeded(self) -> LoadSpec:
        """This spec with a seed: its own, or one drawn now."""
        return self if self.seed is not None else replace(self, seed=random.SystemRandom().getrandbits(32))

    def parts(self) -> list[str]:
        found = []
        if self.cpu:
            found.append(f"cpu:{self.cpu}")
        if self.io:
            found.append(f"io:{self.io}")
        if self.stalls:
            found.append(f"stall:{duration(self.stall_max)}@{duration(self.stall_every)}")
        return found

    def argument(self, seed: int | None = None) -> str:
        """The ``--prism-load`` value that asks for this load again, with ``seed`` (default its own)."""
        chosen = self.seed if seed is None else seed
        return ",".join([*self.parts(), *([f"seed:{chosen}"] if chosen is not None else [])])

    def describe(self) -> str:
        """The header's words: ``cpu:2 io:1 stall:200ms@2s seed=1234``."""
        return " ".join([*self.parts(), f"seed={self.seed}"])


def duration(seconds: float) -> str:
    """``seconds`` as the spec writes it: ``200ms``, ``2s``."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000, 3):g}ms"


def _duration(text: str, what: str) -> float:
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise LoadSpecError(f"{what} {text!r} is not a duration: give a number with ms, s or m (e.g. 200ms, 2s)")
    seconds = float(found.group("number")) * _UNIT[found.group("unit")]
    if seconds <= 0:
        raise LoadSpecError(f"{what} must be longer than 0, not {text!r}")
    return seconds


def _count(text: str, kind: str) -> int:
    if not re.fullmatch(r"[0-9]{1,4}", text.strip()) or not 0 < int(text) <= MAX_WORKERS:
        raise LoadSpecError(f"{kind}:N takes a number of workers from 1 to {MAX_WORKERS}, not {text!r}")
    return int(text)


def parse(text: str) -> LoadSpec:
    """The spec ``text`` names; :class:`LoadSpecError` saying what was expected otherwise."""
    items = [item.strip() for item in text.split(",")]
    # "calibrated" names CALIBRATED, so a command line stays right when the calibration moves
    items = [part for item in items for part in (CALIBRATED.split(",") if item.lower() == "calibrated" else [item])]
    if not any(items) or not all(items):
        raise LoadSpecError(f"an empty item in {text!r}: {EXPECTED}")
    fields: dict[str, object] = {}
    seen: set[str] = set()  # by field name: stall fills two values, seed may be 0
    for item in items:
        kind, sep, value = item.partition(":")
        kind = kind.strip().lower()
        if not sep or not value.strip():
            raise LoadSpecError(f"{item!r} has no value: {EXPECTED}")
        if kind not in FIELDS:
            shown = kind[:20] if kind.isprintable() else "(not printable)"
            raise LoadSpecError(f"unknown load {shown!r}: {EXPECTED}")
        if kind in seen:
            named = f" ('calibrated' is {CALIBRATED})" if "calibrated" in text.lower() else ""
            raise RepeatedLoad(OPTION, kind, f"{kind} is given twice in {text!r}{named}: give each field once")
        seen.add(kind)
        if kind in ("cpu", "io"):
            fields[kind] = _count(value, kind)
        elif kind == "stall":
            most, at, every = value.partition("@")
            if not at:
                raise LoadSpecError(f"stall takes DUR@EVERY (e.g. stall:200ms@2s), not {value!r}")
            fields["stall_max"] = _duration(most, "the stall's longest duration")
            fields["stall_every"] = _duration(every, "the stall's mean interval")
        else:  # seed
            if not re.fullmatch(r"[0-9]{1,20}", value.strip()):
                raise LoadSpecError(f"seed:N takes a non-negative whole number, not {value!r}")
            fields["seed"] = int(value)
    spec = LoadSpec(**fields)  # type: ignore[arg-type]
    if not spec.burns and not spec.stalls:
        raise LoadSpecError(f"{text!r} asks for no load: {EXPECTED}")
    return spec


def jitter_seed(seed: int, worker: str | None) -> int:
    """The seed of one process's stalls: the run's own without xdist, else one derived from it
    and the worker id (stable across machines and Python hash seeds)."""
    if worker is None:
        return seed
    digest = hashlib.sha256(f"prism-load:{seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class ActiveLoad:
    """The load of this run as this process sees it."""

    spec: LoadSpec  # seeded
    worker: str | None  # the xdist worker id, None without xdist (or on the controller)

    @property
    def jitter_seed(self) -> int:
        assert self.spec.seed is not None
        return jitter_seed(self.spec.seed, self.worker)

    def replay_argument(self) -> str:
        """``--prism-load=...`` that draws this process's stalls again in a run without xdist."""
        return f"--prism-load={self.spec.argument(self.jitter_seed)}"


ACTIVE = pytest.StashKey[ActiveLoad]()  # on the config of a run given --prism-load


def replay_argument(config: pytest.Config) -> str | None:
    """The ``--prism-load=...`` a replay command of this process's failures carries, or None."""
    active = config.stash.get(ACTIVE, None)
    return None if active is None else active.replay_argument()


def schedule_value(config: pytest.Config) -> str | None:
    """The load a schedule file records (the spec with this process's seed), or None."""
    active = config.stash.get(ACTIVE, None)
    return None if active is None else active.spec.argument(active.jitter_seed)
