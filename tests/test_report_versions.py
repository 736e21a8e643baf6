"""``prism-testkit report versions`` and ``scripts/version-matrix``: runs of one suite on several
server versions become a known finding x version table, so a user can tell which releases carry
which bug (issue 54)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prism_testkit.cli import main
from prism_testkit.findings import KNOWN, KnownFinding
from prism_testkit.report.merge import ReportMergeError, read_report
from prism_testkit.report.shape import Report
from prism_testkit.report.versions import cell_text, red, render_versions_markdown, version_table

ROOT = Path(__file__).resolve().parent.parent
BUG = "nats-server#7549"


def judged(test: str, verdict: str, lost: int, version: str | None = "2.12.1", /, **extra: Any) -> dict[str, Any]:
    finding = None if extra.get("scenario") == "restarted-leader" else BUG
    return {
        "test": test,
        "scenario": "damaged-leader",
        "backend": "jetstream-r3",
        "version": version,
        "finding": finding,
        "verdict": verdict,
        "lost": lost,
        "acknowledged": 7701,
        **extra,
    }


def report(*entries: dict[str, Any], server_version: str | None = None, **extra: Any) -> dict[str, Any]:
    """A --prism-report as a run writes it, cut to what the table reads."""
    return {
        "suites": [{"suite": "damaged_leader", "combination": {"backend": "jetstream-r3"}, "passed": 1}],
        "backends": [{"backend": "jetstream-r3", "provisioned": "binary", "server_version": server_version}],
        **({"judged": list(entries)} if entries else {}),
        **extra,
    }


@pytest.fixture(autouse=True)
def only_the_damaged_leader_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry grows (a finding whose backend ran but whose scenario did not is a row of
    its own): these tables are about #7549 alone."""
    for other in [finding for finding in KNOWN if finding != BUG]:
        monkeypatch.delitem(KNOWN, other)


def loaded(name: str, data: dict[str, Any]) -> Report:
    return read_report(data, name)


OLD = loaded(
    "old.json",
    report(
        judged("t::bitflip", "known", 7020),
        judged("t::truncate", "known", 4875),
        judged("t::restarted", "held", 0, scenario="restarted-leader"),
    ),
)


def test_each_version_is_a_column_and_each_finding_a_row() -> None:
    new = loaded("new.json", report(judged("t::bitflip", "known", 7220, "2.15.1")))
    table = version_table([new, OLD])
    assert table.versions == ["2.12.1", "2.15.1"], "in release order, whatever the files' order"
    bug, control = table.rows
    assert (bug.finding, bug.scenario, bug.backend) == (BUG, "damaged-leader", "jetstream-r3")
    assert cell_text(bug.cells["2.12.1"]) == "🐞 2 of 2 reproduced: lost 7,020 of 7,701, 4,875 of 7,701"
    assert cell_text(bug.cells["2.15.1"]) == "🐞 1 of 1 reproduced: lost 7,220 of 7,701"
    assert (control.finding, control.scenario) == (None, "restarted-leader"), "a control is a row too"
    assert cell_text(control.cells["2.12.1"]) == "✅ 1 of 1 held (7,701 acknowledged)"
    assert cell_text(control.cells["2.15.1"]) == "—", "not run on that version"
    assert not red(table)
    text = render_versions_markdown(table)
    assert "| finding | scenario | backend | 2.12.1 | 2.15.1 |" in text
    assert f"| [{BUG}](https://github.com/nats-io/nats-server/issues/7549) | damaged-leader | jetstream-r3 | 🐞" in text
    assert "- `old.json`: 3 judged tests on 2.12.1;" in text


def test_versions_sort_as_numbers_and_an_unknown_one_comes_last() -> None:
    runs = [
        loaded(f"{version}.json", report(judged("t::bitflip", "known", 1, version)))
        for version in ("2.15.1", None, "2.9.10", "2.12.1")
    ]
    assert version_table(runs).versions == ["2.9.10", "2.12.1", "2.15.1", "unknown"]


def test_a_verdict_without_a_version_takes_the_one_the_reports_backends_name() -> None:
    run = loaded("r.json", report(judged("t::bitflip", "known", 1, None), server_version="2.12.1"))
    assert version_table([run]).versions == ["2.12.1"]


def test_a_loss_no_finding_covers_and_a_finding_that_stopped_reproducing_are_red() -> None:
    fixed = loaded("fixed.json", report(judged("t::bitflip", "no longer reproduces", 0, "2.16.0")))
    back = loaded("back.json", report(judged("t::bitflip", "lost", 12, "2.17.0")))
    table = version_table([OLD, fixed, back])
    (bug, _control) = table.rows
    assert cell_text(bug.cells["2.16.0"]).startswith(f"✅ 1 of 1 held, ⚠️ 1 expected {BUG}: update it")
    assert cell_text(bug.cells["2.17.0"]) == "❌ 1 of 1 lost, no finding covers this version: lost 12 of 7,701"
    assert red(table)
    assert not red(version_table([OLD]))


def test_a_run_that_failed_before_a_verdict_is_red_and_said_below_the_table() -> None:
    failed = dict(
        report(judged("t::bitflip", "known", 7020, "2.15.1")),
        suites=[{"suite": "s", "combination": {"backend": "jetstream-r3"}, "failed": 1}],
    )
    table = version_table([OLD, loaded("new.json", failed)])
    (_bug, control) = table.rows
    assert cell_text(control.cells["2.15.1"]) == "—", "the control failed before it was judged"
    assert red(table)
    assert "- `new.json`: 1 judged test on 2.15.1; 0 passed, 1 failed, 0 skipped (xfails included) ❌" in (
        render_versions_markdown(table)
    )


def test_mixed_verdicts_in_one_cell_take_the_worst_mark_and_name_each() -> None:
    run = loaded("r.json", report(judged("t::bitflip", "known", 5), judged("t::truncate", "lost", 2)))
    (row,) = version_table([run]).rows
    assert cell_text(row.cells["2.12.1"]) == (
        "❌ 1 of 2 reproduced, 1 of 2 lost, no finding covers this version: lost 5 of 7,701, 2 of 7,701"
    )


def test_a_tolerated_loss_is_its_own_mark_naming_the_window_and_never_red() -> None:
    window = judged("t::cut", "tolerated", 200, scenario="restarted-leader", tolerated="lost-in-fsync-window")
    row = next(row for row in version_table([loaded("r.json", report(window))]).rows if row.finding is None)
    text = cell_text(row.cells["2.12.1"])
    assert text == "🟡 1 of 1 lost within lost-in-fsync-window (tolerated): lost 200 of 7,701"
    assert not red(version_table([loaded("r.json", report(window))]))


def test_a_scenario_that_counts_no_lost_write_says_what_it_counted() -> None:
    """The racing bucket deletes (nats-server#7798) count deletes that succeeded once too often,
    not lost writes: the cell says so in the scenario's words, reproduced or held."""
    counts = "concurrent delete_bucket calls succeeded beyond one per bucket"
    raced = {"acknowledged": 24, "counts": counts}
    old = loaded("old.json", report(judged("t::raced", "known", 18, **raced)))
    new = loaded("new.json", report(judged("t::raced", "held", 0, "2.15.1", **raced)))
    (row,) = version_table([old, new]).rows
    assert cell_text(row.cells["2.12.1"]) == f"🐞 1 of 1 reproduced: 18 of 24 {counts}"
    assert cell_text(row.cells["2.15.1"]) == f"✅ 1 of 1 held (0 of 24 {counts})"


def test_a_known_finding_of_a_backend_that_ran_but_never_judged_is_a_row_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = KnownFinding(
        **{**vars(KNOWN[BUG]), "id": "nats-server#9999", "scenario": "elsewhere", "docs": "docs/findings.md#x"}
    )
    monkeypatch.setitem(KNOWN, other.id, other)
    rows = version_table([OLD]).rows
    assert [(r.finding, r.scenario, r.backend) for r in rows][-1] == (
        "nats-server#9999",
        "elsewhere",
        "jetstream-r3",
    )
    assert cell_text(rows[-1].cells["2.12.1"]) == "—"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"suites": []}, "no test of bad.json was judged"),
        (
            report(judged("t::x", "maybe", 1)),
            "judged entry 0 is not a verdict: unknown verdict 'maybe'",
        ),
        (
            report({"test": "t::x"}),
            "judged entry 0 is not a verdict: it has no verdict, scenario, backend, lost, acknowledged",
        ),
        (report(judged="nope"), "bad.json: not a prism-testkit report: judged: Input should be a valid list"),
    ],
)
def test_reports_that_cannot_be_tabulated_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ReportMergeError, match=re.escape(message)):
        version_table([loaded("bad.json", data)])


def test_the_cli_prints_the_table_writes_json_and_refuses_a_file_that_is_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(OLD.dump()))
    out = tmp_path / "table.json"
    assert main(["report", "versions", str(old), "--json", str(out), "--markdown", "-"]) == 0
    assert "| finding | scenario | backend | 2.12.1 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["versions"] == ["2.12.1"]
    junit = tmp_path / "out.xml"
    junit.write_text("<testsuites/>")
    assert main(["report", "versions", str(old), str(junit)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"prism-testkit: error: {junit}: not a JSON report" in captured.err
    assert main(["report", "versions", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


DEMO = """
import os
from prism_testkit import PrismEnv, Slot, findings, prism_suite

pytestmark = prism_suite("demo_versions", backend=Slot.needs("keyvalue"))

def test_scenario(prism_env: PrismEnv, request) -> None:
    findings.judge(request, scenario="demo", backend="memstore", version=os.environ["DEMO_VERSION"],
                   lost=int(os.environ["DEMO_LOST"]), acknowledged=9, detail="seen", replay="pytest x")
"""


def test_a_runs_judged_tests_reach_its_report_and_two_runs_give_the_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # what a user does: the same suite on an affected release and on the release that fixed it
    demo = KnownFinding(
        **{**vars(KNOWN[BUG]), "id": "demo#1", "scenario": "demo", "backends": frozenset({"memstore"})},
    )
    monkeypatch.setitem(KNOWN, demo.id, KnownFinding(**{**vars(demo), "fixed_in": "1.1"}))
    pytester.makepyfile(test_demo=DEMO)
    for version, lost, outcome in (("1.0", "3", {"xfailed": 1}), ("1.1", "0", {"passed": 1})):
        monkeypatch.setenv("DEMO_VERSION", version)
        monkeypatch.setenv("DEMO_LOST", lost)
        result = pytester.runpytest(
            "-p", "no:cacheprovider", "--prism-backend=memstore", f"--prism-report={version}.json"
        )
        result.assert_outcomes(**outcome)
    (entry,) = json.loads((pytester.path / "1.0.json").read_text())["judged"]
    assert entry == {
        "test": "test_demo.py::test_scenario[backend=memstore]",
        "identity": "test_demo::test_scenario[backend=memstore]",
        "scenario": "demo",
        "backend": "memstore",
        "version": "1.0",
        "finding": "demo#1",
        "verdict": "known",
        "lost": 3,
        "acknowledged": 9,
    }
    merged = pytester.path / "merged.json"
    assert main(["report", "merge", str(pytester.path / "1.0.json"), "--json", str(merged)]) == 0
    assert json.loads(merged.read_text())["judged"] == [entry], "a merge of one version's shards keeps them"
    capsys.readouterr()
    reports = [str(pytester.path / name) for name in ("1.1.json", "1.0.json")]
    assert main(["report", "versions", *reports]) == 0
    table = capsys.readouterr().out
    row = "| demo | memstore | 🐞 1 of 1 reproduced: lost 3 of 9 | ✅ 1 of 1 held (9 acknowledged) |"
    assert f"| [demo#1]({demo.upstream}) {row}" in table


STUB_PYTHON = """#!/bin/sh
# stands in for python: `-m pytest ... --prism-binary nats=PATH --prism-report FILE` writes a
# report whose verdict's version is PATH's name; anything else goes to the real interpreter
if [ "$2" = pytest ]; then
  echo "$@" >> "$(dirname "$0")/calls"
  while [ $# -gt 0 ]; do
    case "$1" in
      --prism-binary) version="$(basename "${2#*=}")" ;;
      --prism-report) report="$2" ;;
    esac
    shift
  done
  [ "$version" = broken ] && exit 4
  printf '%s' '{"suites": [], "judged": [{"test": "t::x", "scenario": "damaged-leader", "backend": "jetstream-r3",
    "finding": "nats-server#7549", "verdict": "known", "lost": 2, "acknowledged": 9, "version": "'"$version"'"}]}' \\
    > "$report"
  exit 1
fi
exec "$REAL_PYTHON" "$@"
"""


def test_the_script_runs_pytest_once_per_binary_and_prints_the_table(tmp_path: Path) -> None:
    stub = tmp_path / "python"
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    binaries = []
    for version in ("2.15.1", "2.12.1"):
        binary = tmp_path / "bin" / version
        binary.parent.mkdir(exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        binaries.append(f"nats={binary}")
    env = {**os.environ, "PYTHON": str(stub), "REAL_PYTHON": sys.executable}
    script = str(ROOT / "scripts" / "version-matrix")
    out = tmp_path / "out"
    args = [script, "--out", str(out), *binaries, "--", "prism_testkit/suites/x.py", "-k", "a b"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        f"-m pytest prism_testkit/suites/x.py -k a b --prism-binary {binaries[0]} --prism-report {out}/1.json",
        f"-m pytest prism_testkit/suites/x.py -k a b --prism-binary {binaries[1]} --prism-report {out}/2.json",
    ], "a red run (exit 1) does not stop the next"
    assert "| 🐞 1 of 1 reproduced: lost 2 of 9 | 🐞 1 of 1 reproduced: lost 2 of 9 |" in done.stdout
    assert "| finding | scenario | backend | 2.12.1 | 2.15.1 |" in (out / "versions.md").read_text()

    broken = tmp_path / "bin" / "broken"
    broken.write_text("#!/bin/sh\n")
    broken.chmod(0o755)
    args = [script, "--out", str(out), f"nats={broken}", "--", "prism_testkit/suites/x.py"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "ended with exit code 4 and wrote no report" in done.stderr
    done = subprocess.run(
        [script, "nats=/nonexistent", "--", "x"], env=env, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "version-matrix: nats=/nonexistent: /nonexistent is not an executable file",
    )
