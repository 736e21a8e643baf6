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

The time left weighs what is left of each group by the seconds its tests took so far (a
stateful test on a cluster takes a hundred times a contract test's): the work left over the
rate at which the run got through work, all workers together. A group not started yet counts
at the run's mean.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

EVERY_AT_A_TERMINAL = 30.0
EVERY_ELSEWHERE = 60.0
_DECLARED = re.compile(r"""prism_suite\(\s*["']([\w.-]+)["']""")
_OUTSIDE = "::outside::"  # prefix of a group of tests outside any suite (a module path follows)


def outside(nodeid: str) -> str:
    """The group of a test that belongs to no suite: its module."""
    return _OUTSIDE + nodeid.split("::", 1)[0]


class Progress:
    def __init__(self, rootdir: Path, elsewhere: Callable[[], Iterable[Path]] = tuple) -> None:
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

    def collected(self, groups: Iterable[str]) -> None:
        """The group of each item this process collected: its suite, or :func:`outside`."""
        self.sizes.update(groups)

    def collected_ids(self, nodeids: Iterable[str]) -> None:
        """An xdist worker's collected node ids: every worker collects the same, so once."""
        if self.sizes:
            return
        self.sizes.update(self._declared(nodeid.split("::", 1)[0]) or outside(nodeid) for nodeid in nodeids)

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

    def spend(self, group: str, seconds: float) -> None:
        """A phase of one of ``group``'s tests took ``seconds``."""
        self.spent[group] += seconds

    def finished(self, group: str) -> None:
        self.done[group] += 1
        if not group.startswith(_OUTSIDE):
            self.moved[group] = None

    def left(self, elapsed: float) -> float:
        """Seconds the run still needs, at the pace it kept so far."""
        total, done = sum(self.sizes.values()), sum(self.done.values())
        spent = sum(self.spent.values())
        if spent <= 0:
            return elapsed * (total - done) / done
        mean = spent / done
        pace = {suite: self.spent.get(suite, 0.0) / count for suite, count in self.done.items() if count}
        work_left = sum(max(0, size - self.done[suite]) * pace.get(suite, mean) for suite, size in self.sizes.items())
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
