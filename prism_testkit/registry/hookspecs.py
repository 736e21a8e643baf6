"""Hook specifications of prism-testkit's own plugin manager: backends and patterns.

Plugins are modules (or objects) registered under the entry-point group
:data:`ENTRY_POINT_GROUP`; the built-in backends use the same group, so a third-party
backend package needs no change to our code. Implementations are marked with
:data:`prism_testkit.hookimpl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from prism_testkit.registry.backend_spec import BackendSpec
    from prism_testkit.registry.pattern_spec import PatternSpec

PROJECT = "prism_testkit"
ENTRY_POINT_GROUP = "prism_testkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def prism_register_backends() -> Sequence[BackendSpec]:
    """Return the backends this plugin provides.

    Each :class:`~prism_testkit.registry.backends.BackendSpec` names the backend, the capabilities it
    declares, the properties of the instance it provisions, its provisioner and its driver
    class. Names must be unique across all plugins; a bad registration stops the run at
    start-up with a message naming this plugin.
    """


@hookspec
def prism_register_patterns() -> Sequence[PatternSpec]:
    """Return the patterns this plugin provides.

    Each :class:`~prism_testkit.registry.patterns.PatternSpec` names the pattern, its slots,
    client APIs, compositions and conflicts, its own config model and the suites that prove
    it. Names must be unique across all plugins; a bad registration stops the run at start-up
    with a message naming this plugin.
    """
