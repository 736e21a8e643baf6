"""Mutant: the nats registration claims ``survives_power_loss`` (and crash durability), while
JetStream 2.9 fsyncs every two minutes: the claim Jepsen's 2025 power-cut test disproved
(about 14 % of acknowledged writes lost on NATS 2.12.1 with the default ``sync_interval``).

Loaded with ``-p tests.mutants.nats_claims_power_loss_durability``; the power-loss suite must
report the acknowledged writes the cut took.
"""

from __future__ import annotations

import dataclasses

from prism_testkit.backends import nats
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

_register = nats.prism_register_backends


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    claims = {"durable": True, "survives_power_loss": True}
    return [dataclasses.replace(s, properties=s.properties.model_copy(update=claims)) for s in _register()]


nats.prism_register_backends = prism_register_backends
