"""The shape of a ``--prism-report`` JSON file, as ``prism-testkit report merge`` reads it.

A merge reads files written elsewhere (another job, another version, a hand edit): before any
of them is merged, each is checked against these models, so a file that is not a report's shape
(``{"suites": [[[]]]}``) is a :class:`~prism_testkit.report.merge.ReportMergeError` naming the
file and the place inside it, never a traceback from deep in the merge. The models accept every
section a run writes and more (``extra="allow"``): only what the merge reads is constrained, and
what a report of an older version lacks (``tests``, ``errors``, ``shard``) is optional.

Imported by the merge only (pydantic is not paid for by a pytest run that writes a report).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

# A test's outcome: the parts its phases added, joined by "+" (docs/report-outcomes.md).
Outcome = Annotated[
    str, StringConstraints(pattern=r"^(passed|failed|skipped|error)(\+(passed|failed|skipped|error))*$")
]
Count = Annotated[int, Field(ge=0)]
Counts = dict[str, int]  # finding or fault name -> count


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class OneTest(_Open):
    """One test of a row (or of a bucket outside the rows) and its outcome."""

    outcome: Outcome
    duration_s: float = 0.0
    covered_by: dict[str, str] | None = None
    depth: Count | None = None  # the examples a stateful test drew
    anomalies: Counts = {}
    tolerated: Counts = {}
    faults: Counts = {}
    verdicts: Counts = {}
    known: Counts = {}
    suite: str | None = None  # a test of a module nothing selected fits: the suite it declares


class Row(_Open):
    """One suite x combination (and namespace)."""

    suite: str
    combination: dict[str, str]
    namespace: str | None = None
    passed: Count = 0
    failed: Count = 0
    skipped: Count = 0
    errors: Count = 0
    covered: Count = 0
    covered_by: dict[str, str] = {}
    anomalies: Counts = {}
    tolerated: Counts = {}
    faults: Counts = {}
    verdicts: Counts = {}
    known: Counts = {}
    duration_s: float = 0.0
    tests: dict[str, OneTest] | None = None


class Bucket(_Open):
    """Tests in no row (``outside_suites``, ``without_combination``): counts, and since
    reports carry them, each test's outcome."""

    passed: Count = 0
    failed: Count = 0
    skipped: Count = 0
    errors: Count = 0
    tests: dict[str, OneTest] | None = None


class SuiteReason(_Open):
    suite: str
    reason: str


class BackendReason(_Open):
    backend: str
    reason: str


class Backend(_Open):
    backend: str


class PerTest(_Open):
    """An entry of a per-test section (failures, power cuts, judged tests, hunted tests)."""

    test: str


class FaultRow(_Open):
    suite: str
    combination: dict[str, str]


class UnavailableFault(_Open):
    fault: str
    reason: str
    hint: str
    rows: list[FaultRow]


class Hunt(_Open):
    tests: list[PerTest] = []
    failures: list[PerTest] = []


class Shard(_Open):
    """Which shard of a sharded run wrote the report: ``index`` of ``count`` (from 1), and the
    selection that was sharded (shards of one selection belong together)."""

    index: Annotated[int, Field(ge=1)]
    count: Annotated[int, Field(ge=1)]
    selection: str = ""


class Report(_Open):
    suites: list[Row]
    outside_suites: Bucket | None = None
    without_combination: Bucket | None = None
    failures: list[PerTest] = []
    no_runnable_combinations: list[SuiteReason] = []
    not_applicable: list[SuiteReason] = []
    backends: list[Backend] = []
    unavailable: list[BackendReason] = []
    not_provisioned: list[BackendReason] = []
    failed_to_start: list[BackendReason] = []
    unavailable_faults: list[UnavailableFault] = []
    power_cuts: list[PerTest] = []
    judged: list[PerTest] = []
    hunt: Hunt | None = None
    history_digests: dict[str, Any] = {}
    covered_by_twins: dict[str, int] = {}
    run: dict[str, Any] = {}
    shard: Shard | None = None


_REPORT = TypeAdapter(Report)
_INSTANCE = re.compile(r" or instance of \w+")  # the model's class name says nothing to a reader


def problems(data: object, most: int = 3) -> list[str]:
    """Where ``data`` is not a report's shape ("suites.0: Input should be a valid dictionary"),
    at most ``most`` places (none: it is a report)."""
    try:
        _REPORT.validate_python(data)
    except ValidationError as exc:
        found = [
            f"{'.'.join(str(part) for part in error['loc']) or 'the file'}: {_INSTANCE.sub('', error['msg'])}"
            for error in exc.errors(include_url=False)
        ]
        more = f" (and {len(found) - most} more)" if len(found) > most else ""
        return [*found[:most], *([more.strip()] if more else [])]
    return []
