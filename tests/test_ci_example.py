"""The GitHub Actions example's commands, run as its jobs would run them.

The per-backend step (id ``suites``) runs once per backend and shard of a three-backend matrix
(three shards each, ``--prism-shard``), the merge step (id ``matrix``) merges their reports; the
merged totals, rows and compliance matrix must equal those of one run over all three backends,
and every test of that run be in exactly one shard. The suites are single-slot ones, whose combinations are
the same whether backends run in one job or in several.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from prism_testkit.report.matrix import compliance_matrix
from prism_testkit.report.merge import row_key, totals
from prism_testkit.report.shape import parse

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
DOCS = ROOT / "docs" / "reports.md"
BACKENDS = ["memstore", "sqlite", "localfs"]
SHARDS = [1, 2, 3]
SUITES = " ".join(
    f"prism_testkit.suites.test_contract_{name}" for name in ("keyvalue", "log", "objects", "capabilities")
)


def step(workflow: dict[str, Any], job: str, step_id: str) -> str:
    found = [s for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id]
    assert len(found) == 1, f"job {job} has no step with id {step_id}"
    command: str = found[0]["run"]
    return command


def run_step(
    command: str, cwd: Path, env: dict[str, str], backend: str | None = None, shard: int = 1
) -> subprocess.CompletedProcess[str]:
    if backend is not None:
        command = command.replace("${{ matrix.backend }}", backend).replace("${{ matrix.shard }}", str(shard))
    assert "${{" not in command, f"an expression this test does not provide: {command}"
    # GitHub runs `run:` steps with `bash -e`.
    return subprocess.run(["bash", "-e", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_example_workflow_merges_per_backend_jobs_into_the_single_run(tmp_path: Path) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    matrix = workflow["jobs"]["suites"]["strategy"]["matrix"]
    assert set(BACKENDS) <= set(matrix["backend"])
    assert matrix["shard"] == SHARDS
    summary = tmp_path / "step-summary.md"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's pytest / CLI
        PRISM_SUITES=SUITES,
        GITHUB_STEP_SUMMARY=str(summary),
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    for backend in BACKENDS:
        for shard in SHARDS:
            job = run_step(step(workflow, "suites", "suites"), tmp_path, env, backend, shard)
            assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-2000:]
            job_lines = job.stdout.splitlines()
            assert f"prism-testkit shard {shard} of 3: " in "\n".join(job_lines), job.stdout[-2000:]
    merged_step = run_step(step(workflow, "merge", "matrix"), tmp_path, env)
    assert merged_step.returncode == 0, merged_step.stderr

    single_dir = tmp_path / "single"
    single_dir.mkdir()
    single_run = [sys.executable, "-m", "pytest", "--pyargs", *SUITES.split(), "-p", "no:cacheprovider"]
    one_run = subprocess.run(
        [*single_run, f"--prism-backend={','.join(BACKENDS)}", "--prism-report=single.json"],
        cwd=single_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one_run.returncode == 0, one_run.stdout[-3000:]

    single = json.loads((single_dir / "single.json").read_text())
    merged = json.loads((tmp_path / "compliance.json").read_text())
    assert merged["totals"] == totals(parse(single)).dump()
    assert merged["totals"]["passed"] > 50  # the suites ran
    assert sorted(map(row_key, parse(merged).suites)) == sorted(map(row_key, parse(single).suites))
    assert merged["matrix"] == compliance_matrix(parse(single)).dump()
    assert merged["not_applicable"] == single["not_applicable"]
    assert sorted(merged["merged_from"]) == sorted(f"reports/{b}-{k}.json" for b in BACKENDS for k in SHARDS)
    assert len(merged["shards"]) == len(BACKENDS) * len(SHARDS)
    # every test of a backend's job in exactly one of its shards, and the jobs' tests the one run's
    # (a plain test of a suite module runs in every backend's job)
    ran: set[str] = set()
    for backend in BACKENDS:
        shards = [ran_tests(tmp_path / "reports" / f"{backend}-{k}.json") for k in SHARDS]
        assert all(shards), f"a shard of {backend} ran nothing"
        assert sum(map(len, shards)) == len(set().union(*shards)), f"shards of {backend} overlap"
        ran |= set().union(*shards)
    assert sorted(ran) == sorted(ran_tests(single_dir / "single.json"))

    text = summary.read_text()
    assert "| suite | localfs | memstore | sqlite |" in text
    assert f"**{totals(parse(single)).passed} passed, 0 failed, 0 skipped**" in text
    assert "| objects | ✅ " in text  # localfs (the first column) ran the object store suite
    assert "| keyvalue | — | ✅ " in text  # localfs has no key-value store: not run there

    for shard in SHARDS:
        junit_matches_report(
            tmp_path / "reports" / f"memstore-{shard}.xml", tmp_path / "reports" / f"memstore-{shard}.json"
        )


def ran_tests(path: Path) -> list[str]:
    """The tests of a report's rows and outside the suites, by identity (a node id is a path from
    where pytest ran, which differs between an installed job and a checkout); not the tests of
    modules nothing selected fits, which a job of one backend has and a run over all three does not."""
    report = json.loads(path.read_text())
    sections = [*report["suites"], report.get("outside_suites") or {}]
    return [entry["identity"] for section in sections for entry in section.get("tests", {}).values()]


def junit_matches_report(xml_path: Path, json_path: Path) -> None:
    """Every JUnit testcase names its suite and combination, and they count as the report does."""
    per_suite: dict[str, int] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if not properties:
            continue  # a plain test in a suite module (not parametrised over backends)
        assert properties.get("prism_combination") == "backend=memstore", (case.get("name"), properties)
        assert properties.get("prism_slot_backend") == "memstore"
        suite = properties["prism_suite"]
        assert suite is not None
        per_suite[suite] = per_suite.get(suite, 0) + 1
    report = json.loads(json_path.read_text())
    assert per_suite == {row["suite"]: row["passed"] + row["failed"] + row["skipped"] for row in report["suites"]}


def test_the_per_backend_step_lists_unfitting_suites_where_the_settings_require_fit(tmp_path: Path) -> None:
    # Run from a checkout whose pytest settings ask every suite to fit (this repository's do), a
    # job of one backend must still list the suites it cannot fit as not applicable, not error
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\nprism_require_fit = true\n")
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PRISM_SUITES="prism_testkit.suites.test_contract_keyvalue prism_testkit.suites.test_contract_objects",
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    job = run_step(step(workflow, "suites", "suites"), tmp_path, env, "localfs")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-2000:]
    assert " error" not in job.stdout.splitlines()[-1], job.stdout[-1000:]
    assert "passed" in job.stdout.splitlines()[-1], "the suite localfs fits ran"


def pytest_options(command: str) -> set[str]:
    """The options of a command's pytest line: ``--name`` without its value (a job's backend and
    shard differ), ``-o`` and ``-p`` with theirs (the setting is the point)."""
    [line] = [line for line in command.splitlines() if line.startswith("pytest ")]
    words = shlex.split(re.sub(r"\$\{\{.*?\}\}", "X", line))  # a workflow expression, one word
    found = {word.partition("=")[0] for word in words if word.startswith("--")}
    return found | {f"{word} {value}" for word, value in itertools.pairwise(words) if word in ("-o", "-p")}


def test_the_docs_ci_snippet_runs_a_job_as_the_example_does() -> None:
    """docs/reports.md's CI snippet is what readers copy: its pytest line must be the example
    step's, or a copy run from a checkout ends in errors for the suites its backend cannot fit
    (the repository's prism_require_fit) and runs unsharded where the merge expects shards."""
    section = DOCS.read_text().partition("## CI matrices")[2]
    snippet = section.partition("```bash\n")[2].partition("```")[0]
    documented = pytest_options(snippet)
    assert "-o prism_require_fit=false" in documented, snippet
    assert "--prism-shard" in documented, snippet
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert documented == pytest_options(step(workflow, "suites", "suites"))
