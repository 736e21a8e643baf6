"""Mutant: a cluster's key-value read is a direct get (``allow_direct``), which every replica of
the stream answers, a follower that has not applied the last write too, instead of the stream
leader through the API.

Loaded with ``-p tests.mutants.nats_cluster_reads_direct_from_followers``. The one line of
``NatsDriver.last_msg_direct`` that sends a cluster's read to the leader is rewritten in the
method's own source.
"""

from __future__ import annotations

import inspect
import textwrap

from prism_testkit.backends.nats import driver

TO_THE_LEADER = "if self.replicas > 1:"
BROKEN = "if False:  # the bug: any replica answers"

source = textwrap.dedent(inspect.getsource(driver.NatsDriver.last_msg_direct))
assert source.count(TO_THE_LEADER) == 1, f"NatsDriver.last_msg_direct no longer has the line {TO_THE_LEADER!r}"
scope: dict[str, object] = {}
flags = annotations.compiler_flag  # the source is compiled as the module's is
exec(
    compile(source.replace(TO_THE_LEADER, BROKEN), driver.__file__, "exec", flags, dont_inherit=True),
    vars(driver),
    scope,
)
driver.NatsDriver.last_msg_direct = scope["last_msg_direct"]
