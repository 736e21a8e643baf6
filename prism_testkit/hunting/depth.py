"""How many examples a stateful suite's row draws: ``--prism-depth``.

A stateful row (one stateful test over one combination) draws :data:`DEFAULT` examples unless
the run asks otherwise, a number or a named level (:data:`LEVELS`). The default is to be the
smallest depth that catches as many seeded bugs as twelve examples do, give or take one, read
from a kill-rate curve (``benchmarks/depth_curve.py``, ``benchmarks/RESULTS.md``); until that
curve is measured with enough seeds and bugs to move it, it stays at 12.

A backend whose examples cost seconds (a cluster) declares ``stateful_examples``: its rows'
count at the default depth. Another depth scales it in proportion, never below one example.

A hunt (``--prism-hunt``) draws rounds until its time budget is spent: depth does not apply.
This module is read by the options: it imports nothing but the standard library.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prism_testkit.errors import PrismError, RepeatedField

if TYPE_CHECKING:
    import pytest

# Examples per single-node stateful row when the run does not say (see the module's docstring).
DEFAULT = 12
QUICK, DEEP = "quick", "deep"
# Named levels: what each means is in its name and in --help.
LEVELS = {
    QUICK: 1,  # every stateful row runs once: a smoke test of the suites, not a search
    "default": DEFAULT,
    DEEP: 48,  # four times the depth the main job ran at before the curve (12)
}
MAX_DEPTH = 100_000  # beyond this a run never ends; a long search is a hunt (--prism-hunt)
HUNT_HINT = "--prism-hunt=30m"  # what the summary suggests for a search by time instead of count


class BadDepth(PrismError, ValueError):
    """``--prism-depth`` was given something that is not a depth."""


class RepeatedDepth(BadDepth, RepeatedField):
    """``--prism-depth`` was given two depths (``quick,deep``): one of them would be dropped unread."""


OPTION = "--prism-depth"
FIELD = "depth"  # the option's one field: a number or one of LEVELS
_SEPARATED = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Depth:
    """The depth a run asked for: examples per single-node stateful row."""

    examples: int
    name: str | None = None  # the level's name, when it was given by name
    given: bool = False  # asked for (option or ini), not the default

    def label(self) -> str:
        """What the header and the report call it: ``12 (default)``, ``48 (deep)``, ``5``."""
        if self.name is not None:
            return f"{self.examples} ({self.name})"
        return str(self.examples) if self.given else f"{self.examples} (default)"

    def source(self) -> str:
        """Where it came from: ``the default``, ``--prism-depth=deep``, ``--prism-depth=5``."""
        if not self.given:
            return "the default"
        return f"--prism-depth={self.name or self.examples}"

    def for_row(self, cap: int | None) -> int:
        """The examples of a row whose backends' smallest ``stateful_examples`` is ``cap``
        (None: no cap): ``cap`` at the default depth, scaled in proportion at another, at least 1."""
        if cap is None:
            return self.examples
        return max(1, math.ceil(cap * self.examples / DEFAULT))


def parse(text: str | None) -> Depth:
    """The depth ``text`` names (None: the default). :class:`BadDepth` when it names none."""
    if text is None:
        return Depth(DEFAULT)
    given = text.strip().lower()
    if not given:
        raise BadDepth("--prism-depth is empty: give a number of examples per stateful row, or quick, default or deep")
    if len(parts := [part for part in _SEPARATED.split(given) if part]) > 1:
        shown = text[:40] if text.isprintable() else "(not printable)"
        raise RepeatedDepth(OPTION, FIELD, f"{OPTION} takes one depth, not {len(parts)}: {shown!r}")
    if given in LEVELS:
        return Depth(LEVELS[given], name=given, given=True)
    if re.fullmatch(r"[0-9]{1,7}", given) and 1 <= int(given) <= MAX_DEPTH:
        return Depth(int(given), given=True)
    shown = text[:40] if text.isprintable() else "(not printable)"
    levels = ", ".join(f"{name} ({count})" for name, count in LEVELS.items())
    raise BadDepth(
        f"--prism-depth must be a number of examples per stateful row from 1 to {MAX_DEPTH} or one of {levels}, "
        f"not {shown!r}"
    )


def of(config: pytest.Config) -> Depth:
    """The depth of this run (``--prism-depth``, else its ini twin, else the default)."""
    given = config.getoption("prism_depth", None)
    if given is None:
        given = config.getini("prism_depth") or None
    return parse(given)


def deeper_command(depth: Depth) -> str:
    """The options that search deeper than ``depth``: the next level up, or a hunt."""
    if depth.examples < LEVELS[DEEP]:
        return f"--prism-depth={DEEP}"
    return HUNT_HINT
