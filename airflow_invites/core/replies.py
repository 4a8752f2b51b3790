"""Errors as data: a platform declares what its replies mean; one interpreter applies that.

A hook reads its platform's envelope into a ``Reply`` (success or not, the value, the platform's
error code and message, a wait hint) and declares an ``ErrorTable``: platform code, message
pattern or HTTP status -> a ``Rule`` (throttle, transient, session expired, credentials refused,
refresh token refused, the whole group refused, or one person's outcome). ``ErrorTable.interpret``
turns a reply into its value or into the right exception of ``core.errors``, with the shared
defaults every platform gets: 401 -> expired, 429 -> throttle with the hint, 408/5xx -> transient
(maybe applied on a write), a body that is not JSON -> transient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import requests

from airflow_invites.core.adapter import Presence
from airflow_invites.core.errors import (
    AuthExpired,
    PermanentPlatformError,
    PersonRefused,
    PlatformAuthError,
    RefreshTokenRefused,
    TransientPlatformError,
)
from airflow_invites.core.outcome import Status

MESSAGE_SHOWN = 200  # characters of a platform's message kept in an error


class Meaning(str, Enum):
    """What a refusal means for us."""

    THROTTLE = "throttle"  # wait (the platform's hint) and retry
    TRANSIENT = "transient"  # retry with backoff; a write may have been applied
    EXPIRED = "expired"  # the session or access token expired: authenticate again once
    CREDENTIALS = "credentials"  # the connection's credentials are refused: a human must fix them
    TOKEN_REFUSED = "token_refused"  # a refresh token was refused (spent, revoked): see core.credentials
    GROUP = "group"  # the whole call is refused (group unknown, no permission): nobody else is tried
    PERSON = "person"  # one person's outcome (already a member, banned, unknown...)


@dataclass(frozen=True)
class Rule:
    """One line of an error table.

    :param detail: what it means, in words for the person reading the task log
    :param status: PERSON: that person's outcome of a write
    :param presence: PERSON: what it says about them in a look-up naming them (None: not found)
    :param code: our code for the outcome (default: the platform's code)
    :param wait: THROTTLE: seconds to wait when the reply gives no hint
    :param applied: TRANSIENT: whether a write may have taken effect (False: surely not)
    """

    meaning: Meaning
    detail: str = ""
    status: Status | None = None
    presence: Presence | None = None
    code: str | None = None
    wait: float | None = None
    applied: bool = True


def throttle(detail: str = "rate limited", *, wait: float | None = None) -> Rule:
    return Rule(Meaning.THROTTLE, detail, wait=wait)


def transient(detail: str = "platform error", *, applied: bool = True) -> Rule:
    return Rule(Meaning.TRANSIENT, detail, applied=applied)


def expired(detail: str = "credentials expired") -> Rule:
    return Rule(Meaning.EXPIRED, detail)


def credentials(detail: str) -> Rule:
    return Rule(Meaning.CREDENTIALS, detail)


def token_refused(detail: str = "refresh token refused") -> Rule:
    return Rule(Meaning.TOKEN_REFUSED, detail)


def group(detail: str, *, code: str | None = None) -> Rule:
    return Rule(Meaning.GROUP, detail, code=code)


def person(status: Status, detail: str, *, presence: Presence | None = None, code: str | None = None) -> Rule:
    return Rule(Meaning.PERSON, detail, status=status, presence=presence, code=code)


@dataclass(frozen=True)
class Reply:
    """A platform's reply as its envelope says it.

    :param http_status: the HTTP status
    :param ok: the call succeeded; ``value`` is its payload
    :param code: the platform's error code (number or name), if any
    :param message: the platform's error message, if any
    :param retry_after: the platform's wait hint in seconds (header or body), if any
    :param name: the platform's name of ``code`` where it has one (Bungie's ``ErrorStatus`` for its
        numeric ``ErrorCode``): the code outcomes and messages show
    """

    http_status: int
    ok: bool
    value: Any = None
    code: str | int | None = None
    message: str = ""
    retry_after: float | None = None
    name: str | None = None


#: reads a parsed JSON body (and its response) into a ``Reply``
Envelope = Callable[[requests.Response, Any], Reply]


@dataclass(frozen=True)
class MessageRule:
    """A rule chosen by a (case-insensitive) part of the message, optionally for one HTTP status."""

    text: str
    rule: Rule
    http_status: int | None = None


#: what every platform's unlisted statuses mean
DEFAULT_STATUSES: Mapping[int, Rule] = {
    401: expired("credentials refused (HTTP 401)"),
    408: transient("request timeout (HTTP 408)"),
    429: throttle("rate limited (HTTP 429)"),
}


class ErrorTable:
    """One platform's error table and the one interpreter of replies.

    Rules are looked up by the platform's code, then by message, then (``unlisted``) for any other
    code the platform gave, then by HTTP status, then by the shared defaults. ``extend`` makes the
    table of one endpoint whose codes mean something else (its rules come first).

    :param unlisted: what a reply carrying a platform code that no rule names means, for platforms
        whose code says more than their HTTP status (None: the status decides)
    """

    def __init__(
        self,
        platform: str,
        codes: Mapping[str | int, Rule] | None = None,
        messages: Iterable[MessageRule] = (),
        statuses: Mapping[int, Rule] | None = None,
        *,
        throttle_wait: float | None = None,
        unlisted: Rule | None = None,
    ) -> None:
        self.platform = platform
        self.codes: dict[str, Rule] = {str(k).casefold(): v for k, v in (codes or {}).items()}
        self.messages: tuple[MessageRule, ...] = tuple(messages)
        self.statuses: dict[int, Rule] = {**DEFAULT_STATUSES, **(statuses or {})}
        self.throttle_wait = throttle_wait
        self.unlisted = unlisted

    def extend(
        self,
        codes: Mapping[str | int, Rule] | None = None,
        messages: Iterable[MessageRule] = (),
        statuses: Mapping[int, Rule] | None = None,
    ) -> ErrorTable:
        """A copy whose given rules take precedence."""
        table = ErrorTable(self.platform, throttle_wait=self.throttle_wait, unlisted=self.unlisted)
        table.codes = {**self.codes, **{str(k).casefold(): v for k, v in (codes or {}).items()}}
        table.messages = (*messages, *self.messages)
        table.statuses = {**self.statuses, **(statuses or {})}
        return table

    def rule_for(self, reply: Reply) -> Rule:
        if reply.code is not None and str(reply.code).casefold() in self.codes:
            return self.codes[str(reply.code).casefold()]
        message = reply.message.casefold()
        for candidate in self.messages:
            if candidate.http_status in (None, reply.http_status) and candidate.text.casefold() in message:
                return candidate.rule
        if self.unlisted is not None and reply.code not in (None, ""):
            return self.unlisted
        if reply.http_status in self.statuses:
            return self.statuses[reply.http_status]
        if reply.http_status >= 500:
            return transient(f"server error (HTTP {reply.http_status})")
        return group("refused")

    def interpret(self, reply: Reply, *, write: bool = False, person: bool = False) -> Any:
        """The reply's value, or raise what the table says it means.

        :param write: the call changes state (a transient failure may then have been applied)
        :param person: the call names one person, so a PERSON rule is that person's outcome;
            otherwise a PERSON rule refuses the whole call (e.g. a listing with an unknown group)
        """
        if reply.ok:
            return reply.value
        raise self.error(reply, write=write, person=person)

    def error(self, reply: Reply, *, write: bool = False, person: bool = False) -> Exception:
        rule = self.rule_for(reply)
        code = rule.code or reply.name or (None if reply.code in (None, "") else str(reply.code))
        said = _said(reply)
        text = f"{self.platform}: {rule.detail}" + (f" ({said})" if said else "")
        meaning = rule.meaning
        if meaning is Meaning.THROTTLE:
            wait = reply.retry_after if reply.retry_after is not None else rule.wait or self.throttle_wait
            return TransientPlatformError(text, retry_after=wait, code=code, throttled=True)
        if meaning is Meaning.TRANSIENT:
            return TransientPlatformError(text, maybe_applied=write and rule.applied, code=code)
        if meaning is Meaning.EXPIRED:
            return AuthExpired(text, code=code)
        if meaning is Meaning.CREDENTIALS:
            return PlatformAuthError(text, code=code)
        if meaning is Meaning.TOKEN_REFUSED:
            return RefreshTokenRefused(said or rule.detail, code=code)
        if meaning is Meaning.PERSON and person:
            assert rule.status is not None, "a PERSON rule names the person's status"
            detail = rule.detail + (f" ({said})" if said else "")
            return PersonRefused(detail, status=rule.status, presence=rule.presence, code=code)
        return PermanentPlatformError(text, code=code)


def _said(reply: Reply) -> str:
    """What the platform said: ``CODE: message`` (shortened), or the HTTP status."""
    message = " ".join(reply.message.split())[:MESSAGE_SHOWN]
    code = reply.name or ("" if reply.code in (None, "") else str(reply.code))
    if code and message and message != code:
        return f"{code}: {message}"
    return code or message or f"HTTP {reply.http_status}"


def read_reply(
    response: requests.Response, platform: str, envelope: Envelope, *, write: bool = False
) -> Reply:
    """Parse the body as JSON and read it with ``envelope``; the standard ``Retry-After`` fills a missing hint.

    A body that is not JSON is a transient fault (an HTML error page, a cut reply) unless the
    status alone says what happened (401, 408, 429, 5xx: the table's status rules decide).
    """
    status = response.status_code
    if status in (401, 408, 429) or status >= 500:
        try:
            body = _parse(response)
        except ValueError:  # the status alone says what happened: the table's status rules decide
            return Reply(status, False, retry_after=retry_after_seconds(response))
    else:
        body = json_body(response, platform, write=write)
    reply = envelope(response, body)
    if not reply.ok and reply.retry_after is None:
        hint = retry_after_seconds(response)
        if hint is not None:
            reply = replace(reply, retry_after=hint)
    return reply


def _parse(response: requests.Response) -> Any:
    try:
        return response.json()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def json_body(response: requests.Response, platform: str, *, write: bool = False) -> Any:
    """The parsed JSON body; a body that is not JSON is a transient fault (HTML error page, cut reply)."""
    try:
        return _parse(response)
    except ValueError:
        kind = "empty" if not response.content else f"not JSON ({response.headers.get('Content-Type', '?')})"
        if response.content and response.content.lstrip()[:1] in (b"{", b"["):
            kind = "not readable JSON (cut, malformed or nested too deeply)"
        raise TransientPlatformError(
            f"{platform}: HTTP {response.status_code} with a body that is {kind}", maybe_applied=write
        ) from None


def retry_after_seconds(response: requests.Response) -> float | None:
    """The standard ``Retry-After`` header in seconds, if present and numeric."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
