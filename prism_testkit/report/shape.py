"""The one model of a ``--prism-report`` JSON file: what a run writes, what ``prism-testkit
report merge`` reads and writes, what the Markdown matrix and the HTML page render.

Every section a report can hold is a typed field of :class:`Report` (a test checks that the
writer emits no key the model lacks), and a report says which version of this model it follows
(``schema_version``): a report written before reports carried one is read as version 1's
predecessor (every section it lacks is optional), one newer than this prism-testkit knows is a
:class:`~prism_testkit.report.merge.ReportMergeError` naming the file. A file that is not a
report's shape (``{"suites": [[[]]]}``) is such an error too, naming the file and the place
inside it, never a traceback from deep in the merge. The models keep what they do not declare
(``extra="allow"``: a report of a newer minor kind, a hand-added note), so nothing read is
dropped on the way back out.

Its JSON Schema (:func:`json_schema_text`, ``prism-testkit report schema``) is committed as
``docs/report-schema.json`` for CI authors (docs/reports.md, "For CI authors"); JSON is read into
the model and written from it only at a report file's edge (``merge.load_report``,
``results.PrismResults.write``, ``report merge --json``).

Imported by whatever writes or reads a report file (the writer, the merge, the renderers):
pydantic is not paid for by a pytest run that writes no report.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, TypeAdapter, ValidationError

# The version of this model a report follows (its ``schema_version``). Raise it when a section
# changes meaning (not when one is added: a reader keeps what it does not know). A report without
# one predates it and is read as it is; one newer than this is refused, naming the file.
SCHEMA_VERSION = 1

# A test's outcome: the parts its phases added, joined by "+" (docs/report-outcomes.md).
Outcome = Annotated[
    str, StringConstraints(pattern=r"^(passed|failed|skipped|error)(\+(passed|failed|skipped|error))*$")
]
Count = Annotated[int, Field(ge=0)]
Counts = dict[str, int]  # finding or fault name -> count


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:  # untyped: the JSON edge, what json.dumps writes
        """As JSON holds it: what was read (or set), nothing added."""
        return self.model_dump(mode="json", exclude_unset=True)


class OneTest(_Open):
    """One test of a row (or of a bucket outside the rows) and its outcome."""

    outcome: Outcome
    # the test's package-relative identity (hunting.identity), the same on every install layout:
    # what a merge matches tests by (the key, a node id, is a path from where pytest ran); None:
    # a report written before entries carried it, or a run where two tests share one identity
    identity: str | None = None
    duration_s: float = 0.0
    covered_by: dict[str, str] | None = None
    depth: Count | None = None  # the examples a stateful test drew
    # its evidence (results.EVIDENCE): a failing test's timeline page and replay command, its
    # latency samples and, on a cluster, its settle times after each fault
    timeline: str | None = None
    replay: str | None = None
    latency: Any = None  # drawn when it holds samples (html._samples): a hand may have written anything
    settles: Any = None
    anomalies: Counts = {}
    tolerated: Counts = {}
    faults: Counts = {}
    verdicts: Counts = {}
    known: Counts = {}
    suite: str | None = None  # a test of a module nothing selected fits: the suite it declares


# What a row or a test counts per name besides outcomes (merge.KINDS).
KIND_FIELDS = ("anomalies", "tolerated", "faults", "verdicts", "known")


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
    depth: Count | None = None  # the most examples a stateful test of the row drew
    duration_s: float = 0.0
    tests: dict[str, OneTest] | None = None  # None: a report written before rows carried their tests


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


class UnavailableBackend(BackendReason):
    """A backend that could not be provisioned, and the suites of the run its declared
    capabilities fit (the matrix marks it unavailable in those rows only). None: not known (a
    report written before reports carried it, or a run that stopped before collecting any suite),
    so unavailable in every row."""

    fits: list[str] | None = None


class Backend(_Open):
    backend: str
    provisioned: str | None = None
    server_version: str | None = None


class PerTest(_Open):
    """An entry of a per-test section (power cuts, judged tests)."""

    test: str
    identity: str | None = None  # as a test of a row's (OneTest.identity)


class Judged(PerTest):
    """A test judged against the known findings (:func:`prism_testkit.findings.judge`): the
    scenario it measured, on which backend and server version, the verdict and what was lost of
    what was acknowledged. Optional here (a hand-made report may cut it short):
    ``prism-testkit report versions`` names an entry that lacks what it tabulates."""

    scenario: str | None = None
    backend: str | None = None
    version: str | None = None  # as the server told its driver (None: it did not say)
    finding: str | None = None  # the known finding's id (docs/findings.md), None: none covers it
    verdict: str | None = None  # held, known, tolerated, lost, no longer reproduces
    lost: int | None = None
    acknowledged: int | None = None
    tolerated: str | None = None  # the documented window a tolerated loss fell in
    counts: str | None = None  # what lost of acknowledged counts, where the harm is no lost write


class Digest(_Open):
    """A stateful test's ``prism_simulation`` property (prism_testkit.stateful.runner): whether
    it ran simulated, its examples' digest, its failing example's."""

    identity: str | None = None  # as a test of a row's (OneTest.identity)
    simulated: bool | None = None  # ran on virtual time (--prism-simulate)
    not_simulable: list[str] | None = None  # the backends that kept it on real time
    examples: int | None = None
    digest: str | None = None  # of every example's history, in the order they ran
    failing_digest: str | None = None  # of its failing example's (None: none failed)
    misbehaviour: Counts | None = None  # the simulated backends' misbehaviour kinds, how often each fired


class RebuiltCluster(_Open):
    """A cluster rebuilt because ``left_by`` left it damaged: ``why`` (what was found); rebuilt
    before ``before`` (the test's node id as its run named it)."""

    backend: str
    left_by: str
    why: str
    before: str | None = None


class Rebuilt(PerTest):
    """The clusters rebuilt before a test (or one of its examples) ran on them."""

    clusters: list[RebuiltCluster]


class Failure(PerTest):
    """A failing test: its suite and combination (None: outside the suites), its first failing
    phase and the first line of what it said."""

    suite: str | None = None
    combination: dict[str, str] | None = None
    when: str | None = None
    message: str | None = None


class HuntedTest(PerTest):
    """A hunted test (--prism-hunt): hunting.hunt.HuntResult.as_property."""

    rounds: int | None = None
    examples: int | None = None
    faults: int | None = None
    seconds: float | None = None
    failed: bool = False
    skipped: str | None = None  # why a round skipped it
    failure: str | None = None
    replay: str | None = None
    seed: int | None = None
    schedule: str | None = None
    seed_replay: str | None = None
    replayed: str | None = None


class FaultRow(_Open):
    suite: str
    combination: dict[str, str]


class UnavailableFault(_Open):
    fault: str
    reason: str
    hint: str
    rows: list[FaultRow]


class Hunt(_Open):
    tests: list[HuntedTest] = []
    failures: list[HuntedTest] = []


class Shard(_Open):
    """Which shard of a sharded run wrote the report: ``index`` of ``count`` (from 1), and the
    selection that was sharded (shards of one selection belong together)."""

    index: Annotated[int, Field(ge=1)]
    count: Annotated[int, Field(ge=1)]
    selection: str = ""


class MergedShard(Shard):
    report: str  # the file it came from


def merged_shard(shard: Shard, report: str) -> MergedShard:
    """``shard`` as a merge lists it: with the file it came from."""
    return MergedShard.model_validate({**shard.dump(), "report": report})


class Run(_Open):
    """Which prism-testkit wrote the report, when, how long it took, and the run's id (a merge
    refuses a run given twice)."""

    prism_testkit_version: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    stopped: str | None = None  # a run that stopped before any test: why
    id: str | None = None


class MergedRun(Run):
    report: str  # the file it came from


def merged_run(run: Run, report: str) -> MergedRun:
    """``run`` as a merge lists it: with the file it came from."""
    return MergedRun.model_validate({**run.dump(), "report": report})


class Totals(_Open):
    """pytest's counts over every test of the report: in its rows and in none. A run writes the
    four counts; a merge (``report merge --json``) recounts them and adds the rest."""

    passed: Count = 0
    failed: Count = 0
    skipped: Count = 0
    errors: Count = 0
    rows: Count | None = None  # suite x combination rows
    suites_without_combination: Count | None = None  # suites nothing selected could run (failed)
    backends_not_provisioned: Count | None = None  # backends a job named and could not provision (red)


class Depth(_Open):
    """The run's depth: what it asked for, what its stateful tests drew, what goes deeper."""

    asked: str | None = None
    drawn: list[int] = []
    deeper: str | None = None  # the command that searches deeper
    hunt: str | None = None  # the command that hunts instead


class Cell(_Open):
    """A backend x suite cell of the compliance matrix (:mod:`.matrix`): the rows of the suite
    whose combination uses the backend, summed. A cell of a backend the suite did not run on
    holds its ``status`` only (and ``reason``, for a suite without a runnable combination)."""

    passed: Count = 0
    failed: Count = 0
    skipped: Count = 0  # not counting the covered ones
    errors: Count = 0
    anomalies: Counts = {}
    tolerated: Counts = {}
    known: Counts = {}  # written only where a known finding reproduced: finding id -> tests
    faults: Counts = {}  # what its passes survived
    covered: Count = 0  # tests its single-node twin ran in its place
    covered_by: list[str] = []  # that twin
    # worst first: failed, known finding, skipped, covered, tolerated, passed; not run, unavailable
    status: str
    reason: str | None = None  # why a failed suite has no runnable combination


class Matrix(_Open):
    """The compliance matrix of a (merged) report: backend x suite."""

    backends: list[str]
    suites: list[str]
    cells: dict[str, dict[str, Cell]]  # suite -> backend -> its cell


class Report(_Open):
    """A run's report, or a merge of several (``runs``, ``shards``, ``merged_from``)."""

    schema_version: int | None = Field(
        default=None,
        description="The version of this model the report follows; absent: written before reports carried one",
    )
    run: Run | None = Field(
        default=None, description="Which prism-testkit wrote it, when, how long it took, the run's id"
    )
    shard: Shard | None = Field(default=None, description="Which shard of a sharded run wrote it (absent: not sharded)")
    totals: Totals | None = Field(
        default=None,
        description="pytest's counts over every test (a merge recounts them and adds rows and the red counts)",
    )
    without_combination: Bucket | None = Field(default=None, description="Tests of a module nothing selected fits")
    outside_suites: Bucket | None = Field(default=None, description="Tests outside any suite (plain tests)")
    suites: list[Row] = Field(description="A row per suite x combination (and namespace), with each test's outcome")
    failures: list[Failure] = Field(
        default_factory=list, description="Every red test: its suite and combination, phase and first line"
    )
    no_runnable_combinations: list[SuiteReason] = Field(
        default_factory=list, description="Suites nothing selected could run (each a failure)"
    )
    not_applicable: list[SuiteReason] = Field(
        default_factory=list, description="Suites not applicable to the selection (not run, not a failure)"
    )
    covered_by_twins: dict[str, int] = Field(
        default_factory=dict, description="Single-node twin -> the tests of replicated backends it ran in their place"
    )
    backends: list[Backend] = Field(default_factory=list, description="Backends tested: how provisioned, version")
    unavailable: list[UnavailableBackend] = Field(
        default_factory=list, description="Backends that could not be provisioned (not tested), and the suites they fit"
    )
    not_provisioned: list[BackendReason] = Field(
        default_factory=list, description="Backends named but not provisioned: the run stopped before any test (red)"
    )
    failed_to_start: list[BackendReason] = Field(
        default_factory=list, description="Backends that failed to start (their tests errored)"
    )
    unavailable_faults: list[UnavailableFault] = Field(
        default_factory=list, description="Faults this machine cannot inject, and the rows that needed them"
    )
    hunt: Hunt | None = Field(default=None, description="Hunted tests (--prism-hunt) and their failures")
    history_digests: dict[str, Digest] = Field(
        default_factory=dict, description="Stateful test -> the digest of its examples (simulated mode)"
    )
    depth: Depth | None = Field(
        default=None, description="The examples the run asked for and drew, and what goes deeper"
    )
    power_cuts: list[PerTest] = Field(default_factory=list, description="Each power_loss test's cut")
    judged: list[Judged] = Field(default_factory=list, description="Tests judged against the known findings")
    rebuilt: list[Rebuilt] = Field(
        default_factory=list, description="Clusters rebuilt before a test: which test left them damaged, and why"
    )
    runs: list[MergedRun] = Field(default_factory=list, description="A merge's: the run of each report merged")
    shards: list[MergedShard] = Field(default_factory=list, description="A merge's: the shard of each report merged")
    merged_from: list[str] = Field(default_factory=list, description="A merge's: the files merged")
    matrix: Matrix | None = Field(
        default=None, description="report merge --json's: the backend x suite compliance matrix"
    )
    _source: str | None = PrivateAttr(default=None)  # the file it was read from (not in the file)

    @property
    def source(self) -> str | None:
        """The file this report was read from (:func:`~.merge.load_report`); None: built in memory."""
        return self._source

    def read_from(self, path: str) -> Report:
        """This report, saying it was read from ``path`` (what a merge names it by)."""
        self._source = path
        return self


_REPORT = TypeAdapter(Report)
_INSTANCE = re.compile(r" or instance of \w+")  # the model's class name says nothing to a reader


def _places(exc: ValidationError, most: int) -> list[str]:
    found = [
        f"{'.'.join(str(part) for part in error['loc']) or 'the file'}: {_INSTANCE.sub('', error['msg'])}"
        for error in exc.errors(include_url=False)
    ]
    more = f" (and {len(found) - most} more)" if len(found) > most else ""
    return [*found[:most], *([more.strip()] if more else [])]


def problems(data: object, most: int = 3) -> list[str]:
    """Where ``data`` is not a report's shape ("suites.0: Input should be a valid dictionary"),
    at most ``most`` places (none: it is a report)."""
    try:
        _REPORT.validate_python(data)
    except ValidationError as exc:
        return _places(exc, most)
    return []


class NotAReport(ValueError):
    """``data`` is not a report this prism-testkit can read (the message says where, or which
    schema version it follows)."""


class NewerSchema(NotAReport):
    """A report of a schema version newer than this prism-testkit's."""


def json_schema_text() -> str:
    """The JSON Schema of a report file (pydantic's, of :class:`Report`): what ``prism-testkit
    report schema`` prints and ``docs/report-schema.json`` holds (a test checks they agree)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"prism-testkit report, schema_version {SCHEMA_VERSION}: prism-testkit report schema",
        **Report.model_json_schema(),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def parse(data: object, most: int = 3) -> Report:
    """``data`` (a report file's JSON) as the model; NotAReport when it is not a report's shape
    or follows a schema version newer than this prism-testkit's."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise NewerSchema(
            f"written with report schema version {version}, this prism-testkit reads up to version "
            f"{SCHEMA_VERSION}: upgrade prism-testkit to read it"
        )
    try:
        return _REPORT.validate_python(data)
    except ValidationError as exc:
        raise NotAReport("; ".join(_places(exc, most))) from None
