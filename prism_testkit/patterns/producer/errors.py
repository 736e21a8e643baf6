"""The producer's errors: all are :class:`ProducerError`, itself a :class:`~prism_testkit.errors.PrismError`."""

from __future__ import annotations

from prism_testkit.errors import ConfigurationError, PrismError

# --- errors --------------------------------------------------------------------------------


class ProducerError(PrismError):
    """Base class of the producer's errors."""


class ProducerConfigurationError(ProducerError, ConfigurationError):
    pass


class PublishFailed(ProducerError):
    """The message was not published: its retries ran out, the error cannot be retried, or an
    earlier message of its batch failed (nothing is published past a failure)."""

    def __init__(self, message_id: str, attempts: int, detail: str) -> None:
        super().__init__(f"message {message_id} not published after {attempts} attempt(s): {detail}")
        self.message_id = message_id
        self.attempts = attempts


class PublishAbandoned(ProducerError):
    """The producer was stopped (its drain ran out of time) before the message was published.
    ``maybe_published``: its send was under way, so it may have arrived."""

    def __init__(self, message_id: str, maybe_published: bool) -> None:
        what = "its send was under way: it may have been published" if maybe_published else "never sent"
        super().__init__(f"message {message_id} abandoned by the producer's stop ({what})")
        self.message_id = message_id
        self.maybe_published = maybe_published
