"""Which test files a change touches (``benchmarks/touched.py``, the census's ``--changed-since``):
on hand-written sources, then on a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.touched import changed_mutants, changed_since, imported_names, module_of, touched

MODULES = {
    "prism_testkit",
    "prism_testkit.patience",
    "prism_testkit.patterns",
    "prism_testkit.patterns.outbox",
    "prism_testkit.patterns.outbox.relay",
    "prism_testkit.patterns.outbox.sink",
    "prism_testkit.suites",
    "prism_testkit.suites._machine",
    "prism_testkit.suites._faults",
    "prism_testkit.suites.test_a",
    "prism_testkit.suites.test_b",
    "prism_testkit.suites.test_c",
    "tests.test_unit",
}
SOURCES = {
    # test_a reaches the relay through two helpers: _machine imports _faults, which imports it
    "prism_testkit/suites/_faults.py": "from prism_testkit.patterns.outbox import relay\n",
    "prism_testkit/suites/_machine.py": "from . import _faults\n",
    "prism_testkit/suites/test_a.py": "from ._machine import Machine\n",
    # test_b imports the package that holds the relay and the sink
    "prism_testkit/suites/test_b.py": "import prism_testkit.patterns.outbox as outbox\n",
    # test_c imports only a name of the first level: it reaches nothing in particular
    "prism_testkit/suites/test_c.py": "from prism_testkit import patience\nimport prism_testkit\n",
    "tests/test_unit.py": "from prism_testkit.patterns.outbox.sink import Sink\n",
}


def test_a_module_is_named_by_its_path() -> None:
    assert module_of("prism_testkit/patterns/outbox/__init__.py") == "prism_testkit.patterns.outbox"
    assert module_of("tests/test_unit.py") == "tests.test_unit"
    assert module_of("docs/running.md") is None


def test_imports_name_modules_where_they_are_modules_and_resolve_relative_ones() -> None:
    names = imported_names(
        "from . import _faults, missing\nfrom ..patterns.outbox import relay, Relay\nimport a.b\n",
        "prism_testkit.suites._machine",
        MODULES,
    )
    assert names == {
        "prism_testkit.suites._faults",  # a module
        "prism_testkit.suites",  # `missing` is a name in the package, not a module
        "prism_testkit.patterns.outbox.relay",
        "prism_testkit.patterns.outbox",  # `Relay` is a name in the package
        "a.b",
    }


def test_a_change_reaches_a_test_through_every_helper_between_them() -> None:
    found = touched(["prism_testkit/patterns/outbox/relay.py"], SOURCES, MODULES)
    assert list(found) == ["prism_testkit/suites/test_a.py", "prism_testkit/suites/test_b.py"]
    assert found["prism_testkit/suites/test_a.py"] == (
        "imports prism_testkit.patterns.outbox.relay through prism_testkit.suites._faults"
    )
    assert found["prism_testkit/suites/test_b.py"] == (
        "imports prism_testkit.patterns.outbox (holding prism_testkit.patterns.outbox.relay)"
    )


def test_two_changes_touch_the_union_of_their_tests_and_an_edited_test_says_so() -> None:
    found = touched(
        ["prism_testkit/patterns/outbox/sink.py", "prism_testkit/suites/test_c.py", "docs/x.md"], SOURCES, MODULES
    )
    holding = "imports prism_testkit.patterns.outbox (holding prism_testkit.patterns.outbox.sink)"
    assert found == {
        "prism_testkit/suites/test_b.py": holding,
        "prism_testkit/suites/test_c.py": "edited",
        "tests/test_unit.py": "imports prism_testkit.patterns.outbox.sink",
    }


def test_a_package_of_the_first_level_names_nothing_in_particular() -> None:
    assert "prism_testkit/suites/test_c.py" not in touched(["prism_testkit/patterns/outbox/sink.py"], SOURCES, MODULES)
    # but a change to what it names itself touches it
    assert touched(["prism_testkit/patience.py"], SOURCES, MODULES) == {
        "prism_testkit/suites/test_c.py": "imports prism_testkit.patience"
    }


def test_a_change_no_test_imports_touches_nothing() -> None:
    assert touched(["prism_testkit/report/html.py", "README.md"], SOURCES, MODULES) == {}


def test_changed_mutants_are_named_for_their_proofs() -> None:
    assert changed_mutants(["tests/mutants/b_bug.py", "tests/test_unit.py", "tests/mutants/a_bug.py"]) == [
        "a_bug",
        "b_bug",
    ]


def test_changed_since_counts_commits_staged_unstaged_and_new_files(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    for name in ("committed.py", "staged.py", "unstaged.py", "untouched.py"):
        (tmp_path / name).write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "base")
    (tmp_path / "committed.py").write_text("x = 2\n")
    git("commit", "-qam", "second")
    (tmp_path / "staged.py").write_text("x = 2\n")
    git("add", "staged.py")
    (tmp_path / "unstaged.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("x = 1\n")
    assert changed_since("HEAD~1", tmp_path) == ["committed.py", "new.py", "staged.py", "unstaged.py"]
    with pytest.raises(ValueError, match="no-such-revision"):
        changed_since("no-such-revision", tmp_path)
