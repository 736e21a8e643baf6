"""The progress line of a long run: per suite done/total, and the time left once a tenth ran.

pytest's percentage stays at 0 % while the first module's stateful tests run for minutes, so
every ``PRISM_PROGRESS_EVERY`` seconds (30 at a terminal, 60 elsewhere, e.g. CI logs) a line
names the suites that moved: ``outbox 324/512``. The totals are known at collection: from the
items where this process collects, and under xdist (the controller collects nothing) from the
node ids a worker collected, each test module read once for the suite it declares
(``prism_suite("name", ...)``). A module declaring several suites gives ``?``.

Tests outside any suite (a project's own tests beside the suites) are counted too, each module
a group of its own: the line says ``other tests 120/1,900``, and the time left includes them
(they share the workers; without them the project's test run said "about 5 min left" with 11
to go).

The time left is what is left to run, each test weighed by its measured duration, laid onto
the run's workers (:func:`time_left`). A test's duration is the one recorded by an earlier run
when the run was given one (``--prism-shard-durations``, as the shard planner reads it), else
the mean of its finished siblings (the same test function's other parameters), else its group's,
else the run's. A test running now counts what it has still to run, and the workers are
filled as xdist fills them: each takes the next unit when it is free, in collection order, or,
under the project's scheduler with recorded durations, heaviest first; a unit is one test, or
every row of an exclusive backend's scope (a cluster's rows run one after another on one
worker: laid over every worker, 451 s of them counted as 45 s). The
count of tests done is not the measure: a run's tests differ by a factor of a thousand (a
cluster's snapshot row runs 400 s, a contract test a tenth of one), and the estimate by count
and by each group's mean said "about 4 min left" at 991 s with 9 long tests left, and "about
43 min" at 503 s with 17 short ones left.
"""

from __future__ import annotations

import heapq
import importlib.util
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

EVERY_AT_A_TERMINAL = 30.0
EVERY_ELSEWHERE = 60.0
_DECLARED = re.compile(r"""prism_suite\(\s*["']([\w.-]+)["']""")
_OUTSIDE = "::outside::"  # prefix of a group of tests outside any suite (a module path follows)
# A test still running past its expected duration: the share of its time so far it is expected
# to need again. Small: recorded durations vary by about a tenth from run to run, so an overrun
# is mostly a test near its end; still above zero, which would say it ends now, every line.
OVERRUN_SHARE = 0.1
# Recorded durations are another machine's, or another load's: once this many recorded tests
# finished, each recorded duration is scaled by how long they took here against their record.
PACE_AFTER = 20


def outside(nodeid: str) -> str:
    """The group of a test that belongs to no suite: its module."""
    return _OUTSIDE + nodeid.split("::", 1)[0]


def family(nodeid: str) -> str:
    """A test's node id without its parameters: its siblings share it."""
    return nodeid.split("[", 1)[0]


def time_left(running: Sequence[float], queued: Sequence[float], workers: int) -> float:
    """Seconds until the last test ends: the tests ``running`` (each the seconds it still needs,
    one per busy worker) and then the ``queued`` ones, in order, each to the first worker free,
    on ``workers`` workers (at least as many as are busy)."""
    free_at = sorted([*running, *[0.0] * max(0, workers - len(running))]) or [0.0]
    for seconds in queued:
        heapq.heapreplace(free_at, free_at[0] + seconds)  # a sorted list is a heap
    return max(free_at)


class Progress:
    def __init__(
        self,
        rootdir: Path,
        elsewhere: Callable[[], Iterable[Path]] = tuple,
        recorded: Mapping[str, float] | None = None,
        workers: int = 1,
    ) -> None:
        # Where a node id's module path is relative to: the rootdir, and for tests outside it
        # the directories the command line named, asked for only when the rootdir lacks a
        # module (``--pyargs prism_testkit.suites`` from an empty directory: every suite's
        # total read "?" and its tests were counted as "other tests").
        self.rootdir = rootdir
        self._elsewhere: Callable[[], Iterable[Path]] | None = elsewhere
        self.bases = [rootdir]
        self.sizes: Counter[str] = Counter()  # selected tests per suite
        self.done: Counter[str] = Counter()
        self.spent: dict[str, float] = defaultdict(float)  # seconds of setup + call + teardown per suite
        self.moved: dict[str, None] = {}  # suites with tests done since the last line
        self._suite_of: dict[str, str | None] = {}  # module path -> its one declared suite
        self.recorded: Mapping[str, float] = (
            {} if recorded is None else recorded
        )  # node id -> seconds an earlier run measured
        self.workers = workers  # at least; a run seen running more at once has more
        self.waiting: dict[str, str] = {}  # node id -> group, in collection order, not started
        self.running: dict[str, tuple[float, str | None]] = {}  # node id -> (when it started, its group)
        self.test_spent: dict[str, float] = defaultdict(float)  # node id -> its phases' seconds so far
        self.family_spent: dict[str, list[float]] = {}  # family -> [seconds, tests finished]
        self.measured: dict[str, float] = {}  # node id -> seconds, of the tests finished
        # node id -> its scope, as the project's xdist scheduler deals them (then heaviest first
        # when recorded); None: dealt one by one in collection order
        self.scopes: Mapping[str, str] | None = None

    def collected(self, groups: Iterable[str] | Mapping[str, str]) -> None:
        """The group of each item this process collected (its suite, or :func:`outside`), by
        node id in collection order when given so (the time left then weighs each test)."""
        if isinstance(groups, Mapping):
            self.waiting.update(groups)
            groups = groups.values()
        self.sizes.update(groups)

    def collected_ids(self, nodeids: Iterable[str]) -> None:
        """An xdist worker's collected node ids: every worker collects the same, so once."""
        if self.sizes:
            return
        self.collected({nodeid: self._declared(nodeid.split("::", 1)[0]) or outside(nodeid) for nodeid in nodeids})

    def _declared(self, module: str) -> str | None:
        if module not in self._suite_of:
            names: set[str] = set()
            for base in self._bases_for(module):
                try:
                    names = set(_DECLARED.findall((base / module).read_text()))
                except (OSError, UnicodeDecodeError):
                    continue
                break
            self._suite_of[module] = names.pop() if len(names) == 1 else None
        return self._suite_of[module]

    def _bases_for(self, module: str) -> list[Path]:
        if self._elsewhere is not None and not (self.rootdir / module).exists():
            self.bases += [base for base in self._elsewhere() if base not in self.bases]
            self._elsewhere = None
        return self.bases

    def started(self, nodeid: str, at: float) -> None:
        """``nodeid`` started ``at`` seconds into the run (xdist tells the controller too)."""
        self.running[nodeid] = (at, self.waiting.pop(nodeid, None))
        self.workers = max(self.workers, len(self.running))

    def spend(self, group: str, seconds: float, nodeid: str | None = None) -> None:
        """A phase of one of ``group``'s tests (``nodeid``) took ``seconds``."""
        self.spent[group] += seconds
        if nodeid is not None:
            self.test_spent[nodeid] += seconds

    def finished(self, group: str, nodeid: str | None = None) -> None:
        self.done[group] += 1
        if not group.startswith(_OUTSIDE):
            self.moved[group] = None
        if nodeid is not None:
            self.waiting.pop(nodeid, None)
            self.running.pop(nodeid, None)
            self.measured[nodeid] = seconds = self.test_spent.pop(nodeid, 0.0)
            sums = self.family_spent.setdefault(family(nodeid), [0.0, 0])
            sums[0] += seconds
            sums[1] += 1

    def expected(self, nodeid: str, group: str | None, pace: float = 1.0) -> float | None:
        """The seconds ``nodeid`` is expected to take: recorded (times this run's ``pace``), else
        its family's mean, else its group's (see the module's docstring); None when none is known."""
        if nodeid in self.recorded:
            return self.recorded[nodeid] * pace
        seconds, count = self.family_spent.get(family(nodeid), (0.0, 0))
        if count:
            return seconds / count
        if group is not None and self.done[group] and self.spent.get(group, 0.0) > 0:
            return self.spent[group] / self.done[group]
        return None

    def pace(self) -> float:
        """This run's seconds per recorded second, once :data:`PACE_AFTER` recorded tests
        finished (1 before): a machine twice as slow as the recording's doubles every estimate.
        Asked for only when a line is written, so a short run never reads a shipped file."""
        here = recorded = 0.0
        count = 0
        for nodeid, seconds in self.measured.items():
            if (then := self.recorded.get(nodeid)) is not None:
                here, recorded, count = here + seconds, recorded + then, count + 1
        return here / recorded if count >= PACE_AFTER and here > 0 and recorded > 0 else 1.0

    def _mean(self) -> float | None:
        """What a test nothing else is known of is expected to take: the run's mean so far, else
        the median recorded (as the shard planner weighs one), else None."""
        done, spent = sum(self.done.values()), sum(self.spent.values())
        if done and spent > 0:
            return spent / done
        return statistics.median(self.recorded.values()) if self.recorded else None

    @staticmethod
    def _or(seconds: float | None, mean: float) -> float:
        return mean if seconds is None else seconds

    def left(self, elapsed: float) -> float:
        """Seconds the run still needs: what is running and what waits, weighed by measured
        durations, laid onto the workers. By each group's pace (or the count done) when no test
        was followed by node id or nothing has been measured yet."""
        total, done = sum(self.sizes.values()), sum(self.done.values())
        if (self.waiting or self.running) and (mean := self._mean()) is not None:
            pace = self.pace()
            scopes = self.scopes or {}
            running: list[float] = []
            worker_of: dict[str, int] = {}  # a scope with a test running -> the worker it runs on
            for nodeid, (since, group) in self.running.items():
                expected = self._or(self.expected(nodeid, group, pace), mean)
                ran = elapsed - since
                if (scope := scopes.get(nodeid)) is not None:
                    worker_of[scope] = len(running)
                running.append(expected - ran if ran < expected else ran * OVERRUN_SHARE)
            # a scope's tests run one after another on one worker (a cluster's rows): one unit
            queued: dict[str, float] = {}
            for nodeid, group in self.waiting.items():
                seconds = self._or(self.expected(nodeid, group, pace), mean)
                scope = scopes.get(nodeid)
                if scope is not None and scope in worker_of:
                    running[worker_of[scope]] += seconds
                else:
                    unit = nodeid if scope is None else scope
                    queued[unit] = queued.get(unit, 0.0) + seconds
            units = list(queued.values())
            if self.scopes is not None and self.recorded:
                units.sort(reverse=True)  # the scheduler deals by recorded weight, heaviest first
            return time_left(running, units, self.workers)
        spent = sum(self.spent.values())
        if spent <= 0 or not done:
            return elapsed * (total - done) / max(done, 1)
        mean = spent / done
        by_suite = {suite: self.spent.get(suite, 0.0) / count for suite, count in self.done.items() if count}
        work_left = sum(
            max(0, size - self.done[suite]) * by_suite.get(suite, mean) for suite, size in self.sizes.items()
        )
        return work_left * elapsed / spent

    def line(self, elapsed: float) -> str:
        """The suites that moved since the last line, and the whole run's count and time left."""
        moved = ", ".join(f"{s} {self.done[s]:,}/{self._total_of(s)}" for s in self.moved)
        self.moved.clear()
        total, done = sum(self.sizes.values()), sum(self.done.values())
        line = f"prism-testkit progress after {elapsed:.0f}s" + (f": {moved}" if moved else "")
        if total:
            others = [group for group in self.sizes if group.startswith(_OUTSIDE)]
            other_total = sum(self.sizes[group] for group in others)
            other_done = sum(self.done[group] for group in others)
            line += f" (all suites {done - other_done:,}/{total - other_total:,}"
            if other_total:
                line += f", other tests {other_done:,}/{other_total:,}"
            if done >= total / 10 and done < total:  # an estimate only once a tenth ran
                line += f", about {_minutes(self.left(elapsed))} left"
            line += ")"
        return line

    def _total_of(self, suite: str) -> str:
        return f"{self.sizes[suite]:,}" if self.sizes.get(suite) else "?"


def named_dirs(args: Iterable[str], invoked_in: Path, pyargs: bool) -> list[Path]:
    """The directories a command line's arguments name (a file's: its own); with ``--pyargs``
    a package's, found as pytest finds it (its parent packages are imported)."""
    found = []
    for arg in args:
        target = arg.split("::", 1)[0]
        path = invoked_in / target
        if path.exists():
            found.append(path if path.is_dir() else path.parent)
        elif pyargs:
            try:
                spec = importlib.util.find_spec(target)
            except (ImportError, ValueError):
                continue
            if spec is not None:
                found += [Path(p) for p in spec.submodule_search_locations or []]
                found += [Path(spec.origin).parent] if spec.origin and not spec.submodule_search_locations else []
    return found


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f}s"


def interval(configured: str | None, at_a_terminal: bool) -> float:
    """Seconds between two lines: ``PRISM_PROGRESS_EVERY``, else by where the output goes."""
    if configured:
        return float(configured)
    return EVERY_AT_A_TERMINAL if at_a_terminal else EVERY_ELSEWHERE
