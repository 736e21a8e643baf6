"""The main job's durations ship with the package, so its first run (a fresh clone, a new
install: no cache yet) weighs each test by them: the progress line's time left, the order
xdist deals the tests in. Found by identity in every layout; read only when a test is weighed."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

from prism_testkit.cli import main
from prism_testkit.hunting.identity import OWN_SUITES, own_suite_identity
from prism_testkit.plugin.reporting import SHIPPED, Recorded
from prism_testkit.registry.shards import read_durations

ROOT = Path(__file__).resolve().parents[1]


def test_a_node_id_of_the_own_suites_names_its_identity_in_every_layout() -> None:
    rest = "test_x[backend=memstore]"
    for path in (
        "prism_testkit/suites/test_stateful_wal.py",
        ".venv/lib/python3.11/site-packages/prism_testkit/suites/test_stateful_wal.py",
        "../../usr/lib/python3/dist-packages/prism_testkit/suites/test_stateful_wal.py",
    ):
        assert own_suite_identity(f"{path}::{rest}") == f"{OWN_SUITES}.test_stateful_wal::{rest}"
    for other in (
        "tests/test_progress.py::test_x",
        "prism_testkit/suites/test_stateful_wal.py",  # a module, not a test
        "suites/test_stateful_wal.py::test_x",  # somebody else's suites folder
        "prism_testkit/suites/helpers/test_y.py::test_x",
    ):
        assert own_suite_identity(other) is None


def test_recorded_seconds_are_found_by_node_id_or_by_identity() -> None:
    recorded = Recorded({f"{OWN_SUITES}.test_a::t[1]": 4.0, "tests/test_b.py::u": 2.0})
    assert recorded[".venv/lib/python3.11/site-packages/prism_testkit/suites/test_a.py::t[1]"] == 4.0
    assert recorded.get("prism_testkit/suites/test_a.py::t[1]") == 4.0
    assert recorded["tests/test_b.py::u"] == 2.0
    assert "prism_testkit/suites/test_a.py::t[2]" not in recorded
    assert "elsewhere/tests/test_b.py::u" not in recorded  # only the own suites have a layout-free name
    assert sorted(recorded.values()) == [2.0, 4.0]


def test_a_file_is_read_on_first_use_and_a_damaged_one_weighs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.json.gz"
    lazy = Recorded(path=path)  # not there yet: nothing is read here
    path.write_bytes(gzip.compress(json.dumps({f"{OWN_SUITES}.test_a::t": 3.0}).encode()))
    assert lazy["prism_testkit/suites/test_a.py::t"] == 3.0
    damaged = tmp_path / "damaged.json.gz"
    damaged.write_bytes(b"not gzip")
    assert len(Recorded(path=damaged)) == 0
    assert len(Recorded(path=tmp_path / "missing.json.gz")) == 0


def defined_tests(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_the_shipped_file_is_the_own_suites_by_identity_and_still_names_them() -> None:
    """Refresh it when this fails: `prism-testkit report durations REPORT --by-identity -o
    prism_testkit/suites/durations.json.gz`, REPORT a main job's --prism-report."""
    assert SHIPPED == ROOT / "prism_testkit" / "suites" / "durations.json.gz"
    shipped = read_durations(SHIPPED)
    assert len(shipped) > 5000
    suites = ROOT / "prism_testkit" / "suites"
    defined = {path.stem: defined_tests(path) for path in suites.glob("test_*.py")}
    stale = []
    for identity in shipped:
        module, _, rest = identity.partition("::")
        assert module.startswith(f"{OWN_SUITES}.test_"), identity
        function = rest.split("[", 1)[0].split("::")[-1]
        if function not in defined.get(module.removeprefix(f"{OWN_SUITES}."), set()):
            stale.append(identity)
    assert len(stale) <= len(shipped) // 20, f"{len(stale)} tests the suites no longer define, e.g. {stale[:3]}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"suites/durations.json.gz"' in pyproject  # shipped in the wheel, not only in a checkout


def test_report_durations_by_identity_keys_by_identity_and_leaves_out_errors(tmp_path: Path) -> None:
    report = json.loads((Path(__file__).parent / "fixtures/reports/run-every-section.v1.json").read_text())
    (first, one), (_, other) = [entry for row in report["suites"] for entry in row["tests"].items()][:2]
    one.update(identity=f"{OWN_SUITES}.test_a::t[1]", outcome="passed", duration_s=12.345)
    other.update(identity=f"{OWN_SUITES}.test_a::t[2]", outcome="error", duration_s=0.01)
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert main(["report", "durations", str(tmp_path / "r.json"), "--by-identity", "-o", str(tmp_path / "d.gz")]) == 0
    written = read_durations(tmp_path / "d.gz")
    assert written[f"{OWN_SUITES}.test_a::t[1]"] == 12.35
    assert f"{OWN_SUITES}.test_a::t[2]" not in written  # a setup that failed says nothing of the test
    assert first not in written


def test_a_run_that_writes_no_progress_line_never_reads_the_file(tmp_path: Path) -> None:
    """Hundreds of a project's pytester runs end before their first line: none pays for the read."""
    from prism_testkit.report.progress import Progress

    path = tmp_path / "never.json.gz"
    progress = Progress(tmp_path, recorded=Recorded(path=path), workers=2)
    progress.collected({"prism_testkit/suites/test_a.py::t": "a", "prism_testkit/suites/test_a.py::u": "a"})
    progress.started("prism_testkit/suites/test_a.py::t", 0.0)
    progress.spend("a", 1.0, "prism_testkit/suites/test_a.py::t")
    progress.finished("a", "prism_testkit/suites/test_a.py::t")
    path.write_bytes(gzip.compress(json.dumps({f"{OWN_SUITES}.test_a::u": 7.0}).encode()))
    assert progress.left(1.0) == 7.0  # read at the first estimate, not before
