"""What a JetStream cluster of 3 and of 5 nodes costs on this machine: the time from the first
process to a settled cluster, and the resident memory of its servers, idle once ready and after
a write load on a stream replicated to every node (issue 25 asks whether 5 nodes fit here).

Sizes are interleaved over ``--trials`` rounds, alternating which goes first, so a change of
the machine's load reaches both. Rows are medians with min - max.

    python -m benchmarks.cluster_size --trials 3 --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.provision.base import Endpoint, ProvisionContext
from prism_testkit.provision.cluster import Cluster

SIZES = (3, 5)


def resident_mib(cluster: Cluster) -> float:
    """The summed VmRSS of the cluster's server processes, in MiB."""
    total_kib = 0
    for server in cluster.servers:
        status = Path(f"/proc/{server.pid}/status").read_text()
        total_kib += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total_kib / 1024


async def add_replicated_stream(stream: Any, name: str, replicas: int) -> None:
    """Stream ``name`` (subjects ``name.>``) with ``replicas`` replicas, retried for up to 30 s:
    a settled cluster's meta layer may still call a peer offline for a moment."""
    import nats.js.errors

    deadline = time.monotonic() + 30
    while True:
        try:
            await stream.add_stream(name=name, subjects=[f"{name}.>"], num_replicas=replicas)
            return
        except nats.js.errors.BadRequestError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def write_load(endpoint: Endpoint, messages: int) -> float:
    """Publish ``messages`` 1 KiB messages, each acknowledged, to a stream with one replica per
    node; returns the acknowledged messages per second."""
    import nats

    client = await nats.connect(endpoint.url.split(","))
    try:
        stream = client.jetstream()
        await add_replicated_stream(stream, "size", endpoint.options["replicas"])
        payload = b"x" * 1024
        started = time.monotonic()
        for index in range(messages):
            await stream.publish(f"size.{index % 16}", payload)
        return messages / (time.monotonic() - started)
    finally:
        await client.close()


def one_trial(nodes: int, messages: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="prism-cluster-size-") as where:
        provisioner = NatsClusterProvisioner(nodes=nodes)
        ctx = ProvisionContext(f"jetstream-r{nodes}", None, Path(where), "bench", "bench")
        endpoint = provisioner.start(ctx)
        try:
            cluster: Cluster = endpoint.options["cluster"]
            idle = resident_mib(cluster)
            rate = asyncio.run(write_load(endpoint, messages))
            return {
                "start_seconds": endpoint.options["start_seconds"],
                "idle_mib": idle,
                "loaded_mib": resident_mib(cluster),
                "writes_per_second": rate,
            }
        finally:
            assert endpoint.teardown is not None
            endpoint.teardown()


def measure(trials: int, messages: int) -> dict[int, list[dict[str, float]]]:
    results: dict[int, list[dict[str, float]]] = {nodes: [] for nodes in SIZES}
    for trial in range(trials):
        order = SIZES if trial % 2 == 0 else tuple(reversed(SIZES))
        for nodes in order:
            results[nodes].append(one_trial(nodes, messages))
    return results


def _spread(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} - {max(values):.{digits}f})"


def markdown(results: dict[int, list[dict[str, Any]]], messages: int) -> list[str]:
    lines = [
        f"| nodes | start (s) | servers' RSS idle (MiB) | RSS after {messages:,} writes (MiB) "
        "| acknowledged writes/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for nodes, trials in results.items():
        column = {key: [t[key] for t in trials] for key in trials[0]}
        lines.append(
            f"| {nodes} | {_spread(column['start_seconds'], 2)} | {_spread(column['idle_mib'], 0)} "
            f"| {_spread(column['loaded_mib'], 0)} | {_spread(column['writes_per_second'], 0)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    print("\n".join(markdown(measure(args.trials, args.messages), args.messages)))


if __name__ == "__main__":
    main()
