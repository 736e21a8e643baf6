"""inbox: an idempotent-consumer pattern for prism-testkit, registered from its own distribution.

The registration is all this module holds; the pattern is :mod:`.inbox`, its suite
:mod:`.suites.test_inbox` (run with ``pytest --pyargs prism_inbox.suites``).
"""

from __future__ import annotations

from prism_testkit import PatternSlot, PatternSpec, Slot, hookimpl
from prism_testkit.registry.patterns import Complexity, Priority

from .inbox import InboxConfig

SUITE = "inbox"  # the name the suite module declares with prism_suite(SUITE, ...)

SPEC = PatternSpec(
    name="inbox",
    title="Idempotent consumer (inbox)",
    priority=Priority.P1,
    complexity=Complexity.LOW,
    # Slot names are the suite's: a namespace file that configures this pattern runs the suite
    # on the namespace's backends only when the suite's slots are among these.
    slots={
        "store": PatternSlot(
            Slot.needs("transactions", "keyvalue", "log"),
            ("store",),
            "where the side effect and the processed-id record commit in one transaction",
        ),
        "messaging": PatternSlot(
            Slot.needs("queue"),
            ("messaging",),
            "the queue the messages are received from (acked after the commit)",
            messaging=True,
        ),
    },
    config=InboxConfig,
    client_apis=frozenset({"queue"}),
    summary="a redelivered message is recognised by its id and applied once; effect and id commit together",
    suites=(SUITE,),
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
