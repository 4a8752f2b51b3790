"""What a platform must provide: the adapter contract, small on purpose.

A platform hook implements these methods; the algorithms in ``core.membership`` (invite, remove)
and ``core.people`` (handles to ids) do the rest: validate, resolve, look up, decide, act,
classify, report. Every method that talks to the platform goes through the shared HTTP layer
(``core.http``) with the platform's error table (``core.replies``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from airflow_invites.core.errors import InviteInputError
from airflow_invites.core.outcome import Status


class Presence(str, Enum):
    """A person's current relation to a group, as the look-up found it."""

    ABSENT = "absent"  # no relation: may be invited; nothing to remove
    MEMBER = "member"
    INVITED = "invited"  # an invitation is pending
    BLOCKED = "blocked"  # a relation that forbids inviting (banned, blocked the group); not a member
    NOT_FOUND = "not_found"  # no such person on the platform (or not visible to the connection)


@dataclass(frozen=True)
class UserState:
    """What the look-up says about one person.

    ``protected`` is non-empty for a member who must never be removed, and says why ("the group's
    owner", "the connection's own account"). ``holds`` is, for a BLOCKED person, the relation a
    removal can still end (a deactivated member who cannot be invited still holds MEMBER).
    """

    presence: Presence
    detail: str = ""
    code: str | None = None
    protected: str = ""
    holds: Presence | None = None


ABSENT = UserState(Presence.ABSENT)


@dataclass(frozen=True)
class InviteRequest:
    """Options of one invite call, already validated. ``extra`` holds platform options (role id...)."""

    message: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonResult:
    """The classified reply of a write (invite, cancel, remove) for one person."""

    status: Status
    detail: str = ""
    code: str | None = None


#: handle kinds a person may be given by, beside a platform id (``kind:value``)
HANDLE_KINDS = ("email", "username", "name")
HANDLE_RE = re.compile(r"^(email|username|name):(.*)$", re.DOTALL)
EMAIL_RE = re.compile(r"^[^@\s,;:<>()\[\]\"']+@[^@\s,;:<>()\[\]\"']+\.[^@\s,;:<>()\[\]\"'.]+$")


@dataclass(frozen=True)
class Handle:
    """A person as a company knows them: ``email:ann@example.com``, ``username:ann``, ``name:Ann#1234``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Resolution:
    """What a platform's look-up found for one handle.

    ``user`` is the id to act on, set only when exactly one person matched (``matches == 1``);
    ``matches`` is 0 when nobody matched and above 1 when the handle is ambiguous.
    """

    user: str | None
    matches: int
    detail: str = ""

    @classmethod
    def found(cls, user: str, detail: str = "") -> Resolution:
        return cls(user, 1, detail)

    @classmethod
    def not_found(cls, detail: str = "") -> Resolution:
        return cls(None, 0, detail)

    @classmethod
    def ambiguous(cls, matches: int, detail: str = "") -> Resolution:
        return cls(None, matches, detail)


class MembershipAdapter(ABC):
    """One platform's part of the membership algorithms.

    Required: ``normalize_group``, ``normalize_user``, ``lookup``, ``send_invites``. Removal
    (``cancel_invites``, ``remove_members``) and handles (``handle_kinds``, ``resolve``) are
    declared by the platforms that have them.
    """

    platform: ClassVar[str]
    #: how many people one request of each kind may name (1 = one request per person)
    invite_batch_size: ClassVar[int] = 1
    cancel_batch_size: ClassVar[int] = 1
    remove_batch_size: ClassVar[int] = 1
    resolve_batch_size: ClassVar[int] = 1
    #: how many write requests may be in flight at once (the adapter must then be thread-safe past
    #: its look-up, and pace itself under the platform's rate limit)
    write_concurrency: ClassVar[int] = 1
    #: handle kind -> what it means on this platform (e.g. ``{"email": "the account's e-mail"}``)
    handle_kinds: ClassVar[Mapping[str, str]] = {}
    #: True where ``cancel_invites`` can withdraw a pending invitation
    can_cancel_invites: ClassVar[bool] = False
    #: True where ``remove_members`` exists
    can_remove_members: ClassVar[bool] = False
    #: what it means when the platform answered a write that named someone who is still not where the
    #: write should have put them (e.g. an unknown id dropped silently); reported with ``unconfirmed_code``
    unconfirmed_detail: ClassVar[str] = ""
    #: the code reported with ``unconfirmed_detail`` (a platform may keep the code its users know)
    unconfirmed_code: ClassVar[str] = "not_applied"

    # -- input ---------------------------------------------------------------------------------

    @abstractmethod
    def normalize_group(self, group: object) -> str:
        """The group id in canonical form, or raise ``InviteInputError`` naming ``group``."""

    @abstractmethod
    def normalize_user(self, user: object) -> str:
        """A person's id in canonical form, or raise ``InviteInputError`` naming ``users``."""

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        """Check platform options (message length, role id...). Default: accept as is."""
        return request

    def bare_handle(self, text: str) -> Handle | None:
        """A handle given without its ``kind:`` prefix, where unambiguous; default: an e-mail address."""
        if "email" in self.handle_kinds and "@" in text:
            return Handle("email", text)
        return None

    def normalize_handle(self, handle: Handle) -> Handle:
        """The handle with its value checked and in canonical form, or ``InviteInputError``.

        Default: e-mail addresses must look like one (and are kept as given: platforms compare them
        case-insensitively themselves); other kinds must be non-empty single-line text.
        """
        value = handle.value.strip()
        if handle.kind == "email" and not EMAIL_RE.fullmatch(value):
            raise InviteInputError("users", "email:<an e-mail address, e.g. ann@example.com>", str(handle))
        if not value or "\n" in value or "\r" in value or len(value) > 256:
            raise InviteInputError(
                "users", f"{handle.kind}:<text of 1-256 characters on one line>", str(handle)
            )
        return Handle(handle.kind, value)

    # -- reads ---------------------------------------------------------------------------------

    def resolve(self, handles: Sequence[Handle]) -> Mapping[Handle, Resolution]:
        """Find the people ``handles`` name (at most ``resolve_batch_size``); a missing key = not found.

        Never guess: several matches are ``Resolution.ambiguous``. Only kinds in ``handle_kinds``
        are passed here.
        """
        raise NotImplementedError(f"{self.platform} resolves no handles")

    def list_group(self, group: str) -> Mapping[str, UserState]:
        """Everyone with a relation to ``group``: members (with ``protected`` set) and pending invitations.

        What an authoritative roster sync compares the roster with. Platforms list their members
        with the same calls their look-up uses.
        """
        raise NotImplementedError(f"{self.platform} cannot list a group's members yet")

    @abstractmethod
    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Current state of ``users`` in ``group``; a person missing from the result is ABSENT.

        Called once per batch; the adapter chooses a full listing or per-person checks by cost.
        """

    # -- writes ----------------------------------------------------------------------------------

    @abstractmethod
    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, PersonResult]:
        """Invite ``users`` (at most ``invite_batch_size``) and classify the reply per person.

        A refusal for one person is a FAILED result (or, with a batch of one, a ``PersonRefused``
        raised by the error table); raise ``PermanentPlatformError`` only for a refusal of the whole
        group: nobody else is tried then. ``TransientPlatformError`` is what the HTTP layer could
        not retry away.
        """

    def cancel_invites(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """Withdraw the pending invitations of ``users`` (at most ``cancel_batch_size``).

        Results: INVITE_CANCELLED, ALREADY_ABSENT (the platform says there was none), or FAILED.
        Only people the look-up found INVITED are passed here.
        """
        raise NotImplementedError(f"{self.platform} cannot withdraw an invitation")

    def remove_members(self, group: str, users: Sequence[str]) -> Mapping[str, PersonResult]:
        """Remove ``users`` (members, at most ``remove_batch_size``) from ``group``.

        Results: REMOVED, ALREADY_ABSENT (the platform says they were not members), or FAILED.
        Only people the look-up found MEMBER and not protected are passed here.
        """
        raise NotImplementedError(f"{self.platform} cannot remove members")

    def group_url(self, group: str) -> str | None:
        """A web page of the group, for the task's extra link."""
        return None
