"""Mutant: the NATS driver's client does not reconnect when its connection closes, so a client
whose node died (killed, restarted) fails every later operation with "connection closed"
instead of moving to another node of its cluster.

Loaded with ``-p tests.mutants.nats_client_does_not_reconnect``. The one line of
``NatsDriver.connect`` that allows reconnects is rewritten in the method's own source.
"""

from __future__ import annotations

import inspect
import textwrap

from prism_testkit.backends.nats import driver

RECONNECTS = "allow_reconnect=True,"
BROKEN = "allow_reconnect=False,  # the bug: a closed connection stays closed"

source = textwrap.dedent(inspect.getsource(driver.NatsDriver.connect))
assert source.count(RECONNECTS) == 1, f"NatsDriver.connect no longer has the line {RECONNECTS!r}"
scope: dict[str, object] = {}
flags = annotations.compiler_flag  # the source is compiled as the module's is
exec(
    compile(source.replace(RECONNECTS, BROKEN), driver.__file__, "exec", flags, dont_inherit=True), vars(driver), scope
)
driver.NatsDriver.connect = scope["connect"]
