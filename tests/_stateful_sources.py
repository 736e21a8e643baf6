"""Sources the stateful-runner tests write into their sandboxes: a third party's memstore
that declares an example cap, and a stateful suite whose machine records the ``max_examples``
of every search the runner makes (``ASKED``)."""

from __future__ import annotations

SLOW_MEMSTORE = """
import dataclasses

from prism_testkit.backends import memstore
from prism_testkit.registry.hookspecs import hookimpl


@hookimpl
def prism_register_backends():
    spec = next(s for s in memstore.prism_register_backends() if s.name == "memstore")
    return [dataclasses.replace(spec, name="slowstore", stateful_examples=3, embedded=False)]
"""

# Imports, then ``pytestmark`` and ``ASKED = []`` in the suite's own text, then this.
RECORDING_MACHINE = """
real = runner.run_state_machine_as_test


def recording(machine, settings):
    ASKED.append(settings.max_examples)
    return real(machine, settings=settings)


runner.run_state_machine_as_test = recording


class Puts(FaultMachine):
    def __init__(self, run):
        super().__init__(run, ["backend"])

    @rule()
    def put(self):
        key = self.ns.name("k")
        done = self.attempt("w", "put", lambda: self.client("backend").keyvalue().put(key, b"v"), key=key, value=b"v")
        if done.completed:
            done.handle.ok()

    def check(self):
        return [], "puts"

"""
