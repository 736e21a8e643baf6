"""A crash right after an acknowledgement, with nothing in between.

A backend that acknowledges a write before it saves it (a broker that saves on a timer, a store
that commits after it answers) loses the write only when the crash falls between the two. A kill
at a moment of the harness's own (after a whole workload, after the client said goodbye) finds
the write saved by luck. Here the crash follows the acknowledgement at once:

* a server the harness started: the suite's next statement after the acknowledgement is the
  SIGKILL (no await, no goodbye from its client) — see the restart and power-loss suites;
* an embedded backend, whose store is code of the process that writes: the writes run in a child
  process (:class:`EmbeddedWriter`, this module's ``main``), which after its last acknowledgement
  blocks reading its pipe *without turning its event loop*, so nothing the driver left for later
  (a task, a callback, a timer) runs before the SIGKILL reaches it.

The child imports the driver class by its module path and the ``-p`` plugins of the pytest run
(a plugin that changes a driver, such as a seeded mutant, changes the child's too). It reaches the
store through the same endpoint (its URL and options) as the test process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prism_testkit.driver import Driver
from prism_testkit.errors import NotSupported
from prism_testkit.interfaces import Message
from prism_testkit.patience import Unsettled, bound
from prism_testkit.provision.base import Endpoint
from prism_testkit.registry.backends import BackendSpec

ACK = "ack"
FAILED = "failed"


@dataclass(frozen=True)
class Write:
    """One write a backend must acknowledge: ``interface`` names what it goes through,
    ``target`` the key, queue, log or bucket, ``key`` an object's key in its bucket."""

    interface: str  # keyvalue, queue, log or objects
    target: str
    payload: bytes
    key: str = ""

    def describe(self) -> str:
        kind = {"keyvalue": "key", "queue": "message to queue", "log": "record of log", "objects": "object"}
        where = f"{self.target}/{self.key}" if self.interface == "objects" else self.target
        return f"{kind.get(self.interface, self.interface)} {where} ({self.payload.decode(errors='replace')})"

    def as_json(self) -> str:
        return json.dumps(
            {"interface": self.interface, "target": self.target, "key": self.key, "payload": self.payload.hex()}
        )

    @classmethod
    def from_json(cls, line: str) -> Write:
        data = json.loads(line)
        return cls(data["interface"], data["target"], bytes.fromhex(data["payload"]), data["key"])


async def perform(driver: Driver, write: Write) -> int | None:
    """Make ``write`` through ``driver``; returns the offset a log append was given (else None).
    It returns once the backend acknowledged the write."""
    if write.interface == "keyvalue":
        await driver.keyvalue().put(write.target, write.payload)
    elif write.interface == "queue":
        await driver.queue().send(write.target, Message(write.payload))
    elif write.interface == "log":
        offset = await driver.log().append(write.target, Message(write.payload))
        return int(offset)
    elif write.interface == "objects":
        await driver.objects().put(write.target, write.key, write.payload)
    else:
        raise ValueError(f"no write through {write.interface!r}")
    return None


def _portable_endpoint(spec: BackendSpec, endpoint: Endpoint) -> str:
    """The endpoint's URL and options, pickled for the child (process control, a lazy mount's
    daemon and teardown stay with the test process)."""
    bare = Endpoint(endpoint.url, endpoint.via, options=dict(endpoint.options))
    try:
        return base64.b64encode(pickle.dumps(bare)).decode()
    except Exception as exc:
        raise NotSupported(
            spec.name,
            "a crash right after an acknowledgement",
            f"its endpoint's options cannot reach a child process ({exc})",
        ) from None


def run_plugins(plugins: Sequence[str]) -> list[str]:
    """The ``-p`` plugins of a pytest run that a child should import: module names, not ``no:`` ones."""
    return [p for p in plugins if p and not p.startswith("no:")]


class EmbeddedWriter:
    """Writes through an embedded backend in a child process, SIGKILLed right after the last
    write's acknowledgement (the child's event loop does not turn between the two)."""

    def __init__(self, spec: BackendSpec, endpoint: Endpoint, plugins: Sequence[str] = ()) -> None:
        self.spec = spec
        self.header = json.dumps(
            {
                "driver": f"{spec.driver_class.__module__}:{spec.driver_class.__qualname__}",
                "name": spec.name,
                "capabilities": sorted(c.value for c in spec.capabilities),
                "endpoint": _portable_endpoint(spec, endpoint),
                "plugins": run_plugins(plugins),
            }
        )

    async def write_then_crash(self, writes: Sequence[Write]) -> list[int | None]:
        """Each write's result (a log's offset), every one acknowledged; the child is dead when
        this returns. A write the child could not make fails the call with the child's error."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        results: list[int | None] = []
        try:
            child.stdin.write(
                "\n".join([self.header, str(len(writes)), *(w.as_json() for w in writes)]).encode() + b"\n"
            )
            await child.stdin.drain()
            while len(results) < len(writes):
                waited = bound("calm-op")
                try:
                    line = (await asyncio.wait_for(child.stdout.readline(), waited)).decode()
                except TimeoutError:
                    raise Unsettled(
                        f"{self.spec.name}'s writer process to acknowledge write {len(results) + 1} of {len(writes)}",
                        waited,
                        "calm-op",
                    ) from None
                verdict, _, rest = line.strip().partition(" ")
                if verdict == ACK:
                    results.append(json.loads(rest))
                    continue
                # a failed write, or the child died before it answered
                raise RuntimeError(
                    f"{self.spec.name}'s writer process could not make write {len(results) + 1} of {len(writes)}: "
                    + (rest if verdict == FAILED else f"it ended ({await _tail(child)})")
                )
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()  # at once after the last acknowledgement: the child is blocked on its pipe
            await child.communicate()
        return results


async def _tail(child: asyncio.subprocess.Process) -> str:
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    _, err = await child.communicate()
    return err.decode(errors="replace")[-1500:] or f"exit status {child.returncode}"


async def _child() -> None:
    header = json.loads(sys.stdin.readline())
    for plugin in header["plugins"]:
        with contextlib.suppress(ModuleNotFoundError):  # a plugin named by entry point, not a module
            importlib.import_module(plugin)
    module, _, qualname = header["driver"].partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    from prism_testkit.capabilities import parse_capabilities

    endpoint = pickle.loads(base64.b64decode(header["endpoint"]))
    driver = await found.connect(header["name"], parse_capabilities(header["capabilities"]), endpoint)
    writes = [Write.from_json(sys.stdin.readline()) for _ in range(int(sys.stdin.readline()))]
    for write in writes:
        try:
            result = await perform(driver, write)
        except Exception as exc:
            print(FAILED, json.dumps(f"{type(exc).__name__}: {exc}"[:500]), flush=True)
            raise
        print(ACK, json.dumps(result), flush=True)
    # Acknowledged: block here without turning the loop until the SIGKILL. Nothing the driver
    # scheduled for after its answer runs (the point of the crash).
    sys.stdin.readline()


def main() -> None:
    asyncio.run(_child())


if __name__ == "__main__":
    main()
