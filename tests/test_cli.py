"""The prism-testkit command: validate, explain, schema; exit codes; redaction."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    # the environment's scripts dir first: pytest may be run by its path, the venv not activated
    scripts = Path(sys.executable).parent
    script = shutil.which("prism-testkit", path=os.pathsep.join([str(scripts), os.environ.get("PATH", "")]))
    assert script is not None, "pip install -e . installs the prism-testkit script"
    bad = write(tmp_path, "bad.yaml", BROKEN)
    done = subprocess.run([script, "validate", *map(str, EXAMPLES), bad], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if ": ok (" in line] == [line for line in lines if not line.startswith(bad)]
    assert len([line for line in lines if line.startswith(f"{bad}: namespaces[0].patterns[")]) == 2


# --- CLI conventions (issue 23 §4) -------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"prism-testkit {importlib.metadata.version('prism-testkit')}\n"


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prism_testkit", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.split()[0], done.stderr) == (0, "prism-testkit", "")


def test_backends_lists_each_registration_its_plugin_and_how_it_is_provisioned_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_REDIS_URL", "not a url")  # unavailable here, with the reason
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "memstore [embedded, plugin memstore]\n" in out
    assert "  provisioned here: embedded (in this process)\n" in out
    assert "redis [plugin redis]\n" in out
    assert "  UNAVAILABLE here: the URL given for redis is not a URL" in out
    assert main(["backends", "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["sqlite"]["plugin"] == "sqlite"
    assert rows["sqlite"]["available"] is True
    assert rows["sqlite"]["via"] == "embedded"
    assert "keyvalue" in rows["sqlite"]["capabilities"]
    assert rows["sqlite"]["properties"]["durable"] is True
    assert rows["redis"]["available"] is False
    assert rows["redis"]["detail"].startswith("the URL given for redis is not a URL")


def test_backends_never_print_a_password(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_POSTGRES_URL", "postgresql://app:s3cret@db:5432/x")
    for output in ("text", "json"):
        assert main(["backends", "--format", output]) == 0
        out = capsys.readouterr().out
        assert "s3cret" not in out
        assert "postgresql://app:***@db:5432/x" in out


def test_patterns_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["patterns", "--format", "json"]) == 0
    patterns = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert patterns["claim-check"]["slots"]["objects"]["needs"] == "objects"
    assert "claim_check" in patterns["claim-check"]["suites"]


def test_validate_and_explain_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = str(EXAMPLES[0]), write(tmp_path, "bad.yaml", BROKEN)
    assert main(["validate", "--format", "json", good, bad]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [f["ok"] for f in report["files"]] == [True, False]
    assert {p["path"] for p in report["files"][1]["problems"]} >= {"namespaces[0].patterns[0].slots.messaging"}
    assert main(["explain", "--format", "json", good]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["file"] == good
    assert all(isinstance(step["pattern"], str) for ns in explained["namespaces"] for step in ns["chain"])
    assert main(["explain", "--format", "json", bad]) == 1
    assert json.loads(capsys.readouterr().out)["problems"]


def test_a_dash_reads_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(textwrap.dedent(BROKEN)))
    assert main(["validate", "-"]) == 1
    assert capsys.readouterr().out.startswith("<stdin>: namespaces[0].patterns[0].slots.messaging:")
    monkeypatch.setattr(sys, "stdin", io.StringIO(EXAMPLES[0].read_text()))
    assert main(["explain", "-"]) == 0
    assert capsys.readouterr().out.startswith("namespace ")


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "prism_testkit", "patterns"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as command:
        assert command.stdout is not None
        assert command.stderr is not None
        command.stdout.close()  # before the command has written anything (it takes a while to start)
        errors = command.stderr.read().decode()
        code = command.wait(timeout=60)
    assert (code, errors) == (0, "")


def test_a_file_name_that_is_not_utf8_is_printed_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = str(tmp_path / b"caf\xe9.yaml".decode("utf-8", "surrogateescape"))  # as argv brings it
    Path(name).write_text("namespaces: []\n")
    assert main(["validate", name]) == 1
    assert "caf\\udce9.yaml: namespaces:" in capsys.readouterr().out


# --- fuzz: every command with generated input (issue 23 §2) -------------------------------

CLI_EXIT_CODES = {0, 1, 2}  # documented in docs/namespaces.md ("Exit codes")
COMMANDS = [
    ["validate"],
    ["explain"],
    ["schema"],
    ["patterns"],
    ["backends"],
    ["report", "merge"],
    ["report", "versions"],
    ["report", "html"],
    ["report"],
    [],
]
FLAGS = ["--format", "json", "text", "--json", "--markdown", "--title", "--version", "-h", "-", "--", "-x", "-o"]
NASTY = st.one_of(
    st.sampled_from(FLAGS),
    st.text(max_size=30),  # unicode
    st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape")),  # argv as undecodable bytes
    st.sampled_from(["", " ", "x" * 5000, "[" * 2000, "{a: " * 500, "\x00", "\n", "ns.yaml", "report.json"]),
)
FILE_TEXT = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
        max_leaves=20,
    ).map(lambda value: json.dumps({"namespaces": value})),
    st.integers(1, 3000).map(lambda depth: "namespaces: " + "[" * depth + "]" * depth),
    st.integers(1, 3000).map(lambda depth: json.dumps({"suites": []})[:-1] + "[" * depth + "]" * depth + "}"),
)


def _inside(token: str) -> str:
    """A generated argument kept inside the example's folder: output options write to it."""
    return token.lstrip("/").replace("..", "__")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=st.sampled_from(COMMANDS), args=st.lists(NASTY, max_size=5), text=FILE_TEXT, stdin=FILE_TEXT)
def test_every_command_with_generated_input_exits_with_a_documented_code_and_no_traceback(
    command: list[str],
    args: list[str],
    text: str,
    stdin: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        monkeypatch.chdir(folder)
        for name in ("ns.yaml", "report.json"):  # generated content behind the names generated args use
            Path(name).write_text(text, encoding="utf-8", errors="surrogateescape")
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main([*command, *map(_inside, args)])
        out, err = capsys.readouterr()
    assert code in CLI_EXIT_CODES
    assert "Traceback" not in out + err
    if code == 2 and command[:1] != ["report"]:  # report merge explains itself (file: reason)
        assert err.strip(), "a usage error says why"


def test_report_merge_reads_a_report_from_standard_input() -> None:
    from tests.test_report_merge import report, row

    done = subprocess.run(
        [sys.executable, "-m", "prism_testkit", "report", "merge", "-", "--json", "-"],
        input=json.dumps(report(row("keyvalue", 24))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["totals"]["passed"] == 24


def test_backends_takes_a_chosen_binary_and_reports_its_version(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PRISM_NATS_BINARY", raising=False)
    server = tmp_path / "nats-server"
    server.write_text('#!/bin/sh\necho "nats-server: v2.12.1"\n')
    server.chmod(0o755)
    assert main(["backends", "--prism-binary", f"nats={server}"]) == 0
    out = capsys.readouterr().out
    for name in ("nats", "jetstream", "jetstream-r3", "jetstream-r3-lazy-sync", "jetstream-r5"):
        after = out.split(f"\n{name} [plugin nats]\n", 1)[1].splitlines()
        block = after[: next(i for i, line in enumerate(after) if not line.startswith(" "))]
        assert f"  binary: {server} (nats-server 2.12.1; chosen by --prism-binary nats)" in block, block
    assert main(["backends", "--format", "json", "--prism-binary", f"nats={server}"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["jetstream-r3"]["binary"] == {
        "path": str(server),
        "version": "nats-server 2.12.1",
        "chosen_by": "chosen by --prism-binary nats",
    }
    assert rows["memstore"]["binary"] is None  # embedded: no server binary


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nats=/no/such/nats-server", "prism-testkit: error: --prism-binary nats: /no/such/nats-server does not exist"),
        ("mysql=/bin/sh", "prism-testkit: error: --prism-binary mysql=...: no backend starts a server named 'mysql'"),
        ("nats", "prism-testkit: error: --prism-binary: nats takes NAME=PATH"),
    ],
)
def test_backends_refuses_a_binary_it_cannot_use(capsys: pytest.CaptureFixture[str], given: str, message: str) -> None:
    assert main(["backends", "--prism-binary", given]) == 2
    assert capsys.readouterr().err.startswith(message)
