"""The bootstrap (``scripts/bootstrap``): what it finds missing, what it installs and how, what it
tells a user who must install by hand, and that the README's commands and ``.ci/run`` share it.

The machine is read through fake probes here, nothing is installed for real, except in the last
test: it reads this machine for real, after the bootstrap the project's run starts with."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from prism_testkit.provision import system_packages as sp

REPOSITORY = Path(__file__).resolve().parent.parent
DEBIAN = {"ID": "debian", "VERSION_ID": "12"}
UBUNTU = {"ID": "ubuntu", "ID_LIKE": "debian"}


class Machine:
    """A fake machine: what is installed, who runs, which system. ``install`` adds packages' files."""

    PROVIDES: ClassVar[dict[str, set[str]]] = {  # Debian package -> what the probes then find
        "redis-server": {"which:redis-server"},
        "nats-server": {"which:nats-server"},
        "postgresql": {"glob:/usr/lib/postgresql/*/bin/postgres"},
        "fuse3": {"lib:fuse3", "which:fusermount3"},
        "iproute2": {"which:ip"},
        "python3-venv": {"module:ensurepip"},
        "rabbitmq-server": {"exec:/usr/lib/rabbitmq/bin/rabbitmq-server"},
        "stress-ng": {"which:stress-ng"},
        "etcd-server": {"which:etcd"},
        "chromium": {"which:chromium"},
    }

    def __init__(self, *missing: str, euid: int = 0, release: dict[str, str] | None = None, sudo: bool = False):
        self.present = {"which:apt-get", "exists:/dev/fuse"}
        for package, files in self.PROVIDES.items():
            if package not in missing:
                self.present |= files
        self.uid, self.release, self.sudo = euid, DEBIAN if release is None else release, sudo
        self.commands: list[list[str]] = []

    def probes(self) -> sp.Probes:
        return sp.Probes(
            which=lambda name: f"/usr/bin/{name}" if f"which:{name}" in self.present else None,
            executable=lambda path: f"exec:{path}" in self.present,
            glob=lambda pattern: ["/usr/lib/postgresql/15/bin/postgres"] if f"glob:{pattern}" in self.present else [],
            find_library=lambda name: f"lib{name}.so" if f"lib:{name}" in self.present else None,
            has_module=lambda name: f"module:{name}" in self.present,
            exists=lambda path: f"exists:{path}" in self.present,
            euid=lambda: self.uid,
            os_release=lambda: self.release,
            passwordless_sudo=lambda: self.sudo,
        )

    def run(self, argv: Sequence[str]) -> int:
        self.commands.append(list(argv))
        args = list(argv)
        if args[:2] == ["sudo", "-n"]:
            args = args[2:]
        if args[:2] == ["apt-get", "install"]:
            for package in args[2:]:
                self.present |= self.PROVIDES.get(package, set())
        return 0


def missing_keys(machine: Machine, project: bool = False) -> list[str]:
    return [n.key for n in sp.plan(machine.probes(), project=project).missing]


def test_nothing_missing_means_nothing_to_install() -> None:
    found = sp.plan(Machine().probes(), project=True)
    assert (found.missing, found.install, found.by_hand) == ([], [], [])


@pytest.mark.parametrize(
    ("package", "key"),
    [
        ("redis-server", "redis"),
        ("nats-server", "nats"),
        ("postgresql", "postgres"),
        ("fuse3", "fuse3"),
        ("iproute2", "iproute2"),
        ("python3-venv", "venv"),
    ],
)
def test_each_missing_package_is_found_missing_and_installed_as_root(package: str, key: str) -> None:
    found = sp.plan(Machine(package).probes())
    assert [n.key for n in found.missing] == [key]
    assert found.install == [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]]
    assert found.by_hand == []


def test_fuse_is_missing_when_either_the_library_or_fusermount3_is() -> None:
    machine = Machine()
    machine.present.discard("which:fusermount3")
    assert missing_keys(machine) == ["fuse3"]
    machine = Machine()
    machine.present.discard("lib:fuse3")
    assert missing_keys(machine) == ["fuse3"]


@pytest.mark.parametrize(
    ("package", "key"), [("rabbitmq-server", "rabbitmq"), ("etcd-server", "etcd"), ("chromium", "chromium")]
)
def test_the_examples_servers_are_needed_by_the_project_run_only(package: str, key: str) -> None:
    machine = Machine(package)
    assert missing_keys(machine) == []
    assert missing_keys(machine, project=True) == [key]
    assert sp.plan(machine.probes(), project=True).install[-1] == ["apt-get", "install", "-y", "-qq", package]


def test_no_dev_fuse_is_told_by_hand_even_as_root_on_debian() -> None:
    machine = Machine()
    machine.present.discard("exists:/dev/fuse")
    found = sp.plan(machine.probes())
    assert found.install == []
    assert len(found.by_hand) == 1
    assert "--device /dev/fuse" in found.by_hand[0]


def test_packages_are_installed_once_each_in_one_command() -> None:
    found = sp.plan(Machine("fuse3", "redis-server", "postgresql").probes())
    assert found.install[-1] == ["apt-get", "install", "-y", "-qq", "fuse3", "postgresql", "redis-server"]


def test_ubuntu_is_debian_like_and_without_apt_nothing_is() -> None:
    machine = Machine("redis-server", release=UBUNTU)
    assert sp.plan(machine.probes()).install[-1][-1] == "redis-server"
    machine.present.discard("which:apt-get")
    assert sp.plan(machine.probes()).install == []


def test_not_root_with_passwordless_sudo_installs_through_sudo() -> None:
    found = sp.plan(Machine("nats-server", euid=1000, sudo=True).probes())
    assert found.install == [
        ["sudo", "-n", "apt-get", "update", "-qq"],
        ["sudo", "-n", "apt-get", "install", "-y", "-qq", "nats-server"],
    ]


def test_not_root_without_sudo_gets_the_exact_command_and_installs_nothing() -> None:
    found = sp.plan(Machine("nats-server", "fuse3", euid=1000).probes())
    assert found.install == []
    assert found.by_hand == ["not root: run  sudo apt-get update && sudo apt-get install -y fuse3 nats-server"]


def test_another_system_gets_one_line_per_missing_thing_with_what_needs_it() -> None:
    found = sp.plan(Machine("redis-server", "fuse3", release={"ID": "fedora"}).probes())
    assert found.install == []
    assert len(found.by_hand) == 2
    redis, fuse = found.by_hand
    assert "redis-server (for the redis and redis-aof backends)" in redis
    assert "PRISM_REDIS_BINARY" in redis
    assert "power-loss" in fuse
    assert "FUSE 3" in fuse


def test_main_installs_what_is_missing_then_makes_the_venv(tmp_path: Path) -> None:
    machine = Machine("fuse3", "python3-venv")
    venv = tmp_path / "venv"
    assert sp.main(["--venv", str(venv)], machine.probes(), machine.run) == 0
    assert machine.commands == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "fuse3", "python3-venv"],
        [sys.executable, "-m", "venv", str(venv)],
    ]


def test_main_keeps_an_existing_venv_and_installs_nothing_when_nothing_is_missing(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    machine = Machine()
    assert sp.main(["--venv", str(tmp_path)], machine.probes(), machine.run) == 0
    assert machine.commands == []


def test_main_without_venv_support_and_no_root_fails_with_the_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = Machine("python3-venv", euid=1000)
    assert sp.main(["--venv", str(tmp_path / "v")], machine.probes(), machine.run) == 1
    assert machine.commands == []
    err = capsys.readouterr().err
    assert "sudo apt-get install -y python3-venv" in err
    assert "cannot make" in err


def test_main_the_project_run_fails_early_on_what_is_still_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The main job goes on without fuse3 (its power-loss rows are UNAVAILABLE); the project's
    own run, which must fit every suite, stops here with the instruction."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    machine = Machine("fuse3", euid=1000)
    assert sp.main(["--venv", str(tmp_path)], machine.probes(), machine.run) == 0
    assert sp.main(["--project", "--venv", str(tmp_path)], machine.probes(), machine.run) == 1
    assert "still missing: libfuse3 and fusermount3" in capsys.readouterr().err


def test_main_stops_when_apt_fails(tmp_path: Path) -> None:
    machine = Machine("redis-server")
    assert sp.main(["--venv", str(tmp_path / "v")], machine.probes(), lambda argv: 100) == 1


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine = Machine("redis-server")
    assert sp.main(["--dry-run", "--venv", str(tmp_path / "v")], machine.probes(), machine.run) == 0
    assert machine.commands == []
    assert not (tmp_path / "v").exists()
    assert "would run: apt-get install -y -qq redis-server" in capsys.readouterr().err


def test_hints_name_the_package_and_the_bootstrap() -> None:
    assert sp.hint("redis").startswith("Debian/Ubuntu: apt-get install redis-server (scripts/bootstrap does it)")
    assert "--device /dev/fuse" in sp.hint("dev-fuse")


def test_the_module_runs_on_the_standard_library_alone() -> None:
    """``scripts/bootstrap`` runs it before any environment exists: without site-packages."""
    done = subprocess.run(
        [sys.executable, "-S", "-m", "prism_testkit.provision.system_packages", "--dry-run"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("bootstrap: ")


def _readme_commands() -> list[str]:
    text = (REPOSITORY / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_commands_and_ci_share_the_bootstrap() -> None:
    """The README's first block is its two commands; each starts with the bootstrap, and .ci/run
    runs the bootstrap with the project's needs and then exactly the README's test command."""
    main_job, project = _readme_commands()
    assert main_job.startswith("scripts/bootstrap && ")
    assert main_job.endswith(" -o prism_require_fit=false"), "the main job must not insist on fit as the project does"
    assert project.startswith("scripts/bootstrap --project && ")
    ci = (REPOSITORY / ".ci" / "run").read_text()
    assert "\nscripts/bootstrap --project\n" in ci
    assert "\n" + project.removeprefix("scripts/bootstrap --project && ") + "\n" in ci


def test_this_machine_has_everything_the_project_run_needs_after_the_bootstrap() -> None:
    """The real probes, not fakes: the project's run starts with the bootstrap (README, .ci/run),
    so on a machine that lacked fuse3 before it (as CI's does), this proves it was installed."""
    found = sp.plan(sp.Probes(), project=True)
    assert [need.key for need in found.missing] == [], sp.hint(found.missing[0].key) if found.missing else ""
