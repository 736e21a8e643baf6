"""Load mode's burners: CPU and I/O load beside the suites, started once per run.

The run's controller (the one process without xdist) starts them with Debian's ``stress-ng``
(``--cpu N``; ``--hdd N`` writing and fsyncing in a dir of the run's work dir), or, where
``stress-ng`` is missing, with Python processes (a busy loop; a write + fsync loop) and says so.
Each is a :class:`~prism_testkit.provision.processes.ServerProcess` that serves no port, so it is
tracked like every server: its own process group with a parent-death signal, recorded in the
work dir for the sweep after a crashed run, stopped by :meth:`Burners.stop` at the end of the run,
at exit and on Ctrl-C. The load mode's jitter never stalls a burner (``stallable = False``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prism_testkit.faults.load import LoadSpec
from prism_testkit.provision.processes import ServerProcess

# A write + fsync loop in a file that stays small: the load is the syncs, not the disk space.
_IO_LOOP = (
    "import os, sys\n"
    "path = os.path.join(sys.argv[1], f'burn-{os.getpid()}')\n"
    "block = os.urandom(1 << 20)\n"
    "with open(path, 'wb', buffering=0) as f:\n"
    "    while True:\n"
    "        for _ in range(16):\n"
    "            f.write(block); os.fsync(f.fileno())\n"
    "        f.seek(0); f.truncate()\n"
)
_CPU_LOOP = "while True:\n    pass\n"
HDD_BYTES = "64M"  # per stress-ng --hdd worker, rewritten over and over


class BurnerProcess(ServerProcess):
    """A burner: started, tracked and stopped like a server, never stalled by the jitter."""

    stallable = False


def stress_ng_version(binary: str) -> str | None:
    """``0.15.06`` for ``stress-ng, version 0.15.06 (...)``, or None when it does not answer."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    return words[words.index("version") + 1] if "version" in words[:-1] else None


@dataclass
class Burners:
    """The burners of one run."""

    spec: LoadSpec
    home: Path  # the run's dir for their logs and files
    stress_ng: str | None = None  # the binary used, None: Python burners
    version: str | None = None
    processes: list[BurnerProcess] = field(default_factory=list)

    @classmethod
    def start(cls, spec: LoadSpec, home: Path, stress_ng: str | None = "which") -> Burners:
        """Start the burners ``spec`` asks for in ``home``; ``stress_ng`` is the binary, the
        default ``"which"`` looks for it on PATH, None forces the Python burners."""
        binary = shutil.which("stress-ng") if stress_ng == "which" else stress_ng
        version = stress_ng_version(binary) if binary else None
        burners = cls(spec, home, binary if version else None, version)
        try:
            burners._start()
        except BaseException:
            burners.stop()
            raise
        return burners

    def _start(self) -> None:
        files = self.home / "io"
        files.mkdir(parents=True, exist_ok=True)
        if self.stress_ng is not None:
            argv = [self.stress_ng, "--timeout", "0", "--quiet"]
            if self.spec.cpu:
                argv += ["--cpu", str(self.spec.cpu)]
            if self.spec.io:
                argv += ["--hdd", str(self.spec.io), "--hdd-opts", "wr-seq,fsync", "--hdd-bytes", HDD_BYTES]
                argv += ["--temp-path", str(files)]
            self._spawn("stress-ng", argv, cwd=files)
            return
        for n in range(self.spec.cpu):
            self._spawn(f"cpu-{n}", [sys.executable, "-c", _CPU_LOOP])
        for n in range(self.spec.io):
            self._spawn(f"io-{n}", [sys.executable, "-c", _IO_LOOP, str(files)], cwd=files)

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        burner = BurnerProcess(
            f"load-{name}",
            argv,
            port=0,
            log_path=self.home / f"{name}.log",
            cwd=cwd,
            ready=lambda: True,
            stop_signal=signal.SIGKILL,  # nothing of theirs is worth a clean shutdown
        )
        self.processes.append(burner)
        burner.start()

    @property
    def tool(self) -> str:
        """What burns, for the header."""
        if self.stress_ng is not None:
            return f"stress-ng {self.version}"
        from prism_testkit.provision.system_packages import hint

        return f"Python burners: stress-ng not found; {hint('stress-ng')}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None and p.alive]

    def stop(self) -> None:
        """Kill every burner and its workers; idempotent."""
        for burner in self.processes:
            burner.kill()
