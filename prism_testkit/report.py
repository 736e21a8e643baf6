"""Results per suite x combination, the terminal summary and the JSON report.

Items carry their suite and combination in ``user_properties`` so that the numbers arrive
with each test report, also from xdist workers: only the process that sees every report (the
controller, or the single process of a serial run) aggregates and writes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROPERTY = "prism"
ANOMALIES = "prism_anomalies"
RowKey = tuple[str, str | None, tuple[tuple[str, str], ...]]  # suite, namespace, combination
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def item_properties(
    suite: str, slots: dict[str, str], no_combination: str | None, namespace: str | None = None
) -> tuple[str, dict]:
    return (PROPERTY, {"suite": suite, "combination": slots, "no_combination": no_combination, "namespace": namespace})


def junit_properties(suite: str, slots: dict[str, str], namespace: str | None = None) -> list[tuple[str, str]]:
    """Flat string properties, one per fact, for ``--junitxml`` (CI UIs show a testcase's
    properties; the ``prism`` property above is a dict, which junitxml can only repr)."""
    combination = " ".join(f"{slot}={backend}" for slot, backend in slots.items()) or "no-runnable-combination"
    found = [("prism_suite", suite), ("prism_combination", combination)]
    found += [(f"prism_slot_{slot}", backend) for slot, backend in slots.items()]
    if namespace:
        found.append(("prism_namespace", namespace))
    return found


def anomaly_properties(anomalies: Counter[str], tolerated: Counter[str]) -> tuple[str, dict]:
    return (ANOMALIES, {"anomalies": dict(anomalies), "tolerated": dict(tolerated)})


def _prism_property(report: pytest.TestReport, name: str = PROPERTY) -> dict[str, Any] | None:
    for key, value in report.user_properties:
        if key == name and isinstance(value, dict):  # user_properties hold objects of any kind
            return value
    return None


def _test_key(report: pytest.TestReport) -> str:
    """One key per test. The node id alone is not: suites collected with ``--pyargs`` from
    outside the rootdir get ids without their file (``::test_purge[backend=memstore]`` for
    the key-value and the log suite alike); the location keeps the file."""
    return f"{report.location[0]}::{report.nodeid}"


def _outcome(report: pytest.TestReport) -> str | None:
    """The outcome this phase contributes to the test's result (None: nothing new)."""
    if report.failed:
        return "failed"
    if report.skipped:
        return "skipped"
    if report.when == "call":
        return "passed"
    return None


@dataclass
class PrismResults:
    unavailable: dict[str, str] = field(default_factory=dict)
    available: dict[str, str] = field(default_factory=dict)  # backend -> how it is provisioned
    outcomes: dict[str, str] = field(default_factory=dict)  # test (see _test_key) -> worst outcome so far
    rows_of: dict[str, RowKey] = field(default_factory=dict)
    no_combination: dict[str, str] = field(default_factory=dict)  # suite -> reason (the suite failed)
    not_applicable: dict[str, str] = field(default_factory=dict)  # suite -> reason (it was let off)
    anomalies_of: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # test -> counts
    durations: dict[str, float] = field(default_factory=dict)  # test -> seconds (setup + call + teardown)
    hunts: list[dict[str, Any]] = field(default_factory=list)  # one per hunted test (--prism-hunt)

    def record(self, report: pytest.TestReport) -> None:
        prop = _prism_property(report)
        if prop is None:
            return
        test = _test_key(report)
        self.durations[test] = self.durations.get(test, 0.0) + report.duration
        found = _prism_property(report, ANOMALIES)
        if found is not None and report.when == "teardown":
            self.anomalies_of[test] = found
        outcome = _outcome(report)
        if outcome is None:
            return
        suite = prop["suite"]
        if prop.get("no_combination"):
            # Skipped: nothing selected fits and the run did not insist; failed: it did.
            unfit = self.not_applicable if outcome == "skipped" else self.no_combination
            unfit[suite] = prop["no_combination"]
        self.rows_of[test] = (suite, prop.get("namespace"), tuple(prop["combination"].items()))
        previous = self.outcomes.get(test)
        if previous is None or _RANK[outcome] > _RANK[previous]:
            self.outcomes[test] = outcome

    def rows(self) -> list[dict[str, Any]]:
        tally: dict[RowKey, Counter[str]] = {}
        anomalies: dict[RowKey, dict[str, Counter[str]]] = {}
        seconds: dict[RowKey, float] = {}
        for test, outcome in self.outcomes.items():
            key = self.rows_of[test]
            if key[0] in self.no_combination or key[0] in self.not_applicable:
                continue
            tally.setdefault(key, Counter())[outcome] += 1
            seconds[key] = seconds.get(key, 0.0) + self.durations.get(test, 0.0)
            found_in_row = anomalies.setdefault(key, {"anomalies": Counter(), "tolerated": Counter()})
            for kind, counts in self.anomalies_of.get(test, {}).items():
                found_in_row[kind].update(counts)
        rows = []
        for (suite, namespace, combo), counts in sorted(
            tally.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
        ):
            row: dict[str, Any] = {"suite": suite, "combination": dict(combo)}
            if namespace:
                row["namespace"] = namespace
            row.update(passed=counts["passed"], failed=counts["failed"], skipped=counts["skipped"])
            found = anomalies[(suite, namespace, combo)]
            row.update(
                anomalies=dict(sorted(found["anomalies"].items())), tolerated=dict(sorted(found["tolerated"].items()))
            )
            # the sum of its tests' setup + call + teardown, as pytest measured them (under xdist
            # on the workers, so rows run in parallel add up to more than the wall time)
            row["duration_s"] = round(seconds[(suite, namespace, combo)], 3)
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "suites": self.rows(),
            "no_runnable_combinations": [
                {"suite": suite, "reason": reason} for suite, reason in sorted(self.no_combination.items())
            ],
            "not_applicable": [
                {"suite": suite, "reason": reason}
                for suite, reason in sorted(self.not_applicable.items())
                if suite not in self.no_combination
            ],
            "backends": [{"backend": b, "provisioned": how} for b, how in sorted(self.available.items())],
            "unavailable": [{"backend": b, "reason": r} for b, r in sorted(self.unavailable.items())],
            **(
                {"hunt": {"tests": self.hunts, "failures": [h for h in self.hunts if h["failed"]]}}
                if self.hunts
                else {}
            ),
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    def summarize(self, tr: pytest.TerminalReporter) -> None:
        rows = self.rows()
        if not rows and not self.no_combination and not self.unavailable and not self.not_applicable:
            return
        tr.write_sep("=", "prism-testkit: suites x combinations")
        if rows:
            width = max(len(r["suite"]) for r in rows)
            combo_width = max(len(_combo_text(r)) for r in rows)
            tr.write_line(f"{'suite':<{width}}  {'combination':<{combo_width}}  passed  failed  skipped  anomalies")
            for r in rows:
                color = {"red": True} if r["failed"] or r["anomalies"] else {"green": True}
                tr.write_line(
                    f"{r['suite']:<{width}}  {_combo_text(r):<{combo_width}}  "
                    f"{r['passed']:>6}  {r['failed']:>6}  {r['skipped']:>7}  {_anomaly_text(r)}",
                    **color,
                )
            _slowest(tr, rows)
        for suite, reason in sorted(self.no_combination.items()):
            tr.write_line(f"FAILED suite {suite}: {reason}", red=True, bold=True)
        let_off = {s: r for s, r in self.not_applicable.items() if s not in self.no_combination}
        if let_off:
            tr.write_sep("-", "prism-testkit: suites not applicable to this selection (not run)", yellow=True)
            for suite, reason in sorted(let_off.items()):
                tr.write_line(f"{suite}: {reason}", yellow=True)
        if self.unavailable:
            tr.write_sep("-", "prism-testkit: UNAVAILABLE backends (not tested)", yellow=True, bold=True)
            for backend, reason in sorted(self.unavailable.items()):
                tr.write_line(f"{backend}: {reason}", yellow=True, bold=True)


SLOWEST = 10


def slowest_rows(rows: list[dict[str, Any]], count: int = SLOWEST) -> list[dict[str, Any]]:
    """The ``count`` rows that took longest, slowest first (ties in suite order)."""
    return sorted(rows, key=lambda r: -r.get("duration_s", 0.0))[:count]


def _slowest(tr: pytest.TerminalReporter, rows: list[dict[str, Any]]) -> None:
    shown = slowest_rows(rows)
    tr.write_sep("-", f"prism-testkit: {len(shown)} slowest rows (setup + call + teardown of their tests)")
    width = max(len(r["suite"]) for r in shown)
    for r in shown:
        tests = r["passed"] + r["failed"] + r["skipped"]
        tr.write_line(f"{r['duration_s']:>9.2f}s  {r['suite']:<{width}}  {_combo_text(r)}  ({tests} tests)")


def _combo_text(row: dict[str, Any]) -> str:
    text = " ".join(f"{slot}={backend}" for slot, backend in row["combination"].items())
    return f"ns={row['namespace']} {text}" if row.get("namespace") else text


def _anomaly_text(row: dict[str, Any]) -> str:
    found = [f"{name}={n}" for name, n in row["anomalies"].items()]
    found += [f"{name}={n} (tolerated)" for name, n in row["tolerated"].items()]
    return " ".join(found) or "-"
