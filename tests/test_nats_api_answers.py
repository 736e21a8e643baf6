"""How the NATS driver takes a JetStream API answer that is an error of the moment rather than
of the request, on a server that answers what it is told to (no NATS server: the answers under
test are the rare ones, which a real cluster gives a few times in a hundred starts)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("nats")
from prism_testkit.backends.nats.codec import token
from prism_testkit.backends.nats.driver import NatsDriver
from prism_testkit.backends.nats.jetstream import ERR_JS_UNAVAILABLE, ERR_NO_PEERS, ERR_STREAM_NOT_FOUND, ApiError
from prism_testkit.backends.nats.messaging import KV_BUCKET
from prism_testkit.capabilities import Capability

NO_PEERS = {"error": {"code": 500, "err_code": ERR_NO_PEERS, "description": "no suitable peers for placement"}}
CREATED = {"config": {"name": "S"}, "did_create": True}


class Reply:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


class ScriptedServer:
    """A connection whose API requests get the scripted answers in turn (the last one repeats)."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def request(self, subject: str, payload: bytes, **_: float) -> Reply:  # the timeout: answered at once
        self.asked.append(subject)
        return Reply(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


def driver_over(server: ScriptedServer, replicas: int) -> NatsDriver:
    capabilities = frozenset({Capability.LOG, Capability.PUBSUB})
    return NatsDriver("nats-test", capabilities, server, replicas=replicas)  # type: ignore[arg-type]


def test_a_create_refused_for_want_of_placeable_peers_is_sent_again_on_a_cluster() -> None:
    """4 runs in 100 on a jetstream-r3 cluster just started (settled by every check the monitoring
    endpoint allows): the first stream create was refused "no suitable peers for placement, peer
    offline", the metadata leader not having heard a node's statistics yet. A create has a fixed
    config, so it is sent again until its deadline, and the peer is heard within seconds."""
    server = ScriptedServer(NO_PEERS, NO_PEERS, CREATED)
    answer = asyncio.run(driver_over(server, replicas=3).jetstream.api("$JS.API.STREAM.CREATE.S", {}, repeatable=True))
    assert answer == CREATED
    assert len(server.asked) == 3


def test_a_refusal_that_lasts_is_the_api_error_it_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """Too few nodes for the replicas asked never passes: at the deadline the refusal is reported
    as it is, an API error naming it, not an unknown outcome."""
    from prism_testkit.backends.nats import jetstream

    monkeypatch.setattr(jetstream, "CREATE_TIMEOUT", 0.5)
    server = ScriptedServer(NO_PEERS)
    with pytest.raises(ApiError, match="no suitable peers"):
        asyncio.run(driver_over(server, replicas=3).jetstream.api("$JS.API.STREAM.CREATE.S", {}, repeatable=True))
    assert len(server.asked) > 1


@pytest.mark.parametrize(("replicas", "repeatable"), [(1, True), (3, False)])
def test_a_refusal_is_not_repeated_on_a_single_server_nor_for_a_request_not_safe_to_repeat(
    replicas: int, repeatable: bool
) -> None:
    server = ScriptedServer(NO_PEERS, CREATED)
    with pytest.raises(ApiError, match="no suitable peers"):
        asyncio.run(driver_over(server, replicas).jetstream.api("$JS.API.STREAM.CREATE.S", {}, repeatable=repeatable))
    assert len(server.asked) == 1


class FlushRecorder(ScriptedServer):
    """A connection that records the bound each flush is given."""

    def __init__(self) -> None:
        super().__init__(CREATED)
        self.flush_bounds: list[float] = []

    async def subscribe(self, subject: str, **_: Any) -> object:
        return object()

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109  # the client's own signature
        self.flush_bounds.append(timeout)


def test_a_subscription_waits_for_the_servers_answer_as_long_as_the_machines_slowness_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CI (the test command, load average 5 on 2 cores): the flush that makes the server know a
    new subscriber's interest waited past a fixed 5 s, and the pub/sub round trip failed with
    "flush timeout" on a slow machine, not a broken guarantee. Its bound scales as the API's do."""
    from prism_testkit.backends.nats.jetstream import API_TIMEOUT

    monkeypatch.setenv("PRISM_SLOWNESS", "3")
    server = FlushRecorder()
    asyncio.run(driver_over(server, replicas=1).pubsub().subscribe("t"))
    assert server.flush_bounds == [API_TIMEOUT * 3]


UNAVAILABLE = {
    "error": {"code": 503, "err_code": ERR_JS_UNAVAILABLE, "description": "JetStream system temporarily unavailable"}
}


class RoutedServer(ScriptedServer):
    """A connection answering by subject: each prefix has its answers in turn (the last repeats)."""

    def __init__(self, routes: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__({})
        self.routes = routes

    async def request(self, subject: str, payload: bytes, **_: float) -> Reply:
        self.asked.append(subject)
        answers = next(answers for prefix, answers in self.routes.items() if subject.startswith(prefix))
        return Reply(answers.pop(0) if len(answers) > 1 else answers[0])


def test_the_end_of_test_purge_waits_out_a_cluster_between_leaders() -> None:
    """The main job under load (jetstream-r3, the leader_change suite's outage test): the
    namespace's key-value purge after the test was answered "temporarily unavailable" (503) and
    the test ERRORed at teardown. A purge the clean-up sends needs no count, so it is asked again
    while the cluster elects, as the clean-up's stream deletions are."""
    prefix = "pt-1-"
    key_subject = f"$KV.{KV_BUCKET}.{token(prefix)}k"
    not_found = {"error": {"code": 404, "err_code": ERR_STREAM_NOT_FOUND, "description": "stream not found"}}
    server = RoutedServer(
        {
            "$JS.API.STREAM.NAMES": [{"streams": [], "total": 0}],
            f"$JS.API.STREAM.INFO.KV_{KV_BUCKET}": [{"state": {"subjects": {key_subject: 1}}, "total": 1}],
            "$JS.API.STREAM.INFO.": [not_found],
            "$JS.API.STREAM.PURGE.": [UNAVAILABLE, UNAVAILABLE, {"success": True, "purged": 1}],
        }
    )
    asyncio.run(driver_over(server, replicas=3).purge(prefix))
    assert server.asked.count(f"$JS.API.STREAM.PURGE.KV_{KV_BUCKET}") == 3
