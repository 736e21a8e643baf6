"""The project's runs of the shipped suites collect only the modules of the suites they name,
and share Hypothesis's caches across sandboxes (tests/_suite_runs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import _suite_runs
from tests._suite_runs import declared_suites, only_the_modules_of, share_hypothesis_caches, suites_folder


def test_every_suite_declaration_names_its_suite_where_the_module_list_reads_it() -> None:
    # A declaration the list cannot read would leave its module out of every run that names it.
    for path in sorted(suites_folder().glob("test_*.py")):
        source = path.read_text()
        calls = len(re.findall(r"\bprism_suite\(", source))
        assert calls == len(_suite_runs._DECLARED.findall(source)), path.name


def test_a_run_keeps_exactly_the_modules_that_declare_its_suites() -> None:
    ignored = {Path(arg.removeprefix("--ignore=")) for arg in only_the_modules_of("restart,power_loss")}
    kept = set(declared_suites()) - ignored
    assert {path.name for path in kept} == {"test_contract_restart.py", "test_contract_power_loss.py"}
    assert all(arg.startswith("--ignore=") for arg in only_the_modules_of("wal"))
    failover = {Path(arg.removeprefix("--ignore=")).name for arg in only_the_modules_of("failover")}
    assert {"test_contract_failover.py", "test_contract_failover_uneven.py"}.isdisjoint(failover)


def test_a_suite_no_module_declares_is_refused() -> None:
    with pytest.raises(AssertionError, match="no suite module declares"):
        only_the_modules_of("wal,no_such_suite")


def test_a_sandbox_links_the_machine_caches_and_keeps_its_own_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = tmp_path / "machine"
    for name in _suite_runs.SHARED_CACHES:
        (machine / name).mkdir(parents=True)
    monkeypatch.setattr(_suite_runs, "shared_hypothesis_caches", lambda: machine)
    storage = tmp_path / "sandbox" / ".hypothesis"
    (storage / "constants").mkdir(parents=True)  # one of its own already: left as it is
    share_hypothesis_caches(storage)
    assert not (storage / "constants").is_symlink()
    assert (storage / "unicode_data").resolve() == machine / "unicode_data"
    assert not (storage / "examples").exists()
    share_hypothesis_caches(storage)  # again: nothing changes
    assert (storage / "unicode_data").resolve() == machine / "unicode_data"
