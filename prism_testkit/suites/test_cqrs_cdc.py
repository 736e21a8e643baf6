"""Acceptance suite of CQRS fed by CDC (RFC-009 "CDC + CQRS"), over every compatible
(change-feed source x read-model backend) combination. It belongs to the ``cqrs`` suite, so
``--prism-pattern=cqrs`` runs it beside the event-sourced read models of ``test_cqrs.py``.

``source`` holds the row write model (bank accounts, commands validated in a transaction) and
its change feed; ``read`` holds the read models, applied by the CDC connector through
:class:`~prism_testkit.patterns.cqrs_cdc.ReadModelSink` with per-batch transactions where the
backend has them, else position-stamped compare-and-set writes.

What it guarantees, each proved against the write model itself: read models converge under
concurrent commands; a rolled-back or refused command is never visible, not even for a moment;
a read model killed mid-batch and restarted neither skips nor applies twice (a counter of
applied changes per row would show either); read-your-writes waits for the command's change
position, or raises the typed ``ReadModelBehind``; a read model rebuilt from scratch (initial
snapshot while writers write) equals the incrementally maintained one; lag beyond the tolerance
raises the alert.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import TransactionAborted
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.cdc import CdcConfig
from prism_testkit.patterns.cqrs import CqrsConfig, ReadModelBehind, UnknownReadModel
from prism_testkit.patterns.cqrs_cdc import CdcCqrs, CdcReadModel, Done, RowChange, Rows, RowWriteModel
from prism_testkit.patterns.event_sourcing import ViewWriter
from prism_testkit.simulation.clock import ManualClock

from ._bank import view_kinds, views_store
from ._doubles import Killed
from ._helpers import in_background as syncing
from ._helpers import prism_settings

pytestmark = prism_suite(
    "cqrs",
    source=Slot.needs("changefeed", "keyvalue.scan", "transactions"),
    read=Slot.needs("keyvalue.cas"),
)

ACCOUNTS = [f"accounts/{name}" for name in "abcd"]
TOLERANCE = 2.0
POISON = 999_999  # the balance rolled-back commands write: must never be seen anywhere


class Refused(Exception):
    """A command the current rows do not allow (its transaction rolls back)."""


# --- commands (validated against the rows, in the command's transaction) ------------------


def open_account(key: str) -> Any:
    async def decide(rows: Rows) -> None:
        if await rows.get(key) is not None:
            raise Refused(f"{key} is open")
        await rows.put(key, {"balance": 0})

    return decide


def deposit(key: str, amount: int) -> Any:
    async def decide(rows: Rows) -> int:
        row = await rows.get(key)
        if row is None:
            raise Refused(f"{key} is not open")
        await rows.put(key, {"balance": row["balance"] + amount})
        return int(row["balance"] + amount)

    return decide


def transfer(source: str, target: str, amount: int) -> Any:
    async def decide(rows: Rows) -> None:
        a, b = await rows.get(source), await rows.get(target)
        if a is None or b is None or source == target:
            raise Refused("both accounts must be open and different")
        if a["balance"] < amount:
            raise Refused(f"{source} would overdraw")
        await rows.put(source, {"balance": a["balance"] - amount})
        await rows.put(target, {"balance": b["balance"] + amount})

    return decide


def close(key: str) -> Any:
    async def decide(rows: Rows) -> None:
        row = await rows.get(key)
        if row is None or row["balance"] != 0:
            raise Refused(f"{key} is not open or not empty")
        await rows.delete(key)

    return decide


def audit(key: str) -> Any:
    """Validates the row and writes none: only the command's journal row commits."""

    async def decide(rows: Rows) -> int:
        row = await rows.get(key)
        if row is None:
            raise Refused(f"{key} is not open")
        return int(row["balance"])

    return decide


def poisoned(key: str, other: str) -> Any:
    """Writes the poison balance to two rows, then is refused: all of it rolls back."""

    async def decide(rows: Rows) -> None:
        await rows.put(key, {"balance": POISON})
        await rows.put(other, {"balance": POISON})
        raise Refused("rolled back after writing")

    return decide


def random_command(rnd: random.Random) -> Any:
    kind = rnd.choice(["open", "deposit", "deposit", "transfer", "transfer", "close", "poison"])
    a, b = rnd.sample(ACCOUNTS, 2)
    if kind == "open":
        return open_account(a)
    if kind == "deposit":
        return deposit(a, rnd.randint(1, 40))
    if kind == "transfer":
        return transfer(a, b, rnd.randint(1, 30))
    if kind == "close":
        return close(a)
    return poisoned(a, b)


# --- the read model ------------------------------------------------------------------------


async def balances(views: ViewWriter, change: RowChange) -> None:
    """Per account its balance, the bank's total and number of accounts (state-based: a
    snapshot row or a change gives the row's new state), and per account a counter of the
    stream changes applied, which a skipped or doubled change makes wrong. The row's own key
    is written last: the others derive from its old value."""
    if change.table != "accounts":
        return
    old = await views.get(change.key)
    new = None if change.after is None else change.after["balance"]
    await views.put("total", (await views.get("total") or 0) + (new or 0) - (old or 0))
    await views.put("accounts", (await views.get("accounts") or 0) + (new is not None) - (old is not None))
    if not change.snapshot:
        await views.put(f"applied/{change.key}", (await views.get(f"applied/{change.key}") or 0) + 1)
    if new is None:
        await views.delete(change.key)
    else:
        await views.put(change.key, new)


async def images(views: ViewWriter, change: RowChange) -> None:
    """Per row, every change's (before, after) images in the order they came."""
    seen = await views.get(f"images/{change.key}") or []
    await views.put(f"images/{change.key}", [*seen, [change.table, change.before, change.after]])


async def read_own_write(cqrs: CdcCqrs, model: str, key: str, done: Done[Any], what: str) -> Any:
    """``key`` of ``model`` after command ``done``; the wait running out fails naming ``what``."""
    try:
        return await cqrs.query(model, key, after=done)
    except ReadModelBehind as behind:
        pytest.fail(f"read-your-writes never reached {what} (command id {done.command_id!r}): {behind}")


class Dying:
    """A handler that dies at its ``lives``-th row change (mid-transaction for transfers)."""

    def __init__(self, lives: int) -> None:
        self.lives = lives

    async def __call__(self, views: ViewWriter, change: RowChange) -> None:
        self.lives -= 1
        if self.lives <= 0:
            raise Killed(f"read model killed while applying change position {change.position}")
        await balances(views, change)


# --- wiring and judging --------------------------------------------------------------------


class Bank:
    def __init__(self, prism_env: PrismEnv, ns: Namespace) -> None:
        self.prism_env, self.ns = prism_env, ns
        source = prism_env.driver("source")
        self.write = RowWriteModel(source.transactions(), source.keyvalue(), ns.name("bank/"))
        self.expected_applied: Counter[str] = Counter()  # row -> committed commands that wrote it
        self._captures = itertools.count()

    def cdc(self, capture: str = "capture", **changes: Any) -> CdcConfig:
        settings: dict[str, Any] = {
            "capture": self.ns.name(capture),
            "prefix": self.write.prefix,
            "state_key": self.ns.name(f"{capture}.snapshot"),
            "poll_interval": patience.handed("poll"),
            "batch_size": 3,
            "snapshot": "never",
        }
        return CdcConfig(**{**settings, **changes})

    def model(self, name: str, kind: str | None = None, handler: Any = balances) -> CdcReadModel:
        driver = self.prism_env.driver("read")
        return CdcReadModel(views_store(driver, self.ns, name, kind or view_kinds(driver)[0]), handler)

    def cqrs(
        self, models: dict[str, CdcReadModel] | None = None, *, cdc: CdcConfig | None = None, clock: Any = None
    ) -> CdcCqrs:
        source = self.prism_env.driver("source")
        return CdcCqrs(
            self.write,
            source.changefeed(),
            models or {"balances": self.model("balances")},
            CqrsConfig(sync_from="cdc", lag_tolerance=TOLERANCE, read_your_writes_timeout=patience.bound("calm-op")),
            cdc=cdc or self.cdc(),
            **({} if clock is None else {"clock": clock}),
        )

    async def command(self, cqrs: CdcCqrs, decide: Any) -> Done[Any] | None:
        """Run one command; None when refused or aborted (then nothing was written)."""
        try:
            done = await cqrs.execute(decide, attempts=8)
        except (Refused, TransactionAborted):
            return None
        self.expected_applied.update(list(done.written))
        return done

    async def client(self, cqrs: CdcCqrs, seed: int, commands: int) -> None:
        rnd = random.Random(seed)
        for _ in range(commands):
            await self.command(cqrs, random_command(rnd))
            await asyncio.sleep(0)

    async def seed(self, cqrs: CdcCqrs) -> None:
        for key in ACCOUNTS:
            await self.command(cqrs, open_account(key))
            await self.command(cqrs, deposit(key, 50))

    async def judge(self, cqrs: CdcCqrs, model: str, *, counts: bool = True) -> None:
        """The read model equals the write model's rows (and applied each change once)."""
        rows = await self.write.rows("accounts")
        diffs = []
        for key in ACCOUNTS:
            want = rows[key]["balance"] if key in rows else None
            got = await cqrs.query(model, key)
            if got != want:
                diffs.append(f"{key}: read {got!r}, written {want!r}")
            if counts and (got_n := await cqrs.query(model, f"applied/{key}") or 0) != self.expected_applied[key]:
                diffs.append(f"{key}: {got_n} changes applied, {self.expected_applied[key]} committed")
        total = sum(r["balance"] for r in rows.values())
        if (got_total := await cqrs.query(model, "total") or 0) != total:
            diffs.append(f"total: read {got_total}, written {total}")
        if (got_accounts := await cqrs.query(model, "accounts") or 0) != len(rows):
            diffs.append(f"accounts: read {got_accounts}, written {len(rows)}")
        assert not diffs, f"read model {model!r} diverged from the write model: " + "; ".join(diffs)


# --- tests ---------------------------------------------------------------------------------


async def test_read_models_converge_under_concurrent_commands(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        await bank.seed(cqrs)
        async with syncing(cqrs):
            await asyncio.gather(*(bank.client(cqrs, seed, 15) for seed in range(4)))
        await cqrs.catch_up()
        assert sum(bank.expected_applied.values()) > len(ACCOUNTS) * 2, "no command beyond the seed committed"
        overdrawn = {k: r for k, r in (await bank.write.rows("accounts")).items() if r["balance"] < 0}
        assert not overdrawn, f"concurrent commands were validated against stale rows: {overdrawn}"
        await bank.judge(cqrs, "balances")
        assert all(h.events_behind == 0 and not h.alert for h in await cqrs.health())


async def test_rolled_back_commands_are_never_visible(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        await bank.seed(cqrs)
        seen: set[Any] = set()
        stop = asyncio.Event()

        async def watch() -> None:  # a reader polling the read model all along
            while not stop.is_set():
                for key in ACCOUNTS:
                    seen.add(await cqrs.query("balances", key))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            async with syncing(cqrs):
                for round_ in range(6):
                    for key, other in itertools.pairwise(ACCOUNTS):
                        with pytest.raises(Refused):
                            await cqrs.execute(poisoned(key, other))
                        await bank.command(cqrs, deposit(key, round_ + 1))
            await cqrs.catch_up()
        finally:
            stop.set()
            await watcher
        assert POISON not in seen, "a rolled-back command's write reached the read model"
        assert all(row["balance"] != POISON for row in (await bank.write.rows("accounts")).values())
        await bank.judge(cqrs, "balances")


@pytest.mark.parametrize("kill_at", [1, 2, 5])
async def test_a_read_model_killed_mid_batch_neither_skips_nor_doubles(prism_env: PrismEnv, kill_at: int) -> None:
    """A read model per view kind the backend offers; one at a time dies at its
    ``kill_at``-th row change, mid-batch and, for transfers, mid-transaction."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        kinds = view_kinds(prism_env.driver("read"))
        names = [f"balances-{kind}" for kind in kinds]
        first = bank.cqrs({name: bank.model(name, kind) for name, kind in zip(names, kinds, strict=True)})
        await first.start()
        await bank.seed(first)
        await first.catch_up()
        rnd = random.Random(kill_at)
        for _ in range(8):
            a, b = rnd.sample(ACCOUNTS, 2)
            await bank.command(first, transfer(a, b, rnd.randint(1, 20)))
            await bank.command(first, deposit(a, rnd.randint(1, 9)))
        for attempt in range(3):  # killed again and again, each time after a restart
            models = {name: bank.model(name, kind) for name, kind in zip(names, kinds, strict=True)}
            victim = attempt % len(names)  # each view kind dies in turn
            models[names[victim]] = bank.model(names[victim], kinds[victim], Dying(kill_at + attempt))
            with pytest.raises(Killed):
                await bank.cqrs(models).catch_up()
        restarted = bank.cqrs({name: bank.model(name, kind) for name, kind in zip(names, kinds, strict=True)})
        await restarted.catch_up()
        for name in names:
            await bank.judge(restarted, name)


async def test_read_your_writes_waits_for_the_commands_change_position(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        async with syncing(cqrs):
            await cqrs.execute(open_account(ACCOUNTS[0]))
            for amount in (30, 12, 7):
                done = await cqrs.execute(deposit(ACCOUNTS[0], amount))
                assert await cqrs.query("balances", ACCOUNTS[0], after=done) == done.result
            await cqrs.execute(open_account(ACCOUNTS[1]))
            done = await cqrs.execute(transfer(ACCOUNTS[0], ACCOUNTS[1], 40))
            assert await cqrs.query("balances", ACCOUNTS[1], after=done.command_id) == 40
            assert await cqrs.query("balances", ACCOUNTS[0], after=done) == 9


async def test_a_command_retried_with_its_id_after_it_committed_is_not_applied_again(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        key = ACCOUNTS[0]
        await cqrs.execute(open_account(key))
        first = await cqrs.execute(deposit(key, 25), command_id="deposit-once")
        retried = await cqrs.execute(deposit(key, 25), command_id="deposit-once")  # its answer was lost
        assert (first.duplicate, retried.duplicate, retried.written) == (False, True, {}), (
            f"a command retried with the id of one that committed was not reported as a duplicate: {retried}"
        )
        assert await bank.write.get(key) == {"balance": 25}, (
            f"a command retried with its id ran again: the row is {await bank.write.get(key)}, not a balance of 25"
        )
        assert cqrs.metrics.commands == 2, f"{cqrs.metrics.commands} commands counted, not 2 (the retry is none)"
        await cqrs.catch_up()
        assert await cqrs.query("balances", key, after=retried) == 25


async def test_a_command_that_writes_no_row_is_read_your_writes_too(prism_env: PrismEnv) -> None:
    """A command validated and accepted without changing a row commits its journal row alone:
    the read model holds nothing new, yet its position must pass the command."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        key = ACCOUNTS[0]
        await cqrs.execute(open_account(key))
        await cqrs.execute(deposit(key, 7))
        done = await cqrs.execute(audit(key))
        assert (done.result, dict(done.written)) == (7, {})
        await cqrs.catch_up()
        assert await read_own_write(cqrs, "balances", key, done, "a command that changed no row") == 7


HOSTILE_IDS = ("open/eu/1", "deposit 1 \u00fc/%2F/..", "/", "tab\tand \u2603/")


async def test_hostile_command_and_row_ids_reach_the_read_model(prism_env: PrismEnv) -> None:
    """Command ids and row ids with slashes, spaces, escapes and non-ASCII: read-your-writes
    finds each command and the handler sees each row under its table and whole id."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs({"images": bank.model("images", handler=images)})
        await cqrs.start()
        key = "accounts/eu/\u00fcber 1/../%2F"
        commands = [open_account(key), deposit(key, 5), deposit(key, 6), audit(key)]
        for command_id, decide in zip(HOSTILE_IDS, commands, strict=True):
            done = await cqrs.execute(decide, command_id=command_id)
            assert done.command_id == command_id
            await cqrs.catch_up()
            await read_own_write(cqrs, "images", f"images/{key}", done, f"the command of id {command_id!r}")
        got = await cqrs.query("images", f"images/{key}")
        want = [["accounts", None, {"balance": 0}], ["accounts", {"balance": 0}, {"balance": 5}]]
        want.append(["accounts", {"balance": 5}, {"balance": 11}])
        assert got == want, f"the changes of row {key!r} reached the read model's handler as {got}, not {want}"


async def test_each_row_change_carries_the_row_before_and_after_it(prism_env: PrismEnv) -> None:
    """The handler sees, for every committed change, the row as it was and as it became (None
    where it did not exist), transfers and deletes included."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs({"images": bank.model("images", handler=images)})
        await cqrs.start()
        a, b = ACCOUNTS[:2]
        for decide in (open_account(a), open_account(b), deposit(a, 5), transfer(a, b, 5), close(a), deposit(b, 2)):
            assert await bank.command(cqrs, decide) is not None
        await cqrs.catch_up()
        wanted = {
            a: [[None, {"balance": 0}], [{"balance": 0}, {"balance": 5}], [{"balance": 5}, {"balance": 0}]],
            b: [[None, {"balance": 0}], [{"balance": 0}, {"balance": 5}], [{"balance": 5}, {"balance": 7}]],
        }
        wanted[a].append([{"balance": 0}, None])
        for key, want in wanted.items():
            got = [image[1:] for image in await cqrs.query("images", f"images/{key}") or []]
            assert got == want, (
                f"the changes of row {key} reached the read model's handler as (before, after) {got}, "
                f"the rows were {want}"
            )


async def test_a_read_model_that_does_not_catch_up_in_time_is_a_typed_error(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()
        await cqrs.start()
        await cqrs.execute(open_account(ACCOUNTS[0]))
        done = await cqrs.execute(deposit(ACCOUNTS[0], 9))
        with pytest.raises(ReadModelBehind) as info:
            await cqrs.query("balances", ACCOUNTS[0], after=done, within=0.2)
        assert (info.value.model, info.value.position, info.value.wanted) == ("balances", 0, None)
        assert cqrs.metrics.read_your_writes_timeouts == 1
        await cqrs.catch_up()
        assert await cqrs.query("balances", ACCOUNTS[0], after=done, within=0.5) == 9
        later = await cqrs.execute(deposit(ACCOUNTS[0], 1))
        with pytest.raises(ReadModelBehind) as info:
            await cqrs.query("balances", ACCOUNTS[0], after=later, within=0.2)
        assert info.value.position > 0, "the model's position did not move when it caught up"
        with pytest.raises(UnknownReadModel):
            await cqrs.query("nope", ACCOUNTS[0])


async def test_a_rebuilt_read_model_equals_the_incremental_one(prism_env: PrismEnv) -> None:
    """The rebuild starts from nothing while writers write: an initial snapshot in watermark
    chunks, then the stream."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        incremental = bank.cqrs()
        await incremental.start()
        await bank.seed(incremental)
        async with syncing(incremental):
            await bank.client(incremental, 100, 20)
            rebuild = bank.cqrs(
                {"rebuilt": bank.model("rebuilt")},
                cdc=bank.cdc("rebuild", snapshot="initial", snapshot_chunk_size=2),
            )
            async with syncing(rebuild):
                await asyncio.gather(bank.client(incremental, 101, 15), bank.client(incremental, 102, 15))
            await rebuild.catch_up()
        await incremental.catch_up()
        assert rebuild.connector.metrics.snapshot_rows > 0, "the rebuild read no existing row"
        await bank.judge(incremental, "balances")
        await bank.judge(rebuild, "rebuilt", counts=False)  # a rebuild has not seen every change
        for key in [*ACCOUNTS, "total", "accounts"]:
            assert await rebuild.query("rebuilt", key) == await incremental.query("balances", key), key


async def test_lag_beyond_the_tolerance_raises_the_alert(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        clock = ManualClock(clocks.wall())  # lag is measured from the change feed's wall-clock commit times
        cqrs = bank.cqrs(clock=clock)
        await cqrs.start()
        await cqrs.execute(open_account(ACCOUNTS[0]))
        clock.now = clocks.wall() + TOLERANCE / 2
        report = await cqrs.health()
        assert [(h.events_behind, h.alert) for h in report] == [(2, False)]  # the row and the journal row
        clock.advance(TOLERANCE)
        (behind,) = await cqrs.health()
        assert behind.alert
        assert behind.seconds_behind > TOLERANCE
        assert cqrs.metrics.lag_alerts == 1
        await cqrs.catch_up()
        assert [(h.events_behind, h.alert) for h in await cqrs.health()] == [(0, False)]
        assert cqrs.metrics.lag_alerts == 1


async def test_lag_is_measured_from_the_oldest_unapplied_transaction(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        clock = ManualClock(clocks.wall())
        cqrs = bank.cqrs(clock=clock)
        await cqrs.start()
        key = ACCOUNTS[0]
        await cqrs.execute(open_account(key))
        capture = cqrs.connector.config.capture
        (first,) = [s for s in await cqrs.feed.read(capture) if s.changes]

        async def wall() -> float:
            return clocks.wall()

        # the next command must commit at a later millisecond: wait for the wall clock to pass it
        await patience.until(wall, lambda now: now * 1000 > first.commit_ts_ms + 1, what="the next millisecond")
        await cqrs.execute(deposit(key, 3))
        oldest, newest = [s for s in await cqrs.feed.read(capture) if s.changes]
        assert (oldest.position, oldest.commit_ts_ms) == (first.position, first.commit_ts_ms)
        assert newest.commit_ts_ms > oldest.commit_ts_ms
        clock.now = newest.commit_ts_ms / 1000 + TOLERANCE  # the newest one is just within the tolerance
        (health,) = await cqrs.health()
        expected = clock.now - oldest.commit_ts_ms / 1000
        assert health.seconds_behind == pytest.approx(expected), (
            f"the lag reads {health.seconds_behind:.3f}s, not the {expected:.3f}s since the oldest unapplied "
            "transaction committed"
        )
        assert (health.events_behind, health.alert) == (4, True)


async def test_health_counts_every_change_a_read_model_has_not_applied(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        cqrs = bank.cqrs()  # the connector delivers 3 transactions per batch
        await cqrs.start()
        key = ACCOUNTS[0]
        await cqrs.execute(open_account(key))
        await cqrs.catch_up()
        amounts = (1, 2, 4, 8)
        for amount in amounts:
            await cqrs.execute(deposit(key, amount))  # a row change and a journal row each
        await cqrs.sync_once()
        balance = await cqrs.query("balances", key)
        applied = next(n for n in range(len(amounts) + 1) if sum(amounts[:n]) == balance)
        assert applied < len(amounts), "one batch of 3 applied all 4 deposits"
        (health,) = await cqrs.health()
        missing = 2 * (len(amounts) - applied)
        assert health.events_behind == missing, (
            f"the read model applied {applied} of {len(amounts)} deposits ({missing} row changes not applied), "
            f"health reports {health.events_behind} events behind"
        )


Step = tuple[str, int]
STEPS: st.SearchStrategy[list[Step]] = st.lists(
    st.tuples(st.sampled_from(["command", "command", "command", "sync", "crash"]), st.integers(0, 2**16)),
    max_size=30,
)


@prism_settings
@given(steps=STEPS)
async def test_any_interleaving_of_commands_syncs_and_crashes_converges(prism_env: PrismEnv, steps: list[Step]) -> None:
    """Hypothesis chooses the commands, when the connector delivers a batch, and when a read
    model dies mid-batch (at which row change); a restarted instance then takes over."""
    async with prism_env.example() as ns:
        bank = Bank(prism_env, ns)
        kinds = view_kinds(prism_env.driver("read"))
        names = [f"balances-{kind}" for kind in kinds]

        def instance(dying: tuple[int, int] | None = None) -> CdcCqrs:
            models = {name: bank.model(name, kind) for name, kind in zip(names, kinds, strict=True)}
            if dying is not None:
                victim = dying[0] % len(names)
                models[names[victim]] = bank.model(names[victim], kinds[victim], Dying(dying[1]))
            return bank.cqrs(models)

        cqrs = instance()
        await cqrs.start()
        await bank.seed(cqrs)
        for kind, n in steps:
            if kind == "command":
                await bank.command(cqrs, random_command(random.Random(n)))
            elif kind == "sync":
                await cqrs.sync_once()
            else:
                with suppress(Killed):
                    await instance((n, 1 + n % 5)).sync_once()
                cqrs = instance()  # the restarted process
        await cqrs.catch_up()
        for name in names:
            await bank.judge(cqrs, name)
