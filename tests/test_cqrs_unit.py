"""Unit tests of patterns.cqrs wiring (the behaviour is proved by suites/test_cqrs.py)."""

from __future__ import annotations

import pytest
from prism_testkit.backends.memstore import open_memstore
from prism_testkit.patterns.cqrs import Cqrs, CqrsConfig, UnknownReadModel
from prism_testkit.patterns.event_sourcing import (
    EventSourcingConfig,
    EventSourcingConfigurationError,
    EventStore,
    KeyValueViews,
    ProjectionRunner,
    RecordedEvent,
    Repository,
    ViewWriter,
)
from pydantic import ValidationError

from prism_testkit.errors import ConfigurationError


class Nothing:
    snapshot_schema = 1

    def initial(self) -> dict[str, int]:
        return {}

    def apply(self, state: dict[str, int], event: RecordedEvent) -> dict[str, int]:
        return state


async def ignore(views: ViewWriter, event: RecordedEvent) -> None:
    return None


def store(name: str) -> EventStore:
    mem = open_memstore()
    return EventStore(mem.transactions(), mem.log(), mem.keyvalue(), EventSourcingConfig(name=name))


def test_read_models_must_exist_and_follow_the_write_models_store() -> None:
    write = store("bank")
    with pytest.raises(EventSourcingConfigurationError, match="at least one read model"):
        Cqrs(Repository(write, Nothing()), {})
    other = store("elsewhere")
    runner = ProjectionRunner(other, KeyValueViews(other.kv, "v"), ignore)
    with pytest.raises(ConfigurationError, match=r"\['v'\] follow another event store"):
        Cqrs(Repository(write, Nothing()), {"v": runner})


def test_an_unknown_read_model_names_the_known_ones() -> None:
    write = store("bank")
    cqrs = Cqrs(Repository(write, Nothing()), {"v": ProjectionRunner(write, KeyValueViews(write.kv, "v"), ignore)})
    error = UnknownReadModel("w", sorted(cqrs.read_models))
    assert str(error) == "no read model 'w'; known: v"


def test_config_refuses_non_positive_durations() -> None:
    assert CqrsConfig(lag_tolerance="500ms").lag_tolerance == pytest.approx(0.5)
    with pytest.raises(ValidationError):
        CqrsConfig(read_your_writes_timeout=0)
