"""An xdist controller's workers on this machine, made known to the run's signal handling so
that a signal stopping the controller stops them in order too (see
:mod:`prism_testkit.runtime.interrupts`)."""

from __future__ import annotations

import os
from typing import Any

from prism_testkit.plugin.harness import HARNESS
from prism_testkit.provision.process_identity import ProcessStamp, parent_of, stamp


def follow(node: Any) -> None:
    """xdist: worker ``node`` is ready (its own signal handling is installed by now)."""
    found = node.config.stash.get(HARNESS, None)
    process = worker_process(node)
    if found is not None and process is not None:
        found.runtime.interrupts.pass_on_to(node.gateway.id, process)


def forget(node: Any) -> None:
    found = node.config.stash.get(HARNESS, None)
    if found is not None:
        found.runtime.interrupts.forget(node.gateway.id)


def worker_process(node: Any) -> ProcessStamp | None:
    """The process of worker ``node`` when it is a child of this one (xdist's popen workers),
    else None: a worker on another host has a pid that names a stranger here."""
    gateway = node.gateway
    if not getattr(gateway.spec, "popen", False) or getattr(gateway.spec, "via", None):
        return None
    try:
        # execnet's info about the remote side, which xdist reads (and keeps) as it sets a worker up.
        pid = gateway._rinfo().pid
    except Exception:  # an execnet without it: the worker is stopped as xdist stops it
        return None
    process = stamp(pid) if isinstance(pid, int) else None
    return process if process is not None and parent_of(pid) == os.getpid() else None
