"""Time a suite hands to a system under test is derived, virtual, or the point of its test.

A visibility timeout, lease, TTL, poll interval or retry backoff given to a pattern, driver or
server is a bet on the machine's speed like a fixed wait: on a slow machine a 0.3 s visibility
timeout runs out while the consumer still works, and a test that counted deliveries goes red
with no guarantee broken. So every such time in ``prism_testkit/suites/`` is one of:

- **derived**: it comes from ``prism_testkit.patience`` (``handed`` / ``bound``), scaled by the
  machine's slowness when handed over;
- **virtual**: it runs on a clock the test moves (a fake clock or a recorded sleep);
- **the point**: its expiry is what the test checks, and the test asserts only what holds on any
  machine once it has expired.

(A wrapper's default that mirrors an interface's signature is listed too: its callers' values
are scanned where they call.)

This module scans ``prism_testkit/suites/`` (AST, no import) and fails on a numeric time handed over that is
none of these, naming file and line. The last two kinds are listed in :data:`ALLOWED` with their
reason; an entry that no longer matches anything fails too, so the list cannot rot.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from tests._parsing import parse

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "prism_testkit" / "suites"

# Keyword arguments and config keys that carry a time handed over.
TIME_KEY = re.compile(
    r"ttl|timeout|visibility|lease|heartbeat|interval|backoff|poll|expir|retention|within|linger|delay"
)
# Names that match but count events, not seconds, or configure Hypothesis.
NOT_TIME = {"snapshot_interval", "deadline"}
# Calls whose time keywords bound the harness's own waits (docs/waits.md rules those) or draw
# Hypothesis data, not a system under test's.
HARNESS_WAITS = {"eventually", "until", "wait", "wait_for", "repeat_until", "settings", "given"}
DURATION = re.compile(r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)\s*$")

MANUAL_CLOCK = "virtual: the pattern reads time from a ManualClock the test advances"
SLEEPS = "virtual: its backoff sleeps go to Sleeps, which records each and returns at once"
PARSED = "point: the configuration parser's reading of the value is what the test checks; nothing runs"
VALIDATED = "point: the values are refused or bounded by validation; nothing expires"
PRODUCER_MANUAL_CLOCK = (
    "virtual: Bench.producer hands the producer a ManualClock; its batch interval never runs out unless the test "
    "advances it"
)
MIRRORS_QUEUE = (
    "interface: the default of a wrapper that mirrors the Queue interface's receive signature; "
    "what its callers pass is scanned at the call"
)

# (file, enclosing function, key) -> why the fixed value is safe. Each reason starts with
# "virtual:" or "point:", or "interface:" for a wrapper's default that mirrors the interface.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("suites/test_producer.py", "_ReconnectingQueue.receive", "visibility_timeout"): MIRRORS_QUEUE,
    ("suites/test_stateful_producer.py", "_CurrentQueue.receive", "visibility_timeout"): MIRRORS_QUEUE,
    ("suites/test_claim_check.py", "_IdsPerQueue.receive", "visibility_timeout"): MIRRORS_QUEUE,
    ("suites/_queue_machine.py", "QueueMachine.receive", "visibility"): (
        "point: crashed consumers' messages must come back within the example; the checker tolerates "
        "every redelivery and waits VISIBILITY x slowness before it calls a message lost"
    ),
    ("suites/_queue_machine.py", "QueueMachine._drain.take", "visibility"): (
        "point: the drain's own receives; an unknown receive may hide a message this long, and the final "
        "wait adds exactly this before calling one lost"
    ),
    (
        "suites/test_cdc.py",
        "test_an_idle_capture_confirms_heartbeats_and_leaves_nothing_behind",
        "heartbeat_interval",
    ): ("point: heartbeats are what the test waits for; a slower machine only makes more of them due"),
    ("suites/test_consumer.py", "Bench.consumer", "retry_backoff"): SLEEPS,
    ("suites/test_consumer.py", "Bench.consumer", "retry_backoff_max"): SLEEPS,
    ("suites/test_consumer.py", "test_queue_consumer_killed_before_the_ack", "visibility_timeout"): (
        "point: the redelivery once it runs out is what the test checks; it waits on the redelivery, "
        "never for less than the timeout"
    ),
    (
        "suites/test_consumer.py",
        "test_forced_stop_after_the_bound_leaves_the_message_for_the_next_consumer",
        "visibility_timeout",
    ): (
        "point: the redelivery once it runs out is what the test checks; it waits on the redelivery, "
        "never for less than the timeout"
    ),
    (
        "suites/test_consumer.py",
        "test_forced_stop_after_the_bound_leaves_the_message_for_the_next_consumer",
        "within",
    ): (
        "point: the handler never returns, so the stop bound always runs out; the test asserts the stop "
        "took at least it"
    ),
    (
        "suites/test_consumer.py",
        "test_configuration_is_checked_before_anything_runs",
        "poll_wait",
    ): PARSED,
    ("suites/test_contract_keyvalue.py", "test_ttl_expires_or_is_not_supported", "ttl"): (
        "point: the TTL running out is what the test checks; it asserts only what holds once it ran out "
        "(a read before it is checked only when made before the TTL can have run out)"
    ),
    ("suites/test_contract_keyvalue.py", "test_put_without_ttl_clears_previous_ttl", "ttl"): (
        "point: the TTL running out is what the test checks; it asserts only what holds once it ran out "
        "(a read before it is checked only when made before the TTL can have run out)"
    ),
    ("suites/test_contract_keyvalue.py", "test_ttl_can_be_extended_by_rewriting", "ttl"): (
        "point: the short TTL must have run out and the rewritten one (60 s) not, 0.6 s later; a refusing"
        " backend refuses either"
    ),
    ("suites/test_contract_objects.py", "test_put_with_ttl_expires_or_is_not_supported", "ttl"): (
        "point: the TTL running out is what the test checks; it asserts only what holds once it ran out "
        "(a read before it is checked only when made before the TTL can have run out)"
    ),
    ("suites/test_contract_objects.py", "test_put_stream_with_ttl_expires_or_is_not_supported", "ttl"): (
        "point: the TTL running out is what the test checks; it asserts only what holds once it ran out "
        "(a read before it is checked only when made before the TTL can have run out)"
    ),
    ("suites/test_contract_objects.py", "test_overwrite_without_ttl_clears_expiry", "ttl"): (
        "point: an overwrite without TTL must keep the object past the first TTL; expiry before the "
        "overwrite leaves the same result"
    ),
    (
        "suites/test_contract_queue.py",
        "test_visibility_timeout_expiry_redelivers",
        "visibility_timeout",
    ): (
        "point: the redelivery once it runs out is what the test checks; it waits on the redelivery, "
        "never for less than the timeout"
    ),
    (
        "suites/test_contract_queue.py",
        "test_stale_ack_after_redelivery_is_refused",
        "visibility_timeout",
    ): (
        "point: the redelivery once it runs out is what the test checks; it waits on the redelivery, "
        "never for less than the timeout"
    ),
    (
        "suites/test_contract_queue.py",
        "test_a_long_redelivery_history_counts_every_attempt",
        "visibility_timeout",
    ): (
        "point: the redelivery once it runs out is what the test checks; it waits on the redelivery, "
        "never for less than the timeout"
    ),
    (
        "suites/test_contract_queue.py",
        "test_a_receive_whose_answer_is_late_hides_no_message_it_reports_empty",
        "visibility_timeout",
    ): ("point: the message must be back once this timeout ran out; the test waits past it"),
    ("suites/test_contract_transactions.py", "test_an_expired_counter_starts_again_from_one", "ttl"): (
        "point: the counter must have expired; the test sleeps well past the TTL and asserts only the restart"
    ),
    (
        "suites/test_cqrs.py",
        "test_a_read_model_that_does_not_catch_up_in_time_is_a_typed_error",
        "within",
    ): ("point: no sync runs, so the wait always runs out into ReadModelBehind; once synced the answer needs no wait"),
    (
        "suites/test_cqrs.py",
        "test_read_your_writes_waits_for_the_notification_position_of_two_interleaved_streams",
        "within",
    ): (
        "point: no sync runs before the first queries, so their wait always runs out into ReadModelBehind;"
        " once synced the answer needs no wait"
    ),
    (
        "suites/test_cqrs_cdc.py",
        "test_a_read_model_that_does_not_catch_up_in_time_is_a_typed_error",
        "within",
    ): (
        "point: nothing captures until catch_up(), so the wait always runs out into ReadModelBehind; once"
        " caught up the answer needs no wait"
    ),
    ("suites/test_lifecycle.py", "ProcessUnderTest.options", "graceful_timeout"): (
        "point: the forced stops' bounds are what the scenarios check; a stop that ignores its bound "
        "would wait this long"
    ),
    ("suites/test_lifecycle.py", "ProcessUnderTest.options", "force_timeout"): (
        "point: the forced stops' bounds are what the scenarios check; their waits add calm-op x slowness"
    ),
    ("suites/test_lifecycle.py", "ProcessUnderTest.options", "health_timeout"): (
        "point: a health check against a gone or hanging backend must run out into UNHEALTHY; healthy is "
        "awaited with patience.until"
    ),
    ("suites/test_lifecycle.py", "MigratorUnderTest.setup", "ttl"): MANUAL_CLOCK,
    (
        "suites/test_lifecycle.py",
        "Scenarios.test_a_graceful_stop_mid_batch_finishes_the_batch_and_a_restart_resumes",
        "within",
    ): ("point: a second stop of a stopped process must be refused at once, whatever its bound"),
    (
        "suites/test_multicast_registry.py",
        "test_a_metadata_update_changes_membership",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_reads_and_multicasts_do_not_extend_a_ttl",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_default_ttl_applies_when_none_is_given",
        "default_ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_an_update_with_ttl_none_never_expires",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_a_registry_backend_without_ttl_stores_and_expires",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_multicast_reaches_exactly_the_matching_identities_once",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_membership_is_decided_when_the_multicast_begins",
        "ttl",
    ): MANUAL_CLOCK,
    ("suites/test_multicast_registry.py", "test_ttl_edges_on_the_registry_clock", "ttl"): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_large_registries_across_scan_pages.add",
        "ttl",
    ): MANUAL_CLOCK,
    ("suites/test_multicast_registry.py", "test_metrics_count_what_happened", "ttl"): MANUAL_CLOCK,
    (
        "suites/test_multicast_registry.py",
        "test_bad_input_gets_typed_errors_and_changes_nothing",
        "max_ttl",
    ): VALIDATED,
    (
        "suites/test_multicast_registry.py",
        "test_bad_input_gets_typed_errors_and_changes_nothing",
        "ttl",
    ): VALIDATED,
    (
        "suites/test_outbox.py",
        "test_delete_cleanup_truncates_only_records_published_longer_ago_than_the_retention",
        "retention",
    ): MANUAL_CLOCK,
    ("suites/test_producer.py", "Bench.producer", "retry_backoff"): SLEEPS,
    ("suites/test_producer.py", "Bench.producer", "retry_backoff_max"): SLEEPS,
    (
        "suites/test_producer.py",
        "test_configuration_is_checked_before_anything_runs",
        "batch_interval",
    ): PARSED,
    (
        "suites/test_producer.py",
        "test_configuration_is_checked_before_anything_runs",
        "retry_backoff",
    ): PARSED,
    ("suites/test_stateful_consumer.py", "QueueConsumerMachine.__init__", "visibility_timeout"): (
        "point: a killed consumer's message must come back within the example; the checker tolerates "
        "redeliveries and waits (VISIBILITY + grace) x slowness before calling one lost"
    ),
    ("suites/test_stateful_outbox.py", "OutboxMachine.__init__", "lease_ttl"): (
        "virtual: the relays' lease runs on the machine's clock, which moves only when a rule says so"
    ),
    (
        "suites/test_tiered_storage.py",
        "test_tier_ttl_moves_values_down_and_the_last_tier_ttl_expires_them",
        "ttl",
    ): MANUAL_CLOCK,
    (
        "suites/test_wal.py",
        "test_a_poison_mutation_is_dead_lettered_after_its_attempts_while_others_flow",
        "backoff_initial",
    ): ("point: the retries' spacing is what the test checks, and only as a lower bound (late is allowed)"),
    (
        "suites/test_wal.py",
        "test_a_poison_mutation_is_dead_lettered_after_its_attempts_while_others_flow",
        "backoff_max",
    ): ("point: the retries' spacing is what the test checks, and only as a lower bound (late is allowed)"),
    (
        "suites/test_wal.py",
        "test_retries_back_off_doubling_from_backoff_initial_on_the_applier_clock",
        "backoff_initial",
    ): MANUAL_CLOCK,
    (
        "suites/test_wal.py",
        "test_retries_back_off_doubling_from_backoff_initial_on_the_applier_clock",
        "backoff_max",
    ): MANUAL_CLOCK,
    (
        "suites/test_wal.py",
        "test_the_checkpoint_is_committed_at_most_every_checkpoint_interval",
        "checkpoint_interval",
    ): MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_batches_by_size_and_a_partial_batch_waits_for_flush",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_publish_retries_with_exponential_backoff",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_retries_run_out_and_nothing_is_published_past_the_failure",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_a_sink_failing_mid_batch_loses_nothing_and_duplicates_only_lost_answers",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    ("suites/test_producer.py", "test_metrics_are_exact", "batch_interval"): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_a_batch_goes_to_one_destination_and_a_message_to_another_begins_the_next",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_graceful_stop_flushes_everything_within_its_bound",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
    (
        "suites/test_producer.py",
        "test_forced_stop_after_the_bound_reports_what_it_left",
        "batch_interval",
    ): PRODUCER_MANUAL_CLOCK,
}


@dataclass(frozen=True)
class Handed:
    file: str
    line: int
    function: str
    key: str
    value: str

    @property
    def where(self) -> tuple[str, str, str]:
        return (self.file, self.function, self.key)

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.function}): {self.key}={self.value}"


def numeric_constants(sources: list[str]) -> set[str]:
    """Module-level names bound to a fixed number or duration in any of ``sources``."""
    names: set[str] = set()
    for source in sources:
        for node in parse(source).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if fixed_time(node.value, set()):
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def fixed_time(expr: ast.expr, constants: set[str]) -> bool:
    """``expr`` is a number or duration fixed in the source, not derived from the machine (a
    conditional is fixed when either of its values is)."""
    if isinstance(expr, ast.IfExp):
        return fixed_time(expr.body, constants) or fixed_time(expr.orelse, constants)
    if any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) and n.func.value.id == "patience")
            or (isinstance(n.func, ast.Name) and n.func.id in {"handed", "bound"})
        )
        for n in ast.walk(expr)
    ):
        return False
    for n in ast.walk(expr):
        if isinstance(n, ast.Constant) and not isinstance(n.value, bool):
            if isinstance(n.value, int | float) and n.value != 0:
                return True
            if isinstance(n.value, str) and DURATION.match(n.value):
                return True
        if isinstance(n, ast.Name) and n.id in constants:
            return True
    return False


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str, constants: set[str]) -> None:
        self.file = file
        self.constants = constants
        self.stack: list[str] = []
        self.found: list[Handed] = []

    def _scope(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_ClassDef = _scope

    def _check(self, key: str, value: ast.expr) -> None:
        if TIME_KEY.search(key) and key not in NOT_TIME and fixed_time(value, self.constants):
            function = ".".join(self.stack) or "<module>"
            self.found.append(Handed(self.file, value.lineno, function, key, ast.unparse(value)))

    def _defaults(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        positional = args.posonlyargs + args.args
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
        pairs += [(arg, d) for arg, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            self._check(arg.arg, default)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self._defaults(node)  # a default is handed over by every call that leaves it out
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in HARNESS_WAITS:
            for keyword in node.keywords:
                if keyword.arg:
                    self._check(keyword.arg, keyword.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self._check(key.value, value)
        self.generic_visit(node)


def scan(source: str, file: str, constants: set[str]) -> list[Handed]:
    scanner = _Scanner(file, constants)
    scanner.visit(parse(source))
    return scanner.found


def scan_suites() -> list[Handed]:
    files = sorted(SUITES.glob("*.py"))
    constants = numeric_constants([path.read_text() for path in files])
    found: list[Handed] = []
    for path in files:
        found += scan(path.read_text(), path.relative_to(SUITES.parent).as_posix(), constants)
    return found


def test_every_time_handed_to_a_system_under_test_is_derived_virtual_or_the_point() -> None:
    bets = [h for h in scan_suites() if h.where not in ALLOWED]
    assert not bets, (
        "times handed to a system under test as fixed numbers (a bet on the machine's speed): derive each "
        "from prism_testkit.patience (handed('lease'), handed('poll'), bound(...)), run it on a virtual "
        "clock, or, when its expiry is the test's point, assert only what holds once it expired and add "
        "it to ALLOWED with the reason:\n" + "\n".join(f"  {h}" for h in bets)
    )


def test_every_allowlist_entry_names_a_kind_and_is_still_used() -> None:
    assert all(reason.split(":", 1)[0] in {"virtual", "point", "interface"} for reason in ALLOWED.values())
    used = {h.where for h in scan_suites()}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


def test_the_scan_sees_literals_constants_durations_and_config_keys() -> None:
    source = """
SHORT = 0.3
def t(q, p):
    q.receive("n", visibility_timeout=SHORT)
    cfg = {"poll_interval": 0.02, "lease_ttl": patience.handed("lease"), "name": "x"}
    Config(batch_interval="250ms", retry_backoff=0.0, ttl=None, snapshot_interval=3)
    eventually(check, within=1.0)
    q.put("k", ttl=patience.handed("lease"))
    q.receive("n", visibility_timeout=SHORT if x else patience.handed("lease"))
"""
    constants = numeric_constants([source])
    found = [(h.line, h.key) for h in scan(source, "s.py", constants)]
    assert found == [(4, "visibility_timeout"), (5, "poll_interval"), (6, "batch_interval"), (9, "visibility_timeout")]


# A deadline of the harness's own waits in a test, ``time.monotonic() + 5``, is the same bet seen
# from the other side: the wait fails the test once a loaded machine is slower than the number.
# CI went red on such waits in tests/ that the scan of prism_testkit/suites/ above never read.
def fixed_deadlines(source: str, file: str) -> list[str]:
    """Each ``<clock>.monotonic() + <number>`` in ``source``: ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)):
            continue
        clock, amount = node.left, node.right
        if (
            isinstance(clock, ast.Call)
            and isinstance(clock.func, ast.Attribute)
            and clock.func.attr == "monotonic"
            and isinstance(amount, ast.Constant)
            and isinstance(amount.value, int | float)
        ):
            found.append(f"{file}:{node.lineno}")
    return found


def test_no_wait_of_the_project_own_tests_has_a_fixed_deadline() -> None:
    files = sorted([*(ROOT / "tests").glob("*.py"), *SUITES.glob("*.py")])
    bets = [where for path in files for where in fixed_deadlines(path.read_text(), str(path.relative_to(ROOT)))]
    assert files
    assert not bets, (
        "waits whose deadline is a fixed number of seconds (a bet on the machine's speed): bound them by "
        "prism_testkit.patience.bound(...), scaled by slowness:\n" + "\n".join(f"  {b}" for b in bets)
    )


def test_the_deadline_scan_sees_a_fixed_deadline_and_not_a_derived_one() -> None:
    source = """
deadline = time.monotonic() + 5
later = clocks.monotonic() + 0.5
fine = time.monotonic() + bound("calm-op")
"""
    assert fixed_deadlines(source, "t.py") == ["t.py:2", "t.py:3"]


# A deadline loop written by hand is a wait patience cannot see: it names no bound in its
# failure, ignores progress, and often falls through silently. It comes in two forms: a
# deadline computed first (``deadline = time.monotonic() + X`` and a loop that reads it), or a
# loop that compares the clock itself (``while time.monotonic() - started < X``,
# ``if clocks.monotonic() >= deadline: return`` in a ``while True``, ``(left := deadline -
# clocks.monotonic()) > 0``). Waits go through prism_testkit.patience (``until``,
# ``until_sync``, ``poll_until``, ``repeat_until``); the few left by hand say why with
# ``# hand-rolled: <reason>`` on the line that computes the deadline, or, for the second form,
# on the line of the loop's clock comparison (the loop measures time itself, must not raise,
# or is the thing under test).
HAND_ROLLED_MOST = 10
HAND_ROLLED_REASON = re.compile(r"#\s*hand-rolled:\s*(\S.*)$")
_LOOPS = (ast.While, ast.For, ast.AsyncFor)


@dataclass(frozen=True)
class DeadlineLoop:
    where: str
    reason: str | None  # the text after "# hand-rolled:", or None


def _is_clock_read(node: ast.AST) -> bool:
    """``<clock>.monotonic()`` or a bare ``monotonic()``."""
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "monotonic")
        or (isinstance(node.func, ast.Name) and node.func.id == "monotonic")
    )


def _is_clock_deadline(node: ast.AST) -> bool:
    """``<clock>.monotonic() + X`` (or ``X + <clock>.monotonic()``) somewhere in ``node``."""
    return any(
        isinstance(sub, ast.BinOp)
        and isinstance(sub.op, ast.Add)
        and (_is_clock_read(sub.left) or _is_clock_read(sub.right))
        for sub in ast.walk(node)
    )


def _is_clock_comparison(node: ast.AST) -> bool:
    """A comparison with the clock as one side: ``monotonic() < deadline``, ``monotonic() -
    started < X``, ``deadline - monotonic() > 0`` (also inside a ``:=``)."""
    if not isinstance(node, ast.Compare):
        return False
    for side in (node.left, *node.comparators):
        if isinstance(side, ast.NamedExpr):
            side = side.value
        if _is_clock_read(side):
            return True
        if (
            isinstance(side, ast.BinOp)
            and isinstance(side.op, ast.Sub)
            and (_is_clock_read(side.left) or _is_clock_read(side.right))
        ):
            return True
    return False


def _scopes(tree: ast.Module) -> list[ast.AST]:
    return [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))]


def _own_parents(scope: ast.AST) -> dict[ast.AST, ast.AST]:
    """Each node of ``scope`` outside the functions nested in it, with its parent."""
    parents: dict[ast.AST, ast.AST] = {}
    todo = [scope]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            parents[child] = node
            todo.append(child)
    return parents


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of ``scope`` outside the functions nested in it."""
    return list(_own_parents(scope))


def _reason(lines: list[str], first: int, last: int) -> str | None:
    """The ``# hand-rolled:`` reason on lines ``first``..``last`` (1-based), if one says it."""
    said = (HAND_ROLLED_REASON.search(line) for line in lines[first - 1 : last])
    return next((match.group(1).strip() for match in said if match), None)


def _clock_compared_loops(scope: ast.AST, counted: set[str], lines: list[str], file: str) -> list[DeadlineLoop]:
    """The loops of ``scope`` that compare the clock themselves (each comparison belongs to its
    innermost loop), but for those that read a deadline name already ``counted``: ``file:line``
    of the loop's first clock comparison, and a ``# hand-rolled:`` reason on the line of one of
    its comparisons."""
    parents = _own_parents(scope)
    compared: dict[ast.AST, list[ast.Compare]] = {}
    for node in parents:
        if not (isinstance(node, ast.Compare) and _is_clock_comparison(node)):
            continue
        loop = parents.get(node)
        while loop is not None and loop is not scope and not isinstance(loop, _LOOPS):
            loop = parents.get(loop)
        if isinstance(loop, _LOOPS):
            compared.setdefault(loop, []).append(node)
    found = []
    for loop, comparisons in compared.items():
        if any(isinstance(sub, ast.Name) and sub.id in counted for sub in ast.walk(loop)):
            continue  # its deadline was counted where it was computed
        comparisons.sort(key=lambda c: c.lineno)
        reasons = (_reason(lines, c.lineno, c.end_lineno or c.lineno) for c in comparisons)
        found.append(DeadlineLoop(f"{file}:{comparisons[0].lineno}", next((r for r in reasons if r), None)))
    return found


def deadline_loops(source: str, file: str) -> list[DeadlineLoop]:
    """The deadline loops written by hand in ``source``, each with ``file:line`` and its
    ``# hand-rolled:`` reason (None if it gives none):

    - each name assigned ``<clock>.monotonic() + X`` that a ``while`` loop of the same function
      reads (in its condition or its body), at the assignment, whose lines may carry the reason;
    - each loop that compares the clock itself (:func:`_is_clock_comparison`, in its condition
      or its body), at its first such comparison, whose line may carry the reason."""
    lines = source.splitlines()
    found = []
    for scope in _scopes(ast.parse(source)):
        own = _own_nodes(scope)
        loops = [n for n in own if isinstance(n, ast.While)]
        read_in_loops = {
            sub.id
            for loop in loops
            for sub in ast.walk(loop)
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
        }
        counted: set[str] = set()
        for node in own:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if not (names & read_in_loops and _is_clock_deadline(value)):
                continue
            counted |= names
            found.append(
                DeadlineLoop(f"{file}:{node.lineno}", _reason(lines, node.lineno, node.end_lineno or node.lineno))
            )
        found += _clock_compared_loops(scope, counted, lines, file)
    return sorted(found, key=lambda d: (d.where.rsplit(":", 1)[0], int(d.where.rsplit(":", 1)[1])))


def _own_loops() -> list[DeadlineLoop]:
    files = sorted([*(ROOT / "tests").rglob("*.py"), *SUITES.rglob("*.py")])
    assert files
    return [loop for path in files for loop in deadline_loops(path.read_text(), str(path.relative_to(ROOT)))]


def test_few_deadline_loops_are_hand_rolled_and_each_says_why() -> None:
    loops = _own_loops()
    unexplained = [loop.where for loop in loops if loop.reason is None]
    assert not unexplained, (
        "deadline loops written by hand: wait through prism_testkit.patience (until, until_sync, poll_until, "
        "repeat_until), or say why not with '# hand-rolled: <reason>' on the line named (its deadline, or its "
        "comparison of the clock):\n" + "\n".join(f"  {where}" for where in unexplained)
    )
    assert len(loops) <= HAND_ROLLED_MOST, (
        f"{len(loops)} hand-rolled deadline loops (at most {HAND_ROLLED_MOST}): wait through prism_testkit.patience:\n"
        + "\n".join(f"  {loop.where}: {loop.reason}" for loop in loops)
    )


def test_the_loop_scan_sees_a_deadline_loop_and_its_reason() -> None:
    source = """
def a():
    deadline = time.monotonic() + bound("calm-op")
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)

async def b(within):
    deadline = clocks.monotonic() + within  # hand-rolled: it samples for a duration
    while True:
        if clocks.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)

def c(reader):
    messages = reader.until_now(time.monotonic() + 5)  # a deadline handed over, no loop
    later = time.monotonic() + 1
    return later

def d():
    limit: float = (
        time.monotonic()
        + bound("recovery")  # hand-rolled: it re-raises the last error
    )
    while time.monotonic() < limit:
        def inner():
            deadline = 3
        pass
"""
    assert deadline_loops(source, "t.py") == [
        DeadlineLoop("t.py:3", None),
        DeadlineLoop("t.py:8", "it samples for a duration"),
        DeadlineLoop("t.py:20", "it re-raises the last error"),
    ]


def test_the_loop_scan_sees_a_loop_that_compares_the_clock_itself() -> None:
    source = """
def a(pid):
    started = time.monotonic()
    while state(pid) != "T" and time.monotonic() - started < 5:
        time.sleep(0.001)

async def b(take, missing, deadline, later):
    while True:
        if await take():
            continue
        if clocks.monotonic() >= (later if missing() else deadline):  # hand-rolled: a visibility deadline
            return

async def c(queue, deadline):
    while (left := deadline - clocks.monotonic()) > 0:
        await queue.receive(wait=left)

def d(started):
    assert time.monotonic() - started < 30  # a measure, no loop
    for attempt in range(3):
        if monotonic() > started + 1:
            break

def e():
    deadline = time.monotonic() + bound("calm-op")  # hand-rolled: counted once, here
    while True:
        while time.monotonic() < deadline:
            pass
        if time.monotonic() - deadline > 1:
            break

def f(started):
    while True:
        def inner():
            return time.monotonic() - started < 5
        if inner():
            return
"""
    assert deadline_loops(source, "t.py") == [
        DeadlineLoop("t.py:4", None),
        DeadlineLoop("t.py:11", "a visibility deadline"),
        DeadlineLoop("t.py:15", None),
        DeadlineLoop("t.py:21", None),
        DeadlineLoop("t.py:25", "counted once, here"),
    ]
