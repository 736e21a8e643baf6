"""Mutant: the ``redis`` registration's private server saves an RDB snapshot only at an orderly
shutdown (and on a timer of an hour, never reached in a test), with no AOF, yet declares
``durable=True``: a server that acknowledges a write from memory and saves it later, as the
broker of issue 53 did (Mosquitto, persistence on, ``autosave_interval 1``).

An orderly restart keeps every write (Redis saves on SIGTERM); a SIGKILL right after an
acknowledgement, the restart suite's rounds, must lose the round's writes in every round. The
timer is longer than any run, so no snapshot can fall between an acknowledgement and its kill:
the loss is certain, not likely. (With ``--save 1 1``, the broker's one-second timer, 2 runs
also lost 10 of 10 rounds: a snapshot would have to fork and finish between the answer and the
SIGKILL of the server's process group, which kills a forked saver too.)

Loaded with ``-p tests.mutants.redis_acks_before_saving``.
"""

from __future__ import annotations

import dataclasses

from prism_testkit.backends import redis
from prism_testkit.backends.redis.provision import RedisProvisioner
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

# "--save 3600 1": a snapshot an hour after a change, and one at shutdown (SIGTERM)
SAVE_LATER_FLAGS = ("--save", "3600", "1", "--appendonly", "no")
_register = redis.prism_register_backends


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        dataclasses.replace(
            s,
            properties=s.properties.model_copy(update={"durable": True}),
            provisioner=RedisProvisioner(SAVE_LATER_FLAGS, durable=True),
        )
        if s.name == "redis"
        else s
        for s in _register()
    ]


redis.prism_register_backends = prism_register_backends
