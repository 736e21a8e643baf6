"""Long property-based hunts: a time budget instead of an example count, progress that does
not flood CI logs, an example database shared between machines, and a summary at the end.

``--prism-hunt=2h`` gives the stateful suites (suites whose name starts with ``stateful``) the
``prism-hunt`` profile and a budget of test time: two hours of hunting per worker, split between
the tests of those suites that run a machine and that this run selected (the xdist workers hunt
side by side). Each test, as it starts, gets an even share of the worker-seconds left, counted
over the tests not started yet by any worker, so one that overran shortens the rest instead of
stretching the hunt, and a worker that drew fewer tests does not stop early. Each test hunts in
rounds of :data:`ROUND_EXAMPLES` examples, each round with a fresh seed, until its share is
spent or a failure is found; Hypothesis then shrinks the failure and saves it in the example
database. Given ``--hypothesis-seed``, the rounds' seeds come from it, and the database is still
read and written (Hypothesis alone would bypass it under a forced seed).

``--prism-hunt-db`` names that database: a directory (on a shared volume, say) or a
``redis://`` URL (Hypothesis's own Redis-backed database). Every machine hunting with the same
database replays the failures the others found before generating anything new, so a failure
found overnight on one machine fails the next run everywhere, at once. A test's examples are
keyed there by its identity (:mod:`.identity`), the same for an installed package, an editable
checkout and an out-of-tree run of the same suite.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import math
import os
import re
import shlex
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.errors import RepeatedField
from prism_testkit.redaction import redact

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

ROUND_EXAMPLES = 10  # examples per round: a round's end is when the budget is looked at
PROGRESS_EVERY = 30.0  # seconds between progress lines of one worker (PRISM_HUNT_PROGRESS_EVERY)
HUNTED_PREFIX = "stateful"  # suites whose name starts with it are the ones a hunt runs long


class HuntError(ValueError):
    """A hunt option that cannot work (a malformed budget or database)."""


class RepeatedBudget(HuntError, RepeatedField):
    """``--prism-hunt`` given two budgets (``10m,2h`` or ``1h30m``): one would be dropped unread."""


OPTION = "--prism-hunt"
FIELD = "budget"  # the option's one field: a duration in one of config.units.DURATION_UNITS
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?\s*[a-z]*", re.IGNORECASE)


def parse_budget(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``: seconds; a budget must be positive and finite."""
    from prism_testkit.config.units import parse_duration

    if len(amounts := _AMOUNT.findall(text)) > 1:  # the duration parser would refuse it as no duration at all
        shown = text[:40] if text.isprintable() else "(not printable)"
        message = f"{OPTION} takes one budget, not {len(amounts)}: {shown!r} (give it in one unit, e.g. 90m)"
        raise RepeatedBudget(OPTION, FIELD, message)
    try:
        seconds = parse_duration(text.strip())
    except ValueError as exc:
        raise HuntError(f"--prism-hunt: {exc}") from None
    if not isinstance(seconds, float | int) or not 0 < seconds < math.inf:
        raise HuntError(f"--prism-hunt takes a positive, finite duration such as 10m or 2h, not {text!r}")
    return float(seconds)


def open_database(where: str) -> ExampleDatabase:
    """A directory path, or a ``redis://`` / ``rediss://`` URL (needs the ``redis`` extra)."""
    from prism_testkit.options import hunt_db_problem

    problem = hunt_db_problem(where)
    if problem is not None:  # also refused when the options are read; this guards other callers
        raise HuntError(f"--prism-hunt-db: {problem}")
    if where.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise HuntError("--prism-hunt-db: a Redis database needs pip install 'prism-testkit[redis]'") from None
        client = redis.Redis.from_url(where)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise HuntError(f"--prism-hunt-db {redact(where)}: cannot reach Redis ({type(exc).__name__})") from None
        return RedisExampleDatabase(client, key_prefix=b"prism-hunt:")
    from hypothesis.database import DirectoryBasedExampleDatabase

    path = Path(where).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HuntError(f"--prism-hunt-db: cannot use directory {path}: {exc.strerror}") from None
    return DirectoryBasedExampleDatabase(str(path))


@dataclass
class HuntTally:
    """What one test's hunt did; reported per test and summed at the end of the run."""

    rounds: int = 0
    examples: int = 0
    faults: int = 0
    seconds: float = 0.0
    allotted: float = 0.0  # seconds this test was given when it started
    failed: bool = False
    skipped: str | None = None  # why a round skipped the test (then neither failed nor done)
    test: str = ""  # the test's node id
    failure: str | None = None  # one line: the shrunk failure's verdicts, or its error
    replay: str | None = None  # the command that runs that failure again (its schedule's, when written)
    seed: int | None = None  # the seed of the round that failed
    schedule: str | None = None  # the failing example's schedule file
    seed_replay: str | None = None  # the command that draws that example again from its seed
    replayed: str | None = None  # what replaying the schedule once gave: "reproduced: ..." or "did not reproduce: ..."

    def as_property(self) -> dict[str, float | int | bool | str | None]:
        return {
            "test": self.test,
            "rounds": self.rounds,
            "examples": self.examples,
            "faults": self.faults,
            "seconds": round(self.seconds, 1),
            "failed": self.failed,
            "skipped": self.skipped,
            "failure": self.failure,
            "replay": self.replay,
            "seed": self.seed,
            "schedule": self.schedule,
            "seed_replay": self.seed_replay,
            "replayed": self.replayed,
        }


@dataclass
class HuntPlan:
    """The hunt of this run (one per process: the controller and each xdist worker).

    The budget is test time: seconds each worker spends in hunting tests, not the run's wall
    time (collection, servers starting, plain tests and the tests of other suites come on top).
    It is shared by the hunting tests this run selected (after ``-k``, shards and every other
    deselection), the ones that run a machine (see :func:`runs_a_machine`)."""

    budget: float
    database: ExampleDatabase | None  # the shared one, seen through IdentityKeyedDatabase
    database_label: str | None
    workers: int = 1
    worker: str | None = None  # this xdist worker's id (gw0...), None in the controller or without xdist
    emit: Callable[[str], None] = field(default=lambda line: None)
    _last_progress: float | None = None  # None: the first round's line is always shown
    hunted_here: int = 0  # hunted tests this process has finished
    # A file the run's xdist workers share: which hunted tests any of them has started, the
    # seconds each was given, and by how much each overran or fell short. Without it each worker
    # would guess it gets half the tests, and one that drew fewer (xdist hands tests to whichever
    # worker is free) would end its last test early and idle.
    ledger: Path | None = None
    hunted_ids: set[str] = field(default_factory=set)  # node ids of the hunting tests (collection)
    identities: dict[str, str] = field(default_factory=dict)  # node id -> the test's identity (collection)
    from_database: dict[str, bool] = field(default_factory=dict)  # node id -> its failure was saved when it started
    clock: Callable[[], float] = time.monotonic
    _counted: set[str] = field(default_factory=set)  # of those, the ones counted as started here
    _entries: list[dict[str, Any]] = field(default_factory=list)  # the ledger, without a ledger file
    _current: tuple[str, float, float] | None = None  # the test hunting here: node id, its start, its share
    _spent_here: float = 0.0  # seconds the hunting tests of this process took
    _forced_seed: object = None  # --hypothesis-seed, lifted while a test hunts
    _lifted: bool = False

    def __post_init__(self) -> None:
        from prism_testkit.hunting.identity import IdentityKeyedDatabase

        if self.database is not None and not isinstance(self.database, IdentityKeyedDatabase):
            self.database = IdentityKeyedDatabase(self.database)

    def allot(self, nodeid: str = "") -> float:
        """Seconds the hunted test starting now may run: the worker-seconds of the budget left
        (the budget times the workers, less what the tests started before were given and by how
        much the finished ones overran), split over the hunted tests no worker has started yet,
        this one included, and never more than what is left of this worker's budget. A test that
        overran (shrinking a failure takes as long as it takes) shortens the ones after it
        instead of stretching the hunt. Always at least one round.

        While the test hunts, the shared database keys its examples by the test's identity, and
        ``--hypothesis-seed`` is lifted: Hypothesis reads and writes no database for a test run
        under a forced seed, and the hunt's rounds are seeded from it anyway (by the runner)."""
        self._counted.add(nodeid)

        def start(entries: list[dict[str, Any]]) -> dict[str, Any]:
            started = {entry["start"] for entry in entries if "start" in entry}
            committed = sum(float(entry.get("allotted", 0.0)) + float(entry.get("over", 0.0)) for entry in entries)
            remaining = len((self.hunted_ids - started) | {nodeid})
            pool = self.budget * self.workers - committed
            share = max(0.0, min(self.budget - self._spent_here, pool / remaining))
            return {"start": nodeid, "allotted": share}

        share = float(self._record(start)["allotted"])
        self._current = (nodeid, self.clock(), share)
        self._begin(nodeid)
        return share

    def _begin(self, nodeid: str) -> None:
        from hypothesis import core

        from prism_testkit.hunting.identity import IdentityKeyedDatabase

        if not self._lifted:
            self._forced_seed, core.global_force_seed, self._lifted = core.global_force_seed, None, True
        if isinstance(self.database, IdentityKeyedDatabase):
            identity = self.identities.get(nodeid)
            self.database.bind(identity)
            if identity is not None:
                try:
                    self.from_database[nodeid] = self.database.holds(identity)
                except Exception:  # the database's own error comes again, from Hypothesis
                    self.from_database[nodeid] = False

    def _record(self, make: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
        """Append the entry ``make`` makes of the ledger's entries so far (under the ledger's lock)."""
        if self.ledger is None:
            entry = make(self._entries)
            self._entries.append(entry)
            return entry
        with open(self.ledger, "a+") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)  # released on close
            ledger.seek(0)
            entries = [json.loads(line) for line in ledger.read().splitlines() if line.strip()]
            entry = make(entries)
            ledger.write(json.dumps(entry) + "\n")
        return entry

    def ended(self, nodeid: str) -> None:
        """A hunted test that ended without hunting (it skipped as not applicable to its
        combination, or failed before its machine ran) is counted as started, given nothing,
        or the tests after it would save time for it that nobody spends."""
        if nodeid in self.hunted_ids and nodeid not in self._counted:
            self._counted.add(nodeid)
            self._record(lambda entries: {"start": nodeid, "allotted": 0.0})

    def finished(self) -> None:
        """The test hunting here is done: by how much it overran its share (or fell short) is
        counted, and the forced seed and the database's key are put back."""
        from hypothesis import core

        from prism_testkit.hunting.identity import IdentityKeyedDatabase

        self.hunted_here += 1
        if self._current is not None:
            _, began, share = self._current
            took = self.clock() - began
            self._spent_here += took
            self._current = None
            self._record(lambda entries: {"over": took - share})
        if self._lifted:
            core.global_force_seed = self._forced_seed  # type: ignore[assignment]  # typed None upstream
            self._forced_seed, self._lifted = None, False
        if isinstance(self.database, IdentityKeyedDatabase):
            self.database.bind(None)

    def annotate(self, nodeid: str, hunt: dict[str, Any]) -> None:
        """Add to a hunted test's ``prism_hunt`` property its identity and, with a shared
        database, the database, whether its failure came from there, and the command that
        replays it from there (which a seed cannot, when the failure was not drawn from it)."""
        identity = self.identities.get(nodeid)
        if identity is not None:
            hunt["identity"] = identity
        if self.database_label is None:
            return
        hunt["database"] = self.database_label
        hunt["from_database"] = self.from_database.get(nodeid, False)
        if hunt.get("failed"):
            hunt["database_replay"] = database_replay(hunt, self.database_label)
            if hunt["from_database"] and not hunt.get("schedule"):
                hunt["replay"] = hunt["database_replay"]  # the seed's command would search afresh

    def progress(self, nodeid: str, tally: HuntTally, *, final: bool = False) -> None:
        """A line at most every :data:`PROGRESS_EVERY` seconds, and one when a test ends (a
        failure is said then, once: the round that failed is the test's last)."""
        if tally.failed and not final:
            return
        now = time.monotonic()
        every = float(os.environ.get("PRISM_HUNT_PROGRESS_EVERY", PROGRESS_EVERY))
        if not final and self._last_progress is not None and now - self._last_progress < every:
            return
        self._last_progress = now
        where = f"[{self.worker}] " if self.worker else ""
        state = "FAILED" if tally.failed else "skipped" if tally.skipped else "done" if final else "hunting"
        self.emit(
            f"prism-hunt {where}{state} {nodeid}: {tally.examples} examples in {tally.rounds} rounds, "
            f"{tally.faults} faults injected, {tally.seconds:.0f}s of {tally.allotted:.0f}s"
        )


def runs_a_machine(item: pytest.Item) -> bool:
    """Whether a test of a stateful suite hunts: its body runs a machine (calls ``execute``,
    :meth:`StatefulRun.execute`, itself or in a function it defines, a lambda say). A plain test
    of the suite (one that drives a machine step by step) does not; it gets no share of the
    budget. A test whose code cannot be read is counted, as hunting."""
    function = getattr(item, "function", None)
    code = getattr(inspect.unwrap(function), "__code__", None) if function is not None else None
    return code is None or _calls(code, "execute")


def _calls(code: types.CodeType, name: str) -> bool:
    return name in code.co_names or any(
        _calls(const, name) for const in code.co_consts if isinstance(const, types.CodeType)
    )


def database_replay(hunt: dict[str, Any], label: str) -> str:
    """The command that replays a hunted test's failure from the shared database ``label``: a
    one-second hunt of the test with that database replays what is saved there before drawing
    anything. Made from the test's seed command (its backends, binaries and settings), without
    the seed."""
    from prism_testkit.hunting.replay import command_line

    try:
        words = shlex.split(str(hunt.get("seed_replay") or hunt.get("replay") or ""))
    except ValueError:
        words = []
    if "pytest" not in words:
        words = ["pytest", str(hunt.get("test", ""))]
    at = words.index("pytest")
    settings = dict(word.partition("=")[::2] for word in words[:at] if "=" in word)
    dropped = ("--hypothesis-seed=", "--hypothesis-profile=", "--prism-hunt=", "--prism-hunt-db=")
    args = [word for word in words[at:] if not word.startswith(dropped)]
    return command_line([*args, "--prism-hunt=1s", f"--prism-hunt-db={label}"], settings)


def failure_lines(hunt: dict[str, Any]) -> list[str]:
    """A failing hunted test in the hunt's summary: its verdict, then how to replay it. A failure
    that came from the shared database is named there (its round's seed would search afresh)."""
    lines = [f"FAILED {hunt.get('test')}: {hunt.get('failure')}"]
    if hunt.get("from_database"):
        lines.append(
            f"  from the database {hunt.get('database')}, saved under {hunt.get('identity')} "
            "(not drawn from a seed: a seed would search afresh)"
        )
    elif hunt.get("seed") is not None:
        lines.append(f"  seed: {hunt.get('seed')} ({hunt.get('seed_replay')})")
    if hunt.get("schedule"):
        lines.append(f"  schedule: {hunt.get('schedule')}")
    lines.append(f"  replay: {hunt.get('replay')}")
    if hunt.get("replayed"):
        lines.append(f"  replayed once: {hunt.get('replayed')}")
    if hunt.get("database_replay") and hunt.get("database_replay") != hunt.get("replay"):
        lines.append(f"  replay from the database: {hunt.get('database_replay')}")
    return lines


def stderr_emitter(write_line: Callable[[str], None] | None) -> Callable[[str], None]:
    """Progress goes to the terminal reporter when there is one (no xdist), else to the
    worker's stderr, which xdist leaves connected to the terminal."""
    if write_line is not None:
        return write_line

    def emit(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return emit


LEDGER_KEPT = 86400.0  # seconds since its last write after which a ledger is a dead run's


def ledger_path(run: str) -> Path:
    """The start ledger of run ``run`` (xdist's run id, shared by its workers), in the harness's
    own parent dir. No worker can tell when the others are done with it, so ledgers of dead
    runs are swept by later hunts: only files of the ledger's name, in that private dir."""
    from prism_testkit.provision.workdirs import workdir_parent

    folder = workdir_parent()
    now = time.time()
    for old in folder.glob("hunt-*.ledger"):
        with contextlib.suppress(OSError):  # another worker swept it first
            if old.is_file() and not old.is_symlink() and now - old.stat().st_mtime > LEDGER_KEPT:
                old.unlink()
    return folder / f"hunt-{run}.ledger"


PLAN = pytest.StashKey[HuntPlan]()  # on the config of a run given --prism-hunt
