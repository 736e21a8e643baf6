"""Acceptance suite of CQRS (RFC-009 §6) fed by the event store's notifications, over every
compatible (write x balances x activity) combination: an event-sourced write model and two read
models, each on its own backend (per-batch transactions where it has them, else offset-stamped
compare-and-set writes).

What it guarantees: commands are validated against the write model's current state (a refused
one appends nothing); a query that asks to read its own write sees it once its read model got
there (its notification position, not its stream's version: with two streams written
interleaved the two differ), and a read model that does not get there in time raises the typed
``ReadModelBehind`` (the write is not lost: the model shows it after syncing); read models
converge to the write model whatever the interleaving of commands and sync steps; lag beyond the
tolerance raises the alert and is counted.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import PrismEnv, Slot, patience, prism_suite
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.cqrs import Cqrs, CqrsConfig, ReadModelBehind, UnknownReadModel
from prism_testkit.patterns.event_sourcing import (
    EventSourcingConfig,
    EventSourcingConfigurationError,
    EventStore,
    ProjectionRunner,
    RecordedEvent,
    Repository,
    ViewWriter,
)
from prism_testkit.simulation.clock import ManualClock

from ._bank import Account, CommandRefused, balances, command, event_store, view_kinds, views_store
from ._helpers import in_background as syncing
from ._helpers import prism_settings

pytestmark = prism_suite(
    "cqrs",
    write=Slot.needs("transactions", "log", "keyvalue"),
    balances=Slot.needs("keyvalue.cas"),
    activity=Slot.needs("keyvalue.cas"),
)

ACCOUNTS = ("a", "b")
TOLERANCE = 2.0


async def activity(views: ViewWriter, event: RecordedEvent) -> None:
    """Second read model: per account, how many events and the last one's type."""
    seen = await views.get(event.stream) or {"events": 0}
    await views.put(event.stream, {"events": seen["events"] + 1, "last": event.type})


def build(prism_env: PrismEnv, ns: Namespace, clock: ManualClock | None = None) -> Cqrs:
    store = event_store(prism_env.driver("write"), ns, snapshot_interval=3, clock=clock)
    models = {}
    for slot, handler in (("balances", balances), ("activity", activity)):
        driver = prism_env.driver(slot)
        views = views_store(driver, ns, slot, view_kinds(driver)[0])
        models[slot] = ProjectionRunner(store, views, handler, batch_size=4, poll_interval=patience.handed("poll"))
    return Cqrs(
        Repository(store, Account()),
        models,
        CqrsConfig(lag_tolerance=TOLERANCE, read_your_writes_timeout=patience.bound("calm-op")),
    )


async def test_a_query_after_a_write_reads_it_in_every_read_model(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        cqrs = build(prism_env, ns)
        async with syncing(cqrs):
            await cqrs.execute("a", command("open", 0))
            for amount in (30, 12):
                written = await cqrs.execute("a", command("deposit", amount))
                assert await cqrs.query("balances", "a", after=written) == written.state["balance"]
                assert (await cqrs.query("activity", "a", after=written))["events"] == written.version
            written = await cqrs.execute("a", command("withdraw", 40))
            assert await cqrs.query("balances", "a", after=written) == 2
            assert await cqrs.query("activity", "a", after=written) == {"events": 4, "last": "Withdrawn"}


async def test_a_read_model_that_does_not_catch_up_in_time_is_a_typed_error(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        cqrs = build(prism_env, ns)
        await cqrs.execute("a", command("open", 0))
        written = await cqrs.execute("a", command("deposit", 9))
        with pytest.raises(ReadModelBehind) as info:
            await cqrs.query("balances", "a", after=written, within=0.2)
        assert (info.value.model, info.value.position, info.value.wanted) == ("balances", 0, written.position)
        assert cqrs.metrics.read_your_writes_timeouts == 1
        while any((await cqrs.sync_once()).values()):
            pass
        assert await cqrs.query("balances", "a", after=written, within=0.2) == 9
        later = await cqrs.execute("a", command("deposit", 1))  # no sync runs: the model is one event short
        outcome: Any
        try:
            outcome = await cqrs.query("balances", "a", after=later, within=0.2)
        except ReadModelBehind as behind:
            outcome = behind
        assert isinstance(outcome, ReadModelBehind), (
            f"a query after a write read {outcome!r} while its read model was one event short of the write"
        )
        assert (outcome.position, outcome.wanted) == (later.position - 1, later.position)
        assert cqrs.metrics.read_your_writes_timeouts == 2
        with pytest.raises(UnknownReadModel):
            await cqrs.query("nope", "a")


async def test_read_your_writes_waits_for_the_notification_position_of_two_interleaved_streams(
    prism_env: PrismEnv,
) -> None:
    """With one stream a command's stream version and its notification position are the same
    number; with two streams written interleaved they differ (here 'a' is at version 2, its
    write at position 5), so a wait on the version would return while the read model is still
    short of the write."""
    async with prism_env.example() as ns:
        cqrs = build(prism_env, ns)  # batches of 4: one sync step leaves each model at 4
        for account, kind, amount in (("a", "open", 0), ("b", "open", 0), ("b", "deposit", 5), ("b", "deposit", 6)):
            await cqrs.execute(account, command(kind, amount))
        assert await cqrs.sync_once() == {"balances": 4, "activity": 4}
        written = await cqrs.execute("a", command("deposit", 7))
        assert (written.version, written.position) == (2, 5), (
            f"the write of 'a' reports version {written.version} at notification position {written.position}, "
            "not version 2 at position 5 (the log's fifth event)"
        )
        for model in ("balances", "activity"):
            outcome: Any
            try:
                outcome = await cqrs.query(model, "a", after=written, within=0.2)
            except ReadModelBehind as behind:
                outcome = behind
            assert isinstance(outcome, ReadModelBehind), (
                f"a query of {model!r} after the write of 'a' (version {written.version}, notification position "
                f"{written.position}) read {outcome!r} while the model was at position 4: the wait did not cover "
                "the write"
            )
            assert (outcome.position, outcome.wanted) == (4, written.position)
        while any((await cqrs.sync_once()).values()):
            pass
        assert await cqrs.query("balances", "a", after=written, within=0.2) == 7
        assert await cqrs.query("activity", "a", after=written, within=0.2) == {"events": 2, "last": "Deposited"}
        assert await cqrs.query("balances", "b", after=written, within=0.2) == 11


async def test_a_read_model_of_another_event_store_is_refused(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        write = event_store(prism_env.driver("write"), ns)
        driver = prism_env.driver("write")
        other = EventStore(
            driver.transactions(), driver.log(), driver.keyvalue(), EventSourcingConfig(name=ns.name("other-bank"))
        )
        views = views_store(prism_env.driver("balances"), ns, "balances", view_kinds(prism_env.driver("balances"))[0])
        runner = ProjectionRunner(other, views, balances)
        refused = None
        try:
            Cqrs(Repository(write, Account()), {"balances": runner})
        except EventSourcingConfigurationError as exc:
            refused = str(exc)
        assert refused is not None, "a read model following another event store than the write model's was accepted"
        assert "another event store" in refused, f"the mis-wired read model was refused for another reason: {refused}"


async def test_commands_are_validated_against_the_current_state(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        cqrs = build(prism_env, ns)
        with pytest.raises(CommandRefused):
            await cqrs.execute("a", command("deposit", 5))  # not open
        await cqrs.execute("a", command("open", 0))
        await cqrs.execute("a", command("deposit", 5))
        with pytest.raises(CommandRefused):
            await cqrs.execute("a", command("withdraw", 6))  # would overdraw
        assert await cqrs.write.store.notifications_end() == 2
        assert (await cqrs.write.load("a")).state == {"open": True, "balance": 5}
        assert cqrs.metrics.commands == 2, f"{cqrs.metrics.commands} commands counted as executed, not the 2 accepted"


Step = tuple[str, str, int]
STEPS: st.SearchStrategy[list[Step]] = st.lists(
    st.tuples(st.sampled_from(["open", "deposit", "withdraw", "sync"]), st.sampled_from(ACCOUNTS), st.integers(1, 50)),
    max_size=25,
)


@prism_settings
@given(steps=STEPS)
async def test_read_models_converge_to_the_write_model(prism_env: PrismEnv, steps: list[Step]) -> None:
    async with prism_env.example() as ns:
        cqrs = build(prism_env, ns)
        for kind, account, amount in steps:
            if kind == "sync":
                await cqrs.sync_once()
                continue
            with suppress(CommandRefused):
                await cqrs.execute(account, command(kind, amount))
        while any((await cqrs.sync_once()).values()):
            pass
        for account in ACCOUNTS:
            state = (await cqrs.write.load(account)).state
            events = await cqrs.write.store.version(account)
            expected_balance: Any = state["balance"] if state["open"] else None
            assert await cqrs.query("balances", account) == expected_balance
            seen = await cqrs.query("activity", account)
            assert (seen or {"events": 0})["events"] == events
        assert all(h.events_behind == 0 and not h.alert for h in await cqrs.health())


async def test_lag_beyond_the_tolerance_raises_the_alert(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        clock = ManualClock()
        cqrs = build(prism_env, ns, clock)
        await cqrs.execute("a", command("open", 0))
        clock.advance(TOLERANCE / 2)
        assert [h.alert for h in await cqrs.health()] == [False, False]
        clock.advance(TOLERANCE)
        report = await cqrs.health()
        assert [(h.model, h.events_behind, h.alert) for h in report] == [("balances", 1, True), ("activity", 1, True)]
        assert cqrs.metrics.lag_alerts == 2
        assert cqrs.metrics.max_seconds_behind == pytest.approx(1.5 * TOLERANCE)
        await cqrs.sync_once()
        assert [(h.events_behind, h.alert) for h in await cqrs.health()] == [(0, False), (0, False)]
        assert cqrs.metrics.lag_alerts == 2
