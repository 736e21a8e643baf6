"""The benchmark's ``--sections`` argument (benchmarks.run): parsed only, nothing measured."""

from __future__ import annotations

import pytest

from benchmarks import floor, run


def test_an_unknown_section_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run.argument_parser().parse_args(["--sections", "operations,operatons"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "unknown section operatons" in error
    assert "claim_check" in error  # the choices are named


def test_sections_are_read_from_the_table() -> None:
    parse = run.argument_parser().parse_args
    assert parse([]).sections == set(run.SECTIONS)
    assert parse(["--sections", "all"]).sections == set(run.SECTIONS)
    assert parse(["--sections", " outbox, claim_check ,"]).sections == {"outbox", "claim_check"}
    assert list(run.SECTIONS)[-1] == "failover"  # each failover trial moves the primary


def test_the_help_names_every_section() -> None:
    help_text = " ".join(run.argument_parser().format_help().split())
    for name in run.SECTIONS:
        assert name in help_text


def test_an_interrupt_while_the_floors_are_measured_closes_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []

    class Runtime:
        def __init__(self, *args: object) -> None:
            self.unavailable: dict[str, str] = {}

        def close(self) -> None:
            closed.append(True)

    def interrupted() -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "PrismRuntime", Runtime)
    monkeypatch.setattr(run, "select", lambda registry, names: [])
    monkeypatch.setattr(floor, "fsync_floor", interrupted)  # the module run measures with
    with pytest.raises(KeyboardInterrupt):
        run.main(["--prism-backend", "memstore"])
    assert closed == [True], "the runtime was left open when the fsync floor's measurement was interrupted"
