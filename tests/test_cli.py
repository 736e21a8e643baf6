"""The prism-testkit command: validate, explain, schema; exit codes; redaction."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from prism_testkit.cli import main
from prism_testkit.config.namespace_files import namespace_json_schema

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "namespaces").glob("*.yaml"))

# Built-in embedded backends only: memstore (not durable), sqlite (durable, has a log), localfs.
BROKEN = """\
namespaces:
  - name: jobs
    client_api: queue
    patterns:
      - type: claim-check
        config: {threshold: 1MB, bucket: jobs}
        slots: {messaging: multi, objects: localfs}
      - type: wal
        slots: {log: memstore}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    counts = {"media-events.yaml": "1 namespace", "orders.yaml": "2 namespaces", "video-uploads.yaml": "1 namespace"}
    counts["user-activity.yaml"] = "1 namespace"
    counts["bank-ledger.yaml"] = "1 namespace"
    assert capsys.readouterr().out.splitlines() == [f"{e}: ok ({counts[e.name]})" for e in EXAMPLES]


def test_validate_prints_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", BROKEN)
    good = str(next(e for e in EXAMPLES if e.name == "media-events.yaml"))
    assert main(["validate", bad, good]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        f"{bad}: namespaces[0].patterns[0].slots.messaging: 'multi' is not a backend: name the one registered "
        "backend that fills slot 'messaging', expected a backend with log or pubsub or queue"
    )
    assert lines[1].startswith(
        f"{bad}: namespaces[0].patterns[1].slots.log: slot 'log' of wal expects a backend with log; durable, "
        "found 'memstore' ("
    )
    assert "or Redis without AOF is not enough (registered backends that fit: " in lines[1]
    assert lines[1].endswith("(line 9)")
    assert lines[2] == f"{good}: ok (1 namespace)"


def test_invalid_yaml_and_wrong_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path, "broken.yaml", "namespaces:\n  - name: x\n    client_api: [queue\n")
    typed = write(tmp_path, "typed.yaml", "namespaces:\n  - name: x\n    client_api: stream\n    patterns: []\n")
    assert main(["validate", broken, typed]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{broken}: (root): invalid YAML: expected ',' or ']', but got '<stream end>' (line 4)",
        f"{typed}: namespaces[0].client_api: Input should be 'queue', 'pubsub', 'keyvalue', 'reader' or 'transact', "
        "found 'stream' (line 3)",
    ]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert main(["validate", missing]) == 2
    assert capsys.readouterr().err == f"prism-testkit: error: {missing}: cannot read: No such file or directory\n"
    assert main(["validate"]) == 2
    assert "the following arguments are required: FILE" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_explain_shows_the_chain_slots_priorities_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    example = next(e for e in EXAMPLES if e.name == "video-uploads.yaml")
    assert main(["explain", str(example)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "namespace video-uploads (client_api: queue)",
        "  publish: claim-check -> wal -> backend",
        "  consume: backend -> wal -> claim-check",
        "  1. claim-check [P0, complexity low, implemented]",
        "     large payloads go to object storage; the message carries a reference in a named header",
        "     why: listed in patterns",
        "     messaging -> sqlite (log, queue; durable)",
        "     objects   -> localfs (objects; durable)",
        "     config: threshold=1000000, bucket=video-uploads, key_prefix=videos/, compression=gzip, ttl=604800.0, "
        "field=video-ref",
        "  2. wal [P1, complexity medium, implemented]",
        "     operations are appended to a durable log before they are acknowledged; replay and compaction",
        "     why: listed in patterns",
        "     log    -> sqlite (log; durable)",
        "     target -> (not used)",
        "     config: retention=604800.0, apply_mode=sync",
    ]


def test_explain_resolved_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        "needs.yaml",
        """\
        namespaces:
          - name: ledger
            client_api: queue
            needs: {durability: strong, replay: enabled}
            backends: {messaging: sqlite}
        """,
    )
    assert main(["explain", path]) == 0
    out = capsys.readouterr().out
    assert "  needs: durability=strong, replay=True\n" in out
    assert "  1. wal [P1, complexity medium, implemented]\n" in out
    assert "     why: durability: strong\n" in out
    assert "     log    -> sqlite (log; durable)\n" in out


def test_explain_of_an_invalid_file_prints_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", BROKEN)
    assert main(["explain", bad]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_explain_redacts_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        "secret.yaml",
        """\
        namespaces:
          - name: q
            client_api: queue
            patterns:
              - type: claim-check
                config: {threshold: 1KB, bucket: b, key_prefix: "s3://key:s3cret@host/p/"}
                slots: {messaging: sqlite, objects: localfs}
        """,
    )
    assert main(["explain", path]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "key_prefix=s3://key:***@host/p/" in out


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == namespace_json_schema()


def test_installed_script(tmp_path: Path) -> None:
    script = shutil.which("prism-testkit")
    assert script is not None, "pip install -e . installs the prism-testkit script"
    bad = write(tmp_path, "bad.yaml", BROKEN)
    done = subprocess.run([script, "validate", *map(str, EXAMPLES), bad], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if ": ok (" in line] == [line for line in lines if not line.startswith(bad)]
    assert len([line for line in lines if line.startswith(f"{bad}: namespaces[0].patterns[")]) == 2
