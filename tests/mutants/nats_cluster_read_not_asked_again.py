"""Mutant: a cluster's JetStream read left unanswered is not asked again: it waits out its
whole timeout once, so a read issued while a stream has no leader (which drops it unanswered)
ends as an unknown outcome although a new leader answers a moment later.

Loaded with ``-p tests.mutants.nats_cluster_read_not_asked_again``. The one line of
``NatsDriver.api`` that sets how often a read is asked is rewritten in the method's own source.
"""

from __future__ import annotations

import inspect
import textwrap

from prism_testkit.backends.nats import driver

ASKS = "each = retry_read_every if read else API_TIMEOUT if repeatable else overall"
BROKEN = "each = overall if read else API_TIMEOUT if repeatable else overall  # the bug: a read is asked once"

source = textwrap.dedent(inspect.getsource(driver.NatsDriver.api))
assert source.count(ASKS) == 1, f"NatsDriver.api no longer has the line {ASKS!r}"
scope: dict[str, object] = {}
flags = annotations.compiler_flag  # the source is compiled as the module's is
exec(compile(source.replace(ASKS, BROKEN), driver.__file__, "exec", flags, dont_inherit=True), vars(driver), scope)
driver.NatsDriver.api = scope["api"]
