"""postgres-ha's administration over one kept session per node (``prism_testkit/backends/postgres/wire.py``):
what it prints is what ``psql -A -t`` printed, a refused query leaves the session in use, a
session from before a node's restart is replaced without the caller seeing it, a paused node
is a timeout that names the query, and closing the cluster closes every session."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.postgres.ha import PORT, PostgresHaCluster, PostgresHaProvisioner
from prism_testkit.backends.postgres.wire import Session, SessionRefused, accepts_sessions
from prism_testkit.errors import ProvisioningError
from tests.conftest import cluster_in_a_temp_dir, provision_cluster


@pytest.fixture(scope="module")
def cluster(prism_binaries: Mapping[str, Path]) -> Iterator[PostgresHaCluster]:
    for endpoint in cluster_in_a_temp_dir(
        "prism-pgadmin-",
        lambda where: provision_cluster("postgres-ha", PostgresHaProvisioner(), where, prism_binaries),
    ):
        made: PostgresHaCluster = endpoint.options["cluster"]
        yield made
        made.restore()


def backend_pid(cluster: PostgresHaCluster, node: int) -> int:
    return int(cluster.sql(node, "SELECT pg_backend_pid()"))


def test_output_is_what_psql_printed(cluster: PostgresHaCluster) -> None:
    assert cluster.sql(0, "SELECT generate_series(1, 3)") == "1\n2\n3"
    assert cluster.sql(0, "SELECT NULL::text, 'a', true") == "|a|t"
    assert cluster.sql(1, "SELECT pg_is_in_recovery()") == "t"
    assert cluster.sql(0, "SELECT 1 WHERE false") == ""
    assert cluster.sql(0, "SELECT pg_reload_conf()") == "t"


def test_one_session_per_node_serves_every_query(cluster: PostgresHaCluster) -> None:
    first = backend_pid(cluster, 0)
    for _ in range(5):
        cluster.sql(0, "SELECT 1")
    assert backend_pid(cluster, 0) == first
    assert backend_pid(cluster, 1) != first  # each node its own


def test_a_refused_query_is_a_provisioning_error_and_the_session_goes_on(cluster: PostgresHaCluster) -> None:
    first = backend_pid(cluster, 0)
    with pytest.raises(ProvisioningError, match=r"SELECT 1/0.* on n0 failed: ERROR:  division by zero"):
        cluster.sql(0, "SELECT 1/0")
    assert cluster.sql(0, "SELECT 2") == "2"
    assert backend_pid(cluster, 0) == first


def test_a_session_from_before_a_restart_is_replaced_unseen(cluster: PostgresHaCluster) -> None:
    before = backend_pid(cluster, 2)
    cluster.kill_node(2)
    cluster.restore_node(2)
    assert cluster.sql(2, "SELECT pg_is_in_recovery()") == "t"
    assert backend_pid(cluster, 2) != before


def test_a_session_the_server_ended_is_replaced_unseen(cluster: PostgresHaCluster) -> None:
    doomed = backend_pid(cluster, 1)
    other = Session.open(cluster.address(1), PORT, "postgres", "postgres", timeout=5)
    try:  # the kept session, idle, is ended: its next query meets the FATAL the server sent
        assert other.query(f"SELECT pg_terminate_backend({doomed}, 5000)", timeout=10) == [["t"]]
    finally:
        other.close()
    assert cluster.sql(1, "SELECT 6") == "6"
    assert backend_pid(cluster, 1) != doomed


def test_a_paused_node_is_a_timeout_naming_the_query(cluster: PostgresHaCluster) -> None:
    cluster.sql(1, "SELECT 1")  # a kept session, so the timeout is the query's, not the connect's
    cluster.pause_node(1)
    try:
        with pytest.raises(ProvisioningError, match=r"'SELECT 3' on n1 took over 1s"):
            cluster.sql(1, "SELECT 3", timeout=1)
        with pytest.raises(ProvisioningError, match=r"'SELECT 4' on n1 failed"):
            cluster.sql(1, "SELECT 4", timeout=1)  # a new session cannot start either
    finally:
        cluster.restore_node(1)
    assert cluster.sql(1, "SELECT 5") == "5"


def test_threads_never_share_a_session(cluster: PostgresHaCluster) -> None:
    errors: list[BaseException] = []

    def hammer(tag: int) -> None:
        try:
            for round_ in range(30):
                assert cluster.sql(0, f"SELECT {tag * 1000 + round_}") == str(tag * 1000 + round_)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(tag,)) for tag in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_close_closes_every_session(prism_binaries: Mapping[str, Path]) -> None:
    for endpoint in cluster_in_a_temp_dir(
        "prism-pgadmin-close-",
        lambda where: provision_cluster("postgres-ha", PostgresHaProvisioner(nodes=2), where, prism_binaries),
    ):
        made: PostgresHaCluster = endpoint.options["cluster"]
        made.sql(0, "SELECT 1")
        made.sql(1, "SELECT 1")
        kept = list(made._admin_sessions.values())
        assert len(kept) == 2
    for session in kept:
        assert session._sock.fileno() == -1


def test_a_password_wanted_is_refused_not_sent(unused_listener: socket.socket) -> None:
    host, port = unused_listener.getsockname()

    def ask_for_a_password() -> None:
        conn, _ = unused_listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))  # cleartext password
            conn.recv(1024)

    server = threading.Thread(target=ask_for_a_password)
    server.start()
    with pytest.raises(SessionRefused, match="wants a password"):
        Session.open(host, port, "postgres", "postgres", timeout=2)
    server.join()


def test_nothing_listening_accepts_no_session(unused_listener: socket.socket) -> None:
    host, port = unused_listener.getsockname()
    unused_listener.close()
    assert not accepts_sessions(host, port, "postgres", "postgres")


@pytest.fixture
def unused_listener() -> Iterator[socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


def test_a_server_starting_up_is_waited_for_and_a_password_is_not(unused_listener: socket.socket) -> None:
    """A node restarted a moment ago refuses sessions with SQLSTATE 57P03 while it recovers: the
    harness's administration waits for it (on a loaded machine recovery takes seconds) instead of
    failing the fault it was injecting; any other refusal is raised at once."""
    host, port = unused_listener.getsockname()
    starting_up = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0"
    refusal = b"E" + (len(starting_up) + 4).to_bytes(4, "big") + starting_up
    ready = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"Z" + (5).to_bytes(4, "big") + b"I"

    def recover_after_two_refusals() -> None:
        for answer in (refusal, refusal, ready):
            conn, _ = unused_listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(answer)
                if answer is ready:
                    conn.recv(1024)  # the goodbye

    server = threading.Thread(target=recover_after_two_refusals)
    server.start()
    Session.open_once_accepting(host, port, "postgres", "postgres", timeout=5, patience=60).close()
    server.join()

    server = threading.Thread(target=recover_after_two_refusals)
    server.start()
    with pytest.raises(SessionRefused, match="starting up") as refused:
        Session.open_once_accepting(host, port, "postgres", "postgres", timeout=5, patience=0)
    assert refused.value.code == "57P03"
    for _ in range(2):  # let the fake server finish its script
        with contextlib.suppress(SessionRefused):
            Session.open(host, port, "postgres", "postgres", timeout=5).close()
    server.join()
