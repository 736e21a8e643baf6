"""Every server the harness starts gets a private temp dir (TMPDIR) beside its log, so two
workers' servers never share one: a server that cleans its temp dir at start (MariaDB did, in
an author's backend) would delete the other's files."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from prism_testkit.provision.processes import ServerProcess, free_port

REPORTER = (
    "import os, sys, tempfile, time\n"
    "open(sys.argv[1] + '.part', 'w').write(os.environ.get('TMPDIR', '') + '\\n' + tempfile.gettempdir())\n"
    "os.rename(sys.argv[1] + '.part', sys.argv[1])\n"
    "time.sleep(60)\n"
)


def temp_dirs_seen(workdir: Path, env: dict[str, str] | None = None, tmpdir: Path | None = None) -> list[str]:
    """Start a server in ``workdir`` that reports its TMPDIR and Python's temp dir; stop it."""
    report = workdir / "seen"
    server = ServerProcess(
        "reporter",
        [sys.executable, "-c", REPORTER, str(report)],
        port=free_port(),
        log_path=workdir / "server.log",
        env=env,
        ready=report.exists,
        ready_timeout=30,
        tmpdir=tmpdir,
    )
    try:
        server.start()
        return report.read_text().splitlines()
    finally:
        server.kill()


def test_each_server_gets_its_own_temp_dir_in_its_work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared))  # what every worker inherits
    first, second = tmp_path / "gw0" / "postgres", tmp_path / "gw1" / "postgres"
    assert temp_dirs_seen(first) == [str(first / "tmp")] * 2
    assert temp_dirs_seen(second) == [str(second / "tmp")] * 2
    assert (first / "tmp").is_dir()


def test_an_environment_given_without_tmpdir_gets_one(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert temp_dirs_seen(tmp_path, env=env) == [str(tmp_path / "tmp")] * 2


def test_a_tmpdir_given_by_the_provisioner_is_used(tmp_path: Path) -> None:
    own = tmp_path / "scratch"
    assert temp_dirs_seen(tmp_path, tmpdir=own) == [str(own)] * 2
    assert own.is_dir()


def test_a_tmpdir_in_the_given_environment_is_kept(tmp_path: Path) -> None:
    chosen = tempfile.mkdtemp(dir=tmp_path)
    assert temp_dirs_seen(tmp_path, env={"TMPDIR": chosen}) == [chosen] * 2
