"""Mutant: every nats registration claims ``fsyncs_before_ack``, the lazy-sync ones too, whose
JetStream syncs on its two-minute interval (the window Jepsen's #7564 lost ~14 % of
acknowledged writes in).

Loaded with ``-p tests.mutants.nats_claims_fsync_before_ack``: the power-loss suite's
established-data test must fail with the writes the cut took, never tolerate them.
"""

from __future__ import annotations

import dataclasses

from prism_testkit.backends import nats
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

_register = nats.prism_register_backends


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    claims = {"durable": True, "fsyncs_before_ack": True}
    return [dataclasses.replace(s, properties=s.properties.model_copy(update=claims)) for s in _register()]


nats.prism_register_backends = prism_register_backends
