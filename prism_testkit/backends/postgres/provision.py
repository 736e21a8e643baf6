"""Provisioning of postgres: a URL, a private cluster (initdb + postgres on a free port, run as
the ``postgres`` user when we are root, since the server refuses root), or a container.

Never imports asyncpg: readiness is checked with a raw startup-message exchange (:mod:`.wire`).
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import re
import secrets
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from prism_testkit.errors import (
    ProvisioningError,
)
from prism_testkit.provision.base import Endpoint, ProvisionContext, Via
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import DataDir, ServerProvisioner, find_binary
from prism_testkit.provision.system_packages import hint

from .wire import accepts_sessions

PRIVATE_USER = "postgres"  # superuser name inside the private cluster (trust auth)
PRIVATE_DATABASE = "postgres"
OS_USER = "postgres"  # the account the server runs as when we are root (postgres refuses root)
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, minus "/.s.PGSQL.<port>" and a margin
READY_TIMEOUT = 60.0
INITDB_TIMEOUT = 120.0


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/bin/", path)
    return tuple(int(p) for p in match.group(1).split(".") if p) if match else ()


# recovery_init_sync_method (how the server makes the data dir durable before crash recovery)
# appeared in PostgreSQL 14; older servers refuse the setting.
SYNCFS_SINCE = 14


def _major(version: str | None) -> int | None:
    """The major version in ``postgres --version``'s line ("postgres (PostgreSQL) 15.20 ...")."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", version or "")
    return int(match.group(1)) if match else None


INITDB_FLAGS = ("-E", "UTF8", "--locale=C", "--no-sync")  # the bootstrap need not be crash-safe


def init_cluster(initdb: Path, data: Path, user: str | None, env: dict[str, str], label: str) -> None:
    """``initdb`` of a private cluster in ``data`` as ``user`` (trust auth for :data:`PRIVATE_USER`:
    the server listens on a private address only); a failure names ``label`` and initdb's last words.
    The server itself runs with fsync=on: only the bootstrap skips the syncs."""
    result = subprocess.run(
        [str(initdb), "-D", str(data), "-U", PRIVATE_USER, "--auth=trust", *INITDB_FLAGS],
        env=env,
        cwd=data.parent,
        preexec_fn=_drop_privileges(user),
        capture_output=True,
        timeout=INITDB_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).decode(errors="replace").strip().splitlines()[-5:])
        raise ProvisioningError(f"{label}: initdb failed ({result.returncode}): {tail}")


def _drop_privileges(user: str | None) -> Callable[[], None] | None:
    if user is None:
        return None
    account = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(account.pw_gid)
        os.initgroups(account.pw_name, account.pw_gid)
        os.setuid(account.pw_uid)

    return demote


def _make_traversable(path: Path, user: str) -> None:
    """Let ``user`` reach ``path``: add o+x to ancestors we own that would stop it (a
    ``tempfile.mkdtemp`` dir is 0700). Search permission only: nobody can list them."""
    account = pwd.getpwnam(user)
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for directory in reversed([path, *path.parents]):
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if ok:
            continue
        if st.st_uid != os.geteuid():
            raise ProvisioningError(
                f"postgres: the {user!r} user cannot reach {path}: {directory} is not searchable by it "
                f"and belongs to {grp.getgrgid(st.st_gid).gr_name}/{pwd.getpwuid(st.st_uid).pw_name}"
            )
        os.chmod(directory, st.st_mode | 0o001)


class PostgresProvisioner(ServerProvisioner):
    server_name = "postgres"
    image = "postgres:16-alpine"
    binary_key = "postgres"
    version_argument = "--version"
    install_hint = hint("postgres")

    def binary(self) -> Path | None:
        # Newest packaged version first, then whatever PATH offers; initdb must sit beside it.
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key, reverse=True)
        for candidate in [*versions, "postgres"]:
            found = find_binary(candidate)
            if found is not None and self._initdb(found) is not None:
                return found
        return None

    def check_binary(self, binary: Path) -> str | None:
        return None if self._initdb(binary) is not None else "has no initdb beside it"

    @staticmethod
    def _initdb(server: Path) -> Path | None:
        return find_binary(server.parent / "initdb", server.resolve().parent / "initdb")

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        initdb = self._initdb(binary)
        if initdb is None:
            raise ProvisioningError(f"postgres: no initdb beside {binary}")
        user = OS_USER if os.geteuid() == 0 else None
        base = ctx.workdir.resolve()
        data, run = base / "data", base / "run"
        for directory in (data, run):
            directory.mkdir(parents=True, exist_ok=True)
        if user is not None:
            account = pwd.getpwnam(user)
            for directory in (data, run):
                os.chown(directory, account.pw_uid, account.pw_gid)
            _make_traversable(base, user)
        data.chmod(0o700)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        init_cluster(initdb, data, user, env, "postgres")
        data_dir = DataDir(ctx, data)  # after initdb: the bootstrap counts as on disk
        port = free_port()
        sockets = str(run) if len(str(run)) <= SOCKET_PATH_MAX else ""  # "": TCP only
        argv = [
            str(binary),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            sockets,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "full_page_writes=on",
            "-c",
            "shared_buffers=32MB",  # several private servers (one per xdist worker) share the RAM
            "-c",
            "wal_level=logical",  # the change feed decodes the WAL
            "-c",
            "max_replication_slots=64",  # one per capture; tests drop theirs
        ]
        if ctx.cut_before_every_start and (_major(self.binary_version(binary)) or 0) >= SYNCFS_SINCE:
            # Its crash recovery first fsyncs every file of the data dir (about 1,000), each a
            # round trip through the lazy filesystem's daemon: 11-13 s of a 14 s restart on a
            # loaded machine. After a power cut nothing is unsynced, so that pass makes nothing
            # durable; syncfs is one call. fsync, synchronous_commit and the WAL stay as they are.
            argv += ["-c", "recovery_init_sync_method=syncfs"]
        server = ServerProcess(
            "postgres",
            argv,
            port=port,
            log_path=base / "postgres.log",
            env=env,
            user=user,
            cwd=base,
            ready=lambda: accepts_sessions("127.0.0.1", port, PRIVATE_USER, PRIVATE_DATABASE),
            ready_timeout=READY_TIMEOUT,
            stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM (smart) waits for clients to leave
        )
        data_dir.start(server)
        url = f"postgresql://{PRIVATE_USER}@127.0.0.1:{port}/{PRIVATE_DATABASE}"
        return data_dir.endpoint(url, server, data_dir=str(data))

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        try:  # newer testcontainers moved the module and deprecated the old path
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            try:
                from testcontainers.postgres import PostgresContainer
            except ImportError as exc:
                raise ProvisioningError("postgres: testcontainers is not installed") from exc
        password = secrets.token_hex(16)
        container = PostgresContainer(self.image, username="prism", password=password, dbname="prism", driver=None)
        container.start()
        try:
            url = container.get_connection_url()
        except BaseException:
            with contextlib.suppress(Exception):
                container.stop()
            raise
        return Endpoint(url=url, via=Via.CONTAINER, teardown=container.stop)
