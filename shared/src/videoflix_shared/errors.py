"""The domain errors every service raises for a request it refuses: one vocabulary, no HTTP.

Service layers raise these and choose no status code and no response body; the app factory's
exception handlers (`videoflix_shared.error_responses`) are the one place that turns each
class into its HTTP status, headers and JSON body. An error carries a human-readable
`message` and, when the fault lies in particular input fields, `field_errors`
(`{"<field>": ["<message>", ...]}`), which the contract's field-error bodies show as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Self

FieldMessages = dict[str, list[str]]


class DomainError(Exception):
    """Base class: something a client asked for that the service refuses.

    `field` names the input field at fault (its body is then `{field: [message]}`).
    """

    default_message: ClassVar[str] = "Bad request."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.field_errors: FieldMessages = {field: [self.message]} if field else {}


class InvalidInput(DomainError):
    """Input that breaks a rule: malformed, missing, out of range, unknown reference."""

    default_message = "Bad request."

    @classmethod
    def for_fields(cls, errors: Mapping[str, Sequence[str]]) -> Self:
        """Several fields at fault at once, each with its messages."""
        error = cls(" ".join(message for messages in errors.values() for message in messages))
        error.field_errors = {name: list(messages) for name, messages in errors.items()}
        return error


class Unauthorized(DomainError):
    """The caller could not be identified: no, an invalid or an expired credential."""

    default_message = "Authentication credentials were not provided or are invalid."


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    default_message = "You do not have permission to perform this action."


class NotFound(DomainError):
    default_message = "Not found."


class Conflict(DomainError):
    """The request clashes with the current state (in use, gone meanwhile, a lost race)."""

    default_message = "Conflicting change; reload and try again."


class TooLarge(DomainError):
    default_message = "Request body too large."


class Unsupported(DomainError):
    """Content of a kind the service cannot handle (not multipart, not a video)."""

    default_message = "Unsupported media type."


class _RetryLater(DomainError):
    """A refusal that passes: the client may try again after `retry_after` seconds."""

    def __init__(
        self, message: str | None = None, *, retry_after: int, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class RateLimited(_RetryLater):
    """Too many attempts by this client or for this subject within a window."""

    default_message = "Too many requests."


class Unavailable(_RetryLater):
    """The service cannot serve this now (overload, a dependency down); not the client's fault."""

    default_message = "Service temporarily unavailable. Please try again shortly."
