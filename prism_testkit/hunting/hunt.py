"""Long property-based hunts: a time budget instead of an example count, progress that does
not flood CI logs, an example database shared between machines, and a summary at the end.

``--prism-hunt=2h`` gives the stateful suites (suites whose name starts with ``stateful``) the
``prism-hunt`` profile and splits the budget between the ones this run collected (the xdist
workers hunt side by side): each test, as it starts, gets an even share of the worker-time
left, counted over the tests not started yet by any worker, so one that overran shortens the
rest instead of stretching the hunt, and a worker that drew fewer tests does not stop early.
Each test hunts in rounds of :data:`ROUND_EXAMPLES` examples, each round with a fresh seed,
until its share is spent or a failure is found; Hypothesis then shrinks the failure and saves
it in the example database.

``--prism-hunt-db`` names that database: a directory (on a shared volume, say) or a
``redis://`` URL (Hypothesis's own Redis-backed database). Every machine hunting with the same
database replays the failures the others found before generating anything new, so a failure
found overnight on one machine fails the next run everywhere, at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from prism_testkit.redaction import redact

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

ROUND_EXAMPLES = 10  # examples per round: a round's end is when the budget is looked at
PROGRESS_EVERY = 30.0  # seconds between progress lines of one worker (PRISM_HUNT_PROGRESS_EVERY)
HUNTED_PREFIX = "stateful"  # suites whose name starts with it are the ones a hunt runs long


class HuntError(ValueError):
    """A hunt option that cannot work (a malformed budget or database)."""


def parse_budget(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``: seconds; a budget must be positive and finite."""
    from prism_testkit.config.units import parse_duration

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
            "failure": self.failure,
            "replay": self.replay,
            "seed": self.seed,
            "schedule": self.schedule,
            "seed_replay": self.seed_replay,
            "replayed": self.replayed,
        }


@dataclass
class HuntPlan:
    """The hunt of this run (one per process: the controller and each xdist worker)."""

    budget: float
    database: ExampleDatabase | None
    database_label: str | None
    hunted_tests: int = 0  # set at collection
    workers: int = 1
    worker: str | None = None  # this xdist worker's id (gw0...), None in the controller or without xdist
    emit: Callable[[str], None] = field(default=lambda line: None)
    _last_progress: float | None = None  # None: the first round's line is always shown
    started: float = field(default_factory=time.monotonic)
    hunted_here: int = 0  # hunted tests this process has finished
    # A file the run's xdist workers share: how many hunted tests any of them has started.
    # Without it each worker would guess it gets half the tests, and one that drew fewer
    # (xdist hands tests to whichever worker is free) would end its last test early and idle.
    ledger: Path | None = None
    _started_here: int = 0
    hunted_ids: set[str] = field(default_factory=set)  # node ids of the hunted tests (collection)
    _counted: set[str] = field(default_factory=set)  # of those, the ones counted as started here

    def allot(self, nodeid: str = "") -> float:
        """Seconds the hunted test starting now may run: the worker-time left of the budget,
        split over the hunted tests no worker has started yet (this one included), and never
        more than the wall-clock time left. A test that overran (shrinking a failure takes as
        long as it takes) shortens the ones after it instead of stretching the whole hunt.
        Always at least one round."""
        left = self.budget - (time.monotonic() - self.started)
        self._counted.add(nodeid)
        started_before = self._count_start()
        remaining = max(1, self.hunted_tests - started_before)
        return max(0.0, min(left, left * self.workers / remaining))

    def _count_start(self) -> int:
        """Hunted tests started before this one, by every process of the run; counts this one."""
        self._started_here += 1
        if self.ledger is None:
            return self._started_here - 1
        with open(self.ledger, "a+") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)  # released on close
            ledger.seek(0)
            before = len(ledger.read())
            ledger.write(".")
        return before

    def ended(self, nodeid: str) -> None:
        """A hunted test that ended without hunting (it skipped as not applicable to its
        combination, or it is a plain test of a stateful suite) is counted as started, or the
        tests after it would save time for it that nobody spends."""
        if nodeid in self.hunted_ids and nodeid not in self._counted:
            self._counted.add(nodeid)
            self._count_start()

    def finished(self) -> None:
        self.hunted_here += 1

    def progress(self, nodeid: str, tally: HuntTally, *, final: bool = False) -> None:
        """A line at most every :data:`PROGRESS_EVERY` seconds, and one when a test ends."""
        now = time.monotonic()
        every = float(os.environ.get("PRISM_HUNT_PROGRESS_EVERY", PROGRESS_EVERY))
        if not final and self._last_progress is not None and now - self._last_progress < every:
            return
        self._last_progress = now
        where = f"[{self.worker}] " if self.worker else ""
        state = "FAILED" if tally.failed else "done" if final else "hunting"
        self.emit(
            f"prism-hunt {where}{state} {nodeid}: {tally.examples} examples in {tally.rounds} rounds, "
            f"{tally.faults} faults injected, {tally.seconds:.0f}s of {tally.allotted:.0f}s"
        )


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
