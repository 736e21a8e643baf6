"""Upcasting: stored events keep the schema they were written with (they are immutable); on
every read they are brought to the current schema by chained one-step upcasters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import EventSourcingConfigurationError, UpcastError
from .events import JsonObject

Upcaster = Callable[[dict[str, Any]], JsonObject]


class Upcasters:
    """Registered one-step upcasters: ``(type, v)`` turns data of schema ``v`` into ``v + 1``.

    The current schema of a type is one above its highest registered step (1 without any).
    Steps are registered one at a time, so a missing link in the chain is reported when an
    event needs it, as :class:`UpcastError`.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def register(self, event_type: str, from_schema: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: ``@upcasters.register("Deposited", 1)`` on a function from v1 to v2 data."""
        if not event_type or from_schema < 1:
            raise EventSourcingConfigurationError("an upcaster needs an event type and a schema >= 1")

        def add(step: Upcaster) -> Upcaster:
            if (event_type, from_schema) in self._steps:
                raise EventSourcingConfigurationError(
                    f"an upcaster for {event_type!r} schema {from_schema} is already registered"
                )
            self._steps[event_type, from_schema] = step
            self._current[event_type] = max(self._current.get(event_type, 1), from_schema + 1)
            return step

        return add

    def current(self, event_type: str) -> int:
        return self._current.get(event_type, 1)

    def upcast(self, event_type: str, schema: int, data: JsonObject) -> tuple[int, JsonObject]:
        """``data`` of ``schema`` brought to the current schema: (current schema, data)."""
        target = self.current(event_type)
        if schema > target:
            raise UpcastError(f"event {event_type!r} has schema {schema}, newer than the known {target}")
        while schema < target:
            step = self._steps.get((event_type, schema))
            if step is None:
                raise UpcastError(f"no upcaster registered for {event_type!r} from schema {schema}")
            try:
                upcast = step(dict(data))
            except Exception as exc:
                raise UpcastError(f"upcaster of {event_type!r} from schema {schema} failed: {exc!r}") from exc
            if not isinstance(upcast, dict):
                raise UpcastError(f"upcaster of {event_type!r} from schema {schema} returned {type(upcast).__name__}")
            data, schema = upcast, schema + 1
        return schema, data
