"""The bank-account domain the event-sourcing suites drive: an aggregate, its commands (with
the no-overdraft rule) and a balances projection, plus the wiring of store and views for a
combination. Shared by ``test_event_sourcing.py`` and ``test_stateful_event_sourcing.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prism_testkit.patterns.event_sourcing import (
    EventSourcingConfig,
    EventStore,
    KeyValueViews,
    Loaded,
    NewEvent,
    RecordedEvent,
    TransactionalViews,
    Upcasters,
    ViewStore,
    ViewWriter,
)

from prism_testkit import Capability, Driver
from prism_testkit.isolation import Namespace

TOTAL = "bank-total"  # view key holding the sum of all balances


class CommandRefused(Exception):
    """A command the current state does not allow (nothing was appended)."""


class Account:
    """State: ``{"open": bool, "balance": int}``; events Opened, Deposited, Withdrawn."""

    snapshot_schema = 1

    def initial(self) -> Any:
        return {"open": False, "balance": 0}

    def apply(self, state: Any, event: RecordedEvent) -> Any:
        if event.type == "Opened":
            return {"open": True, "balance": state["balance"]}
        sign = 1 if event.type == "Deposited" else -1
        return {"open": state["open"], "balance": state["balance"] + sign * int(event.data["amount"])}


def open_account(loaded: Loaded, owner: str) -> list[NewEvent]:
    if loaded.state["open"]:
        raise CommandRefused(f"{loaded.stream} is already open")
    return [NewEvent("Opened", {"owner": owner})]


def deposit(loaded: Loaded, amount: int, tag: str = "") -> list[NewEvent]:
    if not loaded.state["open"]:
        raise CommandRefused(f"{loaded.stream} is not open")
    return [NewEvent("Deposited", {"amount": amount, "tag": tag})]


def withdraw(loaded: Loaded, amount: int, tag: str = "") -> list[NewEvent]:
    if not loaded.state["open"]:
        raise CommandRefused(f"{loaded.stream} is not open")
    if amount > loaded.state["balance"]:
        raise CommandRefused(f"{loaded.stream}: withdrawing {amount} of {loaded.state['balance']} would overdraw")
    return [NewEvent("Withdrawn", {"amount": amount, "tag": tag})]


def command(kind: str, amount: int, tag: str = "") -> Callable[[Loaded], list[NewEvent]]:
    """The decision of command ``kind`` ("open", "deposit" or "withdraw") for a repository."""
    if kind == "open":
        return lambda loaded: open_account(loaded, tag or "owner")
    if kind == "deposit":
        return lambda loaded: deposit(loaded, amount, tag)
    if kind == "withdraw":
        return lambda loaded: withdraw(loaded, amount, tag)
    raise ValueError(f"unknown command {kind!r}")


async def balances(views: ViewWriter, event: RecordedEvent) -> None:
    """Projection: balance per account and the bank's total (each write reads only its key)."""
    if event.type == "Opened":
        if await views.get(event.stream) is None:
            await views.put(event.stream, 0)
        return
    delta = int(event.data["amount"]) * (1 if event.type == "Deposited" else -1)
    await views.put(event.stream, (await views.get(event.stream) or 0) + delta)
    await views.put(TOTAL, (await views.get(TOTAL) or 0) + delta)


def event_store(
    driver: Driver,
    ns: Namespace,
    *,
    snapshot_interval: int | None = 5,
    clock: Any = None,
    upcasters: Upcasters | None = None,
) -> EventStore:
    config = EventSourcingConfig(name=ns.name("bank"), snapshot_interval=snapshot_interval)
    extra = {} if clock is None else {"clock": clock}
    return EventStore(driver.transactions(), driver.log(), driver.keyvalue(), config, upcasters=upcasters, **extra)


def views_store(driver: Driver, ns: Namespace, name: str, kind: str) -> ViewStore:
    """``kind`` "transactional" (needs transactions) or "keyvalue" (compare-and-set)."""
    if kind == "transactional":
        return TransactionalViews(driver.transactions(), driver.keyvalue(), ns.name(name))
    return KeyValueViews(driver.keyvalue(), ns.name(name))


def view_kinds(driver: Driver) -> list[str]:
    kinds = ["keyvalue"]
    if driver.supports(Capability.TRANSACTIONS):
        kinds.insert(0, "transactional")
    return kinds
