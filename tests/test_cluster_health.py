"""A red belongs to its test: damage one test leaves on a shared cluster is rebuilt away before
the next test's first step, a replica check judges only the streams of its example's namespace,
and damage that cannot be rebuilt fails as inherited, at once, unshrunk. End to end, on a real
``jetstream-r3`` (three nats-server nodes).

The seeded damage is a stream outside every namespace that only one node holds: what the cluster
looks like after a node forgot the streams it recorded (nats-server #7556), which the replica check
reads as copies that stay apart."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from prism_testkit.stateful.health import Rebuilt, ensure_healthy
from tests._sandbox_machines import WRITES_MACHINE

if TYPE_CHECKING:
    from prism_testkit.runtime.env import PrismEnv

SUITE = (
    """
    import json

    import nats
    from hypothesis.stateful import rule

    from prism_testkit import PrismEnv, Slot, prism_suite
    from prism_testkit.stateful.machine import FaultMachine
    from prism_testkit.stateful.runner import StatefulRun

    pytestmark = prism_suite("health", backend=Slot.needs("keyvalue"))
    MACHINES = []


    async def one_node_stream(prism_env, name):
        url = prism_env.runtime.endpoint("jetstream-r3").url.split(",")[0]
        client = await nats.connect(url, connect_timeout=5)
        try:
            config = {"name": name, "subjects": [f"{name}.>"], "num_replicas": 1, "storage": "file"}
            answer = await client.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode(), timeout=10)
            assert "error" not in json.loads(answer.data), answer.data
        finally:
            await client.close()


    def test_1_leaves_a_stream_one_node_holds(prism_env: PrismEnv) -> None:
        prism_env.runtime.run(one_node_stream(prism_env, "prism-leftover"))


"""
    + WRITES_MACHINE
    + """
        def check(self):
            MACHINES.append(self)
            return [], "writes"


    class LeavesDamage(Writes):
        left = False

        @rule()
        def leave_a_stream_outside_the_namespace(self):
            if not LeavesDamage.left:
                LeavesDamage.left = True
                self.loop(one_node_stream(self.env, "prism-shared-apart"))


    def test_2_writes(prism_env: PrismEnv, request) -> None:
        run = StatefulRun(prism_env, request)
        run.execute(lambda: Writes(run))


    def test_3_leaves_damage_outside_its_namespace(prism_env: PrismEnv, request) -> None:
        run = StatefulRun(prism_env, request)
        run.execute(lambda: LeavesDamage(run))
"""
)

# rebuilding fails: the damage test_1 leaves can only be inherited
CANNOT_REBUILD = """
import pytest

from prism_testkit.errors import ProvisioningError
from prism_testkit.runtime import PrismRuntime


@pytest.fixture(autouse=True)
def no_rebuilds(monkeypatch):
    def refuse(self, name):
        raise ProvisioningError(f"{name} cannot be rebuilt here")

    monkeypatch.setattr(PrismRuntime, "rebuild", refuse)
"""


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_health=SUITE)
    return pytester.runpytest_subprocess(
        "--prism-backend=jetstream-r3",
        "--hypothesis-profile=prism-ci",
        "--prism-depth=2",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *args,
    )


def test_damage_left_by_one_test_is_rebuilt_away_before_the_next_and_named(pytester: pytest.Pytester) -> None:
    """Before: test_2 went red with ``replicas-diverged`` naming ``prism-leftover``, a stream it
    never wrote; test_3 went red on one it wrote outside its namespace. Now both pass, and the
    report says which test left the cluster damaged and what was rebuilt."""
    report = pytester.path / "report.json"
    result = run_suite(pytester, f"--prism-report={report}")
    result.assert_outcomes(passed=3)
    entries = json.loads(report.read_text())["rebuilt"]
    rebuilt = {entry["test"].split("::")[-1].split("[")[0]: entry["clusters"] for entry in entries}
    [left_by_1] = rebuilt["test_2_writes"]
    assert left_by_1["backend"] == "jetstream-r3"
    assert left_by_1["left_by"].split("[")[0].endswith("test_1_leaves_a_stream_one_node_holds")
    assert "prism-leftover" in left_by_1["why"]
    # test_3's own example left it: rebuilt before its next example, named against test_3
    [left_by_3] = rebuilt["test_3_leaves_damage_outside_its_namespace"]
    assert left_by_3["left_by"].split("[")[0].endswith("test_3_leaves_damage_outside_its_namespace")
    assert "outside the test's namespace" in left_by_3["why"]
    assert "prism-shared-apart" in left_by_3["why"]
    result.stdout.fnmatch_lines(["*clusters REBUILT because a test left them damaged*"])


def test_damage_that_cannot_be_rebuilt_fails_as_inherited_at_once_without_shrinking(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CANNOT_REBUILD)
    result = run_suite(pytester, "-k", "test_1 or test_2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_2_writes*inherited: found at the start: jetstream-r3, left damaged by *test_1_leaves*prism-leftover*"]
    )
    assert "Falsifying example" not in result.stdout.str()  # stopped, not searched and shrunk
    assert "Hypothesis has spent" not in result.stdout.str()


# -- two clusters in one combination (issue 66: "the second one") ---------------------------
# A tiered store over two clusters, a CDC feed from one cluster to another: each is judged and
# rebuilt on its own. Fakes of the runtime's bookkeeping, no servers: what is checked here is
# which clusters ensure_healthy rebuilds and whom it names, not how a rebuild is done.


class FakeCluster:
    kills = 0
    stream_states = None  # no node-by-node view: only damage a test named counts


class FakeRuntime:
    def __init__(self, *backends: str) -> None:
        self.clusters = {backend: FakeCluster() for backend in backends}
        self.damaged: dict[str, tuple[str, str]] = {}
        self.suspect: set[str] = set()
        self.last_test: dict[str, str] = {}
        self.kills_checked: dict[str, int] = {}
        self.rebuilt: list[str] = []

    def endpoint(self, backend: str) -> SimpleNamespace:
        return SimpleNamespace(cluster=self.clusters[backend])

    def rebuild(self, backend: str) -> None:
        self.rebuilt.append(backend)
        self.damaged.pop(backend, None)
        self.clusters[backend] = FakeCluster()

    def driver(self, backend: str) -> None:
        return None


def env_over(runtime: FakeRuntime, **slots: str) -> PrismEnv:
    return cast("PrismEnv", SimpleNamespace(runtime=runtime, combination=SimpleNamespace(slots=slots)))


def test_of_two_clusters_only_the_damaged_second_is_rebuilt() -> None:
    runtime = FakeRuntime("hot-cluster", "cold-cluster")
    runtime.damaged["cold-cluster"] = ("test_a", "streams apart")
    rebuilt = ensure_healthy(env_over(runtime, hot="hot-cluster", cold="cold-cluster"), "test_b")
    assert runtime.rebuilt == ["cold-cluster"]  # the healthy one is not paid for
    assert rebuilt == [Rebuilt("cold-cluster", "test_a", "streams apart", "test_b")]


def test_two_damaged_clusters_are_both_rebuilt_each_named_with_the_test_that_left_it() -> None:
    runtime = FakeRuntime("hot-cluster", "cold-cluster")
    runtime.damaged["hot-cluster"] = ("test_a", "a node forgot its streams")
    runtime.damaged["cold-cluster"] = ("test_b", "copies apart after the heal")
    rebuilt = ensure_healthy(env_over(runtime, hot="hot-cluster", cold="cold-cluster"), "test_c")
    assert sorted(runtime.rebuilt) == ["cold-cluster", "hot-cluster"]
    assert sorted(rebuilt, key=lambda r: r.backend) == [
        Rebuilt("cold-cluster", "test_b", "copies apart after the heal", "test_c"),
        Rebuilt("hot-cluster", "test_a", "a node forgot its streams", "test_c"),
    ]
    assert runtime.damaged == {}


def test_one_cluster_in_two_slots_is_rebuilt_once() -> None:
    runtime = FakeRuntime("shared")
    runtime.damaged["shared"] = ("test_a", "streams apart")
    rebuilt = ensure_healthy(env_over(runtime, hot="shared", cold="shared"), "test_b")
    assert runtime.rebuilt == ["shared"]
    assert len(rebuilt) == 1
