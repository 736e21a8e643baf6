"""Load mode over a run (``--prism-load``): its seed resolved once and handed to every xdist
worker, the burners started by the controller, the jitter thread in each process that starts
servers, and the header and summary lines. The load itself is :mod:`prism_testkit.faults.load`."""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.options import PrismOptions
from prism_testkit.plugin.harness import harness

if TYPE_CHECKING:
    from prism_testkit.faults.burners import Burners
    from prism_testkit.faults.jitter import Jitter

LOAD_SEED = "prism_load_seed"  # the run's load seed, in each xdist worker's workerinput
BURNERS: pytest.StashKey[Burners] = pytest.StashKey()
JITTER: pytest.StashKey[Jitter] = pytest.StashKey()
JITTER_STATS = pytest.StashKey[list[dict[str, Any]]]()  # the workers' jitter stats, on the controller


def resolve_load(config: pytest.Config, options: PrismOptions) -> None:
    """The run's load, seeded: ``--prism-load``, else a replayed schedule's. A worker takes the
    controller's seed, so every process of the run derives its stalls from one seed."""
    spec = options.load
    if spec is None and options.replay is not None:
        from prism_testkit.hunting.schedule import REPLAY

        recorded = config.stash[REPLAY][0].load
        if recorded:
            from prism_testkit.faults.load import LoadSpecError, parse

            try:
                spec = parse(recorded)
            except LoadSpecError as exc:
                raise pytest.UsageError(f"--prism-replay: the schedule's load: {exc}") from None
    if spec is None:
        return
    from dataclasses import replace

    from prism_testkit.faults.load import ACTIVE, ActiveLoad

    worker_input = getattr(config, "workerinput", None)
    worker = str(worker_input["workerid"]) if worker_input else None
    if worker_input and worker_input.get(LOAD_SEED) is not None:
        spec = replace(spec, seed=int(worker_input[LOAD_SEED]))
    config.stash[ACTIVE] = ActiveLoad(spec.seeded(), worker)


def start_burners(config: pytest.Config) -> None:
    """Once per run, by the controller (or the one process): the burners the load asks for."""
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.burns or hasattr(config, "workerinput"):
        return
    from prism_testkit.faults.burners import Burners

    runtime = harness(config).runtime
    burners = config.stash[BURNERS] = Burners.start(active.spec, runtime.workdir / "load")
    atexit.register(burners.stop)  # registered after runtime.close: runs before it removes their dir


def seed_worker(node: Any) -> None:
    """xdist: each worker draws its stalls from the controller's seed."""
    from prism_testkit.faults.load import ACTIVE

    active = node.config.stash.get(ACTIVE, None)
    if active is not None:
        node.workerinput[LOAD_SEED] = active.spec.seed


def keep_worker_stats(node: Any) -> None:
    """xdist: a worker's jitter stats, for the summary."""
    stats = getattr(node, "workeroutput", {}).get("prism_load")
    if isinstance(stats, dict):
        node.config.stash.setdefault(JITTER_STATS, []).append(stats)


def start_jitter(session: pytest.Session) -> None:
    """In each process that starts servers (not an xdist controller): the jitter thread."""
    from prism_testkit.faults.load import ACTIVE

    config = session.config
    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.stalls or config.pluginmanager.has_plugin("dsession"):
        return
    from prism_testkit import patience
    from prism_testkit.faults.jitter import Jitter

    patience.account_for_stalls(active.spec.stall_max, active.spec.stall_every)
    config.stash[JITTER] = Jitter(active.jitter_seed, active.spec.stall_max, active.spec.stall_every).start()


def stop_jitter(config: pytest.Config) -> None:
    jitter = config.stash.get(JITTER, None)
    if jitter is None:
        return
    jitter.stop()
    from prism_testkit import patience

    patience.account_for_stalls(0.0, 0.0)
    worker_output = getattr(config, "workeroutput", None)
    if worker_output is not None:
        worker_output["prism_load"] = jitter.stats.as_dict()


def stop_load(config: pytest.Config) -> None:
    """Every exit path: the jitter ends (nothing left stopped), the burners are killed."""
    stop_jitter(config)
    burners = config.stash.get(BURNERS, None)
    if burners is not None:
        atexit.unregister(burners.stop)
        burners.stop()


def load_header(config: pytest.Config) -> list[str]:
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None:
        return []
    burners = config.stash.get(BURNERS, None)
    tool = burners.tool if burners is not None else "no burners"
    return [f"prism load: {active.spec.describe()} ({tool})"]


def load_summary(config: pytest.Config) -> str | None:
    from prism_testkit.faults.load import ACTIVE

    active = config.stash.get(ACTIVE, None)
    if active is None or not active.spec.stalls:
        return None
    from prism_testkit.faults.jitter import summary

    stats: list[dict[str, Any]] = [*config.stash.get(JITTER_STATS, [])]
    jitter = config.stash.get(JITTER, None)
    if jitter is not None:
        stats.append(jitter.stats.as_dict())
    if stats:
        return summary(stats)
    # xdist workers report their jitter as they finish: an interrupted run never hears from them
    return "prism load: no jitter statistics came back (none ran, or the run ended before its workers reported)"
