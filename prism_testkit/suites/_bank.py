"""The bank-account domain the event-sourcing suites drive: an aggregate, its commands (with
the no-overdraft rule) and a balances projection, plus the wiring of store and views for a
combination. Shared by ``test_event_sourcing.py`` and ``test_stateful_event_sourcing.py``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prism_testkit import Capability, Driver
from prism_testkit.isolation import Namespace
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
from prism_testkit.stateful.checkers import FOLLOWS

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


# An event the store lost: (its command's tag, account, event type, amount; 0 for Opened)
LostEvent = tuple[str, str, str, int]
MOST_LOST_TRIED = 10  # subsets of more lost events are not searched (2**10 replays at most)


def applied_before_lost(
    view: Mapping[str, int], total: int, replayed: Mapping[str, int], lost: Sequence[LostEvent]
) -> tuple[str, ...] | None:
    """The tags of the fewest ``lost`` events (acknowledged, then gone from the store) that,
    projected on top of the ``replayed`` balances, give the read model's ``view`` balances and
    its ``total``: a projection that read them before the store lost them. None when no such
    subset (or none at all: the read model matches) exists. The read model may hold what was
    lost, nothing else: a difference these events do not explain is not theirs."""
    if len(lost) > MOST_LOST_TRIED:
        return None
    for size in range(1, len(lost) + 1):
        for subset in itertools.combinations(lost, size):
            balances, moved = dict(replayed), 0
            for _tag, account, kind, amount in subset:
                if kind == "Opened":
                    balances.setdefault(account, 0)
                    continue
                delta = amount if kind == "Deposited" else -amount
                balances[account] = balances.get(account, 0) + delta
                moved += delta
            if balances == dict(view) and total == sum(replayed.values()) + moved:
                return tuple(dict.fromkeys(tag for tag, *_ in subset))
    return None


def read_model_divergence(
    view: Mapping[str, int],
    total: int,
    position: int,
    end: int,
    replayed: Mapping[str, int],
    lost: Sequence[LostEvent],
) -> list[tuple[str, dict[str, Any]]]:
    """What the caught-up read model (``view`` balances, ``total``, tracked ``position``) shows
    against the store (``replayed`` balances, ``end`` events): one ``read-model-diverged``
    message per difference, with its facts. One event, one verdict: the read model may hold
    events the projection read before the store lost them (``lost``, judged lost already).
    When exactly such events explain the difference, and the position is past the store's end
    by no more than them, the facts say so (``FOLLOWS``: that loss seen again); anything else
    is a finding of its own."""
    applied = applied_before_lost(view, total, replayed, lost) or ()
    # a lost command is judged by (account, tag): see the machine's "lost"
    echo = {FOLLOWS: tuple(dict.fromkeys((acct, tag) for tag, acct, *_ in lost if tag in applied))} if applied else {}
    found: list[tuple[str, dict[str, Any]]] = []
    if dict(view) != dict(replayed):
        found.append((f"view balances {dict(view)}, replay gives {dict(replayed)}", echo))
    if total != sum(replayed.values()):
        found.append((f"view total {total}, replay gives {sum(replayed.values())}", echo))
    if position != end:
        ahead = end < position <= end + len([e for e in lost if e[0] in applied])
        found.append((f"projection at {position}, the store holds {end} events", echo if ahead else {}))
    return found


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
