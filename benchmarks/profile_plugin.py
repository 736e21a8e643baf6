"""The pytest side of :mod:`benchmarks.run_profile`: loaded with ``-p benchmarks.profile_plugin``
(xdist passes it on to its workers), it writes one JSON line per test and one per server start
into ``$RUN_PROFILE_DIR/<worker>.jsonl``, from the process that ran them.

It counts what the report does not carry: the examples each stateful test judged (wrapping
:meth:`StatefulRun.judge`) and every server process spawned (wrapping
:meth:`ServerProcess.spawn`, restarts included), and each test's CPU in the worker's own
process (its threads included; the servers it drives are not) and of the processes it started
and reaped (a pytester run), which, unlike the test's wall time, a machine shared with other
runs does not inflate. Measurement code, so patching is fine here;
nothing under ``prism_testkit`` knows about it.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

_examples: Counter[str] = Counter()
_current_test: list[str] = [""]  # the test running now, which a server start is charged to
_outcomes: dict[str, str] = {}  # per test run here: failed if any phase failed, else skipped or passed


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write(record: dict[str, Any]) -> None:
    folder = os.environ.get("RUN_PROFILE_DIR")
    if folder:
        with open(Path(folder) / f"{_worker()}.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def _counting_judge(judge: Callable[..., Any]) -> Callable[..., Any]:
    def judge_and_count(self: Any, *args: Any, **kwargs: Any) -> Any:
        _examples[self.nodeid] += 1
        return judge(self, *args, **kwargs)

    return judge_and_count


def _recording_spawn(spawn: Callable[..., Any], module_file: str) -> Callable[..., Any]:
    def spawn_and_record(self: Any) -> Any:
        was_alive = self.alive
        result = spawn(self)
        if not was_alive:
            record = {"kind": "server_start", "name": self.name, "at": time.time(), "worker": _worker()}
            _write({**record, "test": _current_test[0]})
        return result

    # The server's log names the first caller outside processes.py (tests read it): the
    # wrapper must not be that caller, so its frames claim that file.
    spawn_and_record.__code__ = spawn_and_record.__code__.replace(co_filename=module_file)
    return spawn_and_record


def pytest_configure(config: pytest.Config) -> None:
    from prism_testkit.provision import processes
    from prism_testkit.stateful.runner import StatefulRun

    StatefulRun.judge = _counting_judge(StatefulRun.judge)  # type: ignore[method-assign]
    server = processes.ServerProcess
    server.spawn = _recording_spawn(server.spawn, processes.__file__)  # type: ignore[method-assign]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and _outcomes.get(report.nodeid) != "failed":
        _outcomes[report.nodeid] = "skipped"
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    started, cpu_started, children_started = time.time(), time.process_time(), _children_cpu()
    _current_test[0] = item.nodeid
    try:
        return (yield)
    finally:
        prism = next(
            (value for key, value in item.user_properties if key == "prism" and isinstance(value, dict)),
            {},
        )
        _write(
            {
                "kind": "test",
                "nodeid": item.nodeid,
                "suite": prism.get("suite"),
                "backends": sorted(set((prism.get("combination") or {}).values())),
                "worker": _worker(),
                "start": started,
                "stop": time.time(),
                "cpu": time.process_time() - cpu_started,
                # the processes it started and reaped (a pytester run, a tool), not the servers
                # still running: what a time left bounded by the CPU left would weigh it by
                "children_cpu": _children_cpu() - children_started,
                "examples": _examples.get(item.nodeid, 0),
                "outcome": _outcomes.pop(item.nodeid, "unknown"),
            }
        )
