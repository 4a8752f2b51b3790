"""The kinds of error, and what Airflow does with each.

- ``InviteInputError``: bad input, found before any request. Fails the task, no retries.
- ``PermanentPlatformError``: the platform said no for good. Fails the task, no retries.
  ``PersonRefused`` is one: the platform refused one person (the others may go on).
- ``PlatformAuthError``: credentials refused after one re-authentication. Fails, no retries.
- ``TransientPlatformError``: throttling, 5xx, timeouts. Retried here with backoff; if it
  survives our retries the task fails *with* retries (Airflow's own retry policy).
- ``AuthExpired`` and ``RefreshTokenRefused`` never leave the HTTP layer and the credential
  store: they trigger one re-authentication, or one look for a newer rotated token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_invites.core.adapter import Presence
    from airflow_invites.core.outcome import Status


class InviteInputError(AirflowFailException, ValueError):
    """An input does not have the expected shape. Always names the field."""

    def __init__(self, field: str, expected: str, got: object = None, *, show_value: bool = True) -> None:
        self.field = field
        self.expected = expected
        shown = ""
        if show_value and got is not None:
            text = repr(got)
            shown = f", got {text[:60] + '...' if len(text) > 60 else text}"
        super().__init__(f"{field}: expected {expected}{shown}")


class PermanentPlatformError(AirflowFailException):
    """A refusal that will not change on retry (not found, no permission, banned...)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class PersonRefused(PermanentPlatformError):
    """The platform refused one person of a call that named one person; others may go on.

    ``status`` is that person's outcome for a write (``FAILED``, ``ALREADY_MEMBER``...);
    ``presence`` what the refusal says about them in a look-up (None: a look-up that gets it
    fails for the whole group, e.g. a listing that names nobody).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Status,
        presence: Presence | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.presence = presence


class PlatformAuthError(AirflowFailException):
    """Credentials were refused (after one re-authentication where the platform allows it)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class AuthExpired(Exception):
    """Raised by a reply check when the platform says the session/token expired: re-authenticate once."""

    def __init__(self, message: str = "credentials expired", *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class RefreshTokenRefused(Exception):
    """The token endpoint refused the refresh token sent (spent, revoked, unknown); ``code`` is its error code."""

    def __init__(self, description: str, *, code: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.code = code


class TransientPlatformError(AirflowException):
    """Worth retrying. ``retry_after`` is the platform's own hint in seconds, if it gave one.

    ``maybe_applied`` is True when a write may have taken effect although we got no usable reply
    (timeout after sending, dropped connection, 5xx): such a write is never blindly re-sent; the
    algorithm looks the state up again first. ``throttled`` is True when the platform asked us to
    slow down (client-side pacing learns from it).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        maybe_applied: bool = False,
        code: str | None = None,
        throttled: bool = False,
    ) -> None:
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied
        self.code = code
        self.throttled = throttled or (retry_after is not None and not maybe_applied)
        super().__init__(message)
