"""What each cluster fault costs a stateful example on a 3-node JetStream cluster: the seconds
from injecting it to the cluster settled again (every stream and consumer led), as the nemesis
and the end-of-example heal wait for it. A cluster row's time is mostly these waits.

Faults are interleaved over ``--trials`` rounds on one cluster holding a replicated stream with
a durable consumer (the raft groups a suite's namespace makes). Rows are medians with min - max.

    python -m benchmarks.cluster_faults --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.cluster_size import add_replicated_stream
from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.provision.base import Endpoint, ProvisionContext
from prism_testkit.provision.cluster import Cluster


async def make_stream(endpoint: Endpoint, messages: int = 50) -> None:
    """A stream with a replica on every node and a durable consumer, with some messages."""
    import nats

    client = await nats.connect(endpoint.url.split(","))
    try:
        stream = client.jetstream()
        await add_replicated_stream(stream, "faults", endpoint.options["replicas"])
        await stream.pull_subscribe("faults.>", durable="reader")
        for index in range(messages):
            await stream.publish(f"faults.{index % 4}", b"x" * 64)
    finally:
        await client.close()


def kill_follower(cluster: Cluster) -> None:
    leader = cluster.leader()
    node = next(n for n in range(cluster.size) if n != leader)
    cluster.kill_node(node)
    cluster.restore_node(node)


def kill_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader is not None, "no leader to kill"
    cluster.kill_node(leader)
    cluster.restore_node(leader)


def crash_all(cluster: Cluster) -> None:
    cluster.kill()
    cluster.start()


def isolate_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader is not None, "no leader to isolate"
    cluster.partition([[leader], [n for n in range(cluster.size) if n != leader]])
    cluster.restore()


FAULTS: dict[str, Callable[[Cluster], None]] = {
    "kill a follower": kill_follower,
    "kill the leader": kill_leader,
    "crash every node": crash_all,
    "isolate the leader, heal": isolate_leader,
}


def measure(trials: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in FAULTS}
    with tempfile.TemporaryDirectory(prefix="prism-cluster-faults-") as where:
        ctx = ProvisionContext("jetstream-r3", None, Path(where), "bench", "bench")
        endpoint = NatsClusterProvisioner(nodes=3).start(ctx)
        try:
            cluster: Cluster = endpoint.options["cluster"]
            asyncio.run(make_stream(endpoint))
            cluster.wait_settled()
            names = list(FAULTS)
            for trial in range(trials):
                for name in names[trial % len(names) :] + names[: trial % len(names)]:
                    started = time.monotonic()
                    FAULTS[name](cluster)
                    results[name].append(time.monotonic() - started)
        finally:
            assert endpoint.teardown is not None
            endpoint.teardown()
    return results


def markdown(results: dict[str, list[float]]) -> list[str]:
    lines = ["| fault | seconds until settled |", "|---|---:|"]
    for name, seconds in results.items():
        lines.append(f"| {name} | {statistics.median(seconds):.1f} ({min(seconds):.1f} - {max(seconds):.1f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    print("\n".join(markdown(measure(args.trials))))


if __name__ == "__main__":
    main()
