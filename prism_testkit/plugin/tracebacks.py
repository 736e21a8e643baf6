"""Interrupt tracebacks pytest can print, and print fast. Imported with the plugin, never on
demand: an interrupt may arrive in the middle of an import, and importing again then fails."""

from __future__ import annotations

import pytest

from prism_testkit.errors import chained


def drop_unnumbered_frames(error: BaseException) -> None:
    """Unlink the traceback entries of ``error`` (and the exceptions it chains) that have no line
    number. A signal handled at an instruction without one (Python 3.11 has them in generators and
    ``finally`` blocks) leaves such an entry, and pytest's report of the interrupt then fails on
    it with a TypeError: a crash, exit 1, where the user pressed Ctrl-C."""
    for current in chained(error):
        entry = current.__traceback__
        while entry is not None and entry.tb_next is not None:
            if entry.tb_next.tb_lineno is None:
                entry.tb_next = entry.tb_next.tb_next
            else:
                entry = entry.tb_next


def keep_only_where_it_struck(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Cut an interrupt's traceback to the entry pytest prints without ``--full-trace``. pytest
    formats every entry of it and of the exceptions it chains before printing that one line,
    parsing each entry's source file: half a second at idle and seconds on a loaded machine,
    between the Ctrl-C and the exit."""
    drop_unnumbered_frames(excinfo.value)
    entries = excinfo.traceback
    shown = next((i for i in range(len(entries) - 1, -1, -1) if not entries[i].ishidden(excinfo)), 0)
    excinfo.traceback = entries[shown:]
    excinfo.value.__cause__ = None
    excinfo.value.__suppress_context__ = True
