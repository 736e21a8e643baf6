"""A cluster row's settle times after each fault: kept by the cluster (each settle wait), taken
per fault by the nemesis (:attr:`Nemesis.settles`), counted over a test's examples
(:class:`~prism_testkit.stateful.latency.Settles`), carried in the JSON report as a test entry's
``settles`` and shown per row in the HTML report (a table, and a plot with matplotlib).

A real cluster row (``jetstream-r3``) end to end: ``tests/test_report_settles_cluster.py``."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from prism_testkit.cli import main
from prism_testkit.provision.cluster import Cluster, FailoverCluster
from prism_testkit.report import plots
from prism_testkit.report.html import render_html
from prism_testkit.report.results import PrismResults
from prism_testkit.report.shape import Report
from prism_testkit.stateful.history import History
from prism_testkit.stateful.latency import MOST_SETTLES, SETTLES, Settles
from prism_testkit.stateful.nemesis import FaultTarget, Nemesis
from tests.test_report_html import Planned, latency, record, run_of, without_provenance


def cluster(settled: Any = lambda: True) -> Cluster:
    return Cluster([], cast(Any, SimpleNamespace(cuts=set())), probe_port=0, settled=settled)


def test_a_cluster_keeps_how_long_each_settle_wait_took() -> None:
    polls = iter([False, False, True, True])
    found = cluster(lambda: next(polls))
    found.wait_settled()
    found.wait_settled()
    assert len(found.settle_seconds) == 2
    assert found.settle_seconds[0] >= 0.1  # two polls that said no, 0.05 s apart
    assert found.settle_seconds[1] >= 0.0


def nemesis_on(target_cluster: Any, backend: str = "jetstream-r3") -> tuple[Nemesis, FaultTarget]:
    nemesis = Nemesis.__new__(Nemesis)
    nemesis.env = cast(Any, SimpleNamespace(faults=Counter()))
    nemesis.history = History()
    nemesis.run_on_loop = asyncio.run
    nemesis.settles = []
    nemesis.faulted = False
    target = FaultTarget("log", backend, None, True, True, None, cluster=target_cluster)
    nemesis.targets = {"log": target}
    return nemesis, target


def test_each_fault_the_harness_waited_on_keeps_its_kind_and_settle_time() -> None:
    nodes = cluster()
    nemesis, target = nemesis_on(nodes)

    def restart_a_node() -> None:
        nodes.settle_seconds += [0.75, 0.5]  # two settle waits within one fault's heal

    nemesis.inject("kill-leader", target, restart_a_node)
    nemesis.inject("partition-isolate-node", target, lambda: None)  # no wait: no settle
    nemesis.inject("kill-node", target, lambda: nodes.settle_seconds.append(0.25))
    assert nemesis.settles == [("kill-leader", "jetstream-r3", 1.25), ("kill-node", "jetstream-r3", 0.25)]


def test_a_failovers_settle_counts_its_promotion_and_the_old_primarys_return() -> None:
    nodes = FailoverCluster([], cast(Any, SimpleNamespace(cuts=set())), probe_port=0)
    nodes.setup_failover()
    nemesis, target = nemesis_on(nodes, "postgres-ha")

    def fail_over() -> None:
        nodes.failover_seconds.append(2.0)  # until clients found the new primary
        nodes.settle_seconds.append(0.5)  # the old primary back as a replica

    nemesis.inject("failover", target, fail_over)
    assert nemesis.settles == [("failover", "postgres-ha", 2.5)]


def test_the_end_of_example_heal_is_a_settle_after_what_was_left_open_and_only_after_a_fault() -> None:
    nodes = cluster()
    nemesis, _ = nemesis_on(nodes)
    nemesis.paused = set()
    restored = SimpleNamespace(heal=lambda names: nodes.settle_seconds.append(1.5))
    nemesis.env = cast(Any, SimpleNamespace(faults=Counter(), runtime=restored))
    nemesis.heal_everything()  # nothing struck: the restore's wait is no settle after a fault
    assert nemesis.settles == []
    nemesis.faulted = True
    nemesis.heal_everything()
    assert nemesis.settles == [("heal", "jetstream-r3", 1.5)]


def test_a_cluster_of_its_own_contract_without_settle_waits_records_none() -> None:
    nemesis, target = nemesis_on(SimpleNamespace(network=SimpleNamespace(cuts=set())))
    nemesis.inject("kill-node", target, lambda: None)
    assert nemesis.settles == []


def test_settles_are_counted_exactly_per_kind_and_sampled_for_the_plot() -> None:
    settles = Settles()
    assert not settles
    for n in range(5 * MOST_SETTLES):
        settles.add("kill-node" if n % 2 else "heal", "jetstream-r3", 0.5 if n % 2 else 0.25)
    settles.add("failover", "postgres-ha", 3.0)
    found = settles.as_property()
    assert found["kinds"] == {
        "failover": {"count": 1, "total_s": 3.0, "max_s": 3.0},
        "heal": {"count": 750, "total_s": 187.5, "max_s": 0.25},
        "kill-node": {"count": 750, "total_s": 375.0, "max_s": 0.5},
    }
    assert len(found["samples"]) <= MOST_SETTLES
    assert {sample[0] for sample in found["samples"]} >= {"heal", "kill-node"}


def cluster_tests() -> list[Planned]:
    """A cluster row whose two stateful tests settled after their faults, and a single-server
    row without any."""
    wal = "prism_testkit/suites/test_stateful_wal.py"
    one = Settles()
    for fault, seconds in (("kill-leader", 1.25), ("kill-leader", 0.75), ("heal", 0.5)):
        one.add(fault, "jetstream-r3", seconds)
    two = Settles()
    two.add("kill-leader", "jetstream-r3", 2.5)
    two.add("corrupt", "jetstream-r3", 0.25)
    r3 = {"log": "jetstream-r3", "target": "sqlite"}
    tests = [
        Planned(wal, "test_wal[log=jetstream-r3-target=sqlite]", "stateful_wal", r3, faults={"kill-leader": 2},
                evidence=[(SETTLES, cast(Any, one.as_property())), ("prism_latency", cast(Any, latency(1)))]),
        Planned(wal, "test_wal_twice[log=jetstream-r3-target=sqlite]", "stateful_wal", r3,
                evidence=[(SETTLES, cast(Any, two.as_property()))]),
        Planned(wal, "test_wal[log=memstore-target=sqlite]", "stateful_wal", {"log": "memstore", "target": "sqlite"},
                evidence=[("prism_latency", cast(Any, latency(2)))]),
    ]  # fmt: skip
    return tests


def cluster_run() -> Report:
    return run_of(cluster_tests(), "2026-11-26T09:00:00+00:00")


def test_the_json_report_carries_each_tests_settles() -> None:
    report = cluster_run().dump()  # as its file holds it
    row = next(r for r in report["suites"] if r["combination"]["log"] == "jetstream-r3")
    entry = row["tests"]["prism_testkit/suites/test_stateful_wal.py::test_wal[log=jetstream-r3-target=sqlite]"]
    assert entry["settles"]["kinds"]["kill-leader"] == {"count": 2, "total_s": 2.0, "max_s": 1.25}
    assert ["heal", 0.5, "jetstream-r3"] in entry["settles"]["samples"]
    other = next(r for r in report["suites"] if r["combination"]["log"] == "memstore")
    assert not any("settles" in test for test in other["tests"].values())


def settle_rows(page: str, row: str) -> dict[str, list[str]]:
    """fault -> its cells, in the settle table of the row whose id is ``row``."""
    block = page.split(f'id="{row}"', 1)[1].split("</details>", 1)[0]
    found = re.findall(r'<tr data-fault="([^"]+)">(.*?)</tr>', block)
    return {fault: re.findall(r"<td>(.*?)</td>", cells)[1:] for fault, cells in found}


def test_the_html_report_shows_a_cluster_rows_settles_per_fault_kind_over_its_tests() -> None:
    report = cluster_run()
    page = render_html(report)
    rows = re.findall(r'<details class="row [^"]*" id="(row-\d+)"[^>]*data-combination="([^"]+)"', page)
    by_combination = {combination: row for row, combination in rows}
    cluster_row = by_combination["log=jetstream-r3 target=sqlite"]
    assert settle_rows(page, cluster_row) == {
        "corrupt": ["1", "0.25 s", "0.25 s"],
        "heal": ["1", "0.50 s", "0.50 s"],
        "kill-leader": ["3", "1.50 s", "2.50 s"],  # two tests' counts added, the longest of both
    }
    assert settle_rows(page, by_combination["log=memstore target=sqlite"]) == {}
    assert page.count('<table class="settles">') == 1
    plotted = page.count('class="plot settle-plot"')
    assert plotted == (1 if plots.available() else 0)


def test_settles_a_hand_or_another_version_wrote_wrongly_are_left_out() -> None:
    report = cluster_run()
    row = next(r for r in report.suites if r.combination["log"] == "jetstream-r3")
    for entry in (row.tests or {}).values():
        entry.settles = {"kinds": {"kill-node": {"count": "many"}}, "samples": [["kill-node"]]}
    assert 'class="settles"' not in render_html(report)


@pytest.mark.skipif(not plots.available(), reason="matplotlib (the plots extra) is not installed")
def test_the_settle_plot_draws_the_same_bytes_from_the_same_samples() -> None:
    samples = [["kill-leader", 1.25, "jetstream-r3"], ["heal", 0.5, "jetstream-r3"], ["kill-leader", 0.75, "x"]]
    first = plots.settle_figure(samples)
    assert first.startswith("data:image/png;base64,")
    assert plots.settle_figure(samples) == first


def test_the_runner_records_its_examples_settles_as_a_user_property() -> None:
    from prism_testkit.stateful.runner import StatefulRun

    run = StatefulRun.__new__(StatefulRun)
    run.node = cast(Any, SimpleNamespace(user_properties=[]))
    run.settles = Settles()
    run.record_settles()
    assert run.node.user_properties == []  # no cluster settled: nothing recorded
    run.note_settles([("kill-node", "jetstream-r3", 0.5), ("heal", "jetstream-r3", 0.25)])
    run.record_settles()
    [(name, found)] = run.node.user_properties
    assert name == SETTLES == "prism_settles"
    assert found["kinds"]["kill-node"] == {"count": 1, "total_s": 0.5, "max_s": 0.5}
    results = PrismResults()
    planned = Planned(
        "prism_testkit/suites/test_stateful_wal.py",
        "t[log=jetstream-r3]",
        "stateful_wal",
        {"log": "jetstream-r3"},
        evidence=[(name, found)],
    )
    record(results, planned)
    assert results.evidence[planned.nodeid]["settles"] == found


def test_a_merge_of_shards_that_split_a_cluster_row_renders_its_settles_as_one_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = cluster_tests()
    paths = []
    for n, part in enumerate((tests[0::2], tests[1::2]), 1):  # the cluster row's two tests apart
        paths.append(tmp_path / f"shard-{n}.json")
        paths[-1].write_text(json.dumps(run_of(part, f"2026-11-26T10:00:0{n}+00:00", shard=n).dump()))
    assert main(["report", "html", *map(str, paths), "-o", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    merged = (tmp_path / "site" / "index.html").read_text()
    single = render_html(cluster_run(), base=tmp_path / "site")
    assert without_provenance(merged) == without_provenance(single)
    assert '<tr data-fault="kill-leader">' in merged
