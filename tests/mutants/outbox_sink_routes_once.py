"""Mutant: an outbox sink whose destination routes by event (``"orders.{event_type}"``,
RFC-009's topic pattern) works the route out for the first event it publishes and sends every
later event there, whatever its type or aggregate.

Loaded with ``-p tests.mutants.outbox_sink_routes_once``.
"""

from __future__ import annotations

from prism_testkit.interfaces import Message
from prism_testkit.patterns.outbox import HEADER_EVENT_ID, sinks

_route = sinks._route
_first: dict[str, str] = {}


def _cached_route(destination: str, message: Message) -> str:
    if HEADER_EVENT_ID not in message.headers:  # the sink's own check of its destination
        return _route(destination, message)
    if destination not in _first:  # the bug: one route per destination, the first event's
        _first[destination] = _route(destination, message)
    return _first[destination]


sinks._route = _cached_route
