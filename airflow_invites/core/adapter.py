"""What a platform must provide: the adapter interface, small on purpose.

A platform hook implements these five methods; the algorithm in ``core.invite`` does the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from airflow_invites.core.outcome import Status


class Presence(str, Enum):
    """A person's current state in a group, as the look-up found it."""

    ABSENT = "absent"  # may be invited
    MEMBER = "member"
    INVITED = "invited"  # an invitation is pending
    BLOCKED = "blocked"  # must not be invited (banned, fired, unknown...): reported failed


@dataclass(frozen=True)
class UserState:
    presence: Presence
    detail: str = ""
    code: str | None = None


ABSENT = UserState(Presence.ABSENT)


@dataclass(frozen=True)
class InviteRequest:
    """Options of one invite call, already validated. ``extra`` holds platform options (role id...)."""

    message: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InviteResult:
    """The classified reply for one person."""

    status: Status
    detail: str = ""
    code: str | None = None


class InviteAdapter(ABC):
    """One platform's part of the invite algorithm."""

    platform: ClassVar[str]
    #: how many people one invite request may name (1 = one request per person)
    invite_batch_size: ClassVar[int] = 1
    #: how many invite requests may be in flight at once (the hook must be thread-safe past its
    #: look-up, and pace itself under the platform's rate limit)
    invite_concurrency: ClassVar[int] = 1

    @abstractmethod
    def normalize_group(self, group: object) -> str:
        """The group id in canonical form, or raise ``InviteInputError`` naming ``group``."""

    @abstractmethod
    def normalize_user(self, user: object) -> str:
        """A person's id in canonical form, or raise ``InviteInputError`` naming ``users``."""

    def normalize_request(self, request: InviteRequest) -> InviteRequest:
        """Check platform options (message length, role id...). Default: accept as is."""
        return request

    @abstractmethod
    def lookup(self, group: str, users: Sequence[str]) -> Mapping[str, UserState]:
        """Current state of ``users`` in ``group``; a person missing from the result is ABSENT.

        Called once per batch; the adapter chooses a full listing or per-person checks by cost.
        """

    @abstractmethod
    def send_invites(
        self, group: str, users: Sequence[str], request: InviteRequest
    ) -> Mapping[str, InviteResult]:
        """Invite ``users`` (at most ``invite_batch_size``) and classify the reply per person.

        A refusal for one person is a FAILED result; raise ``PermanentPlatformError`` only for a
        refusal of the whole group (not found, no permission): nobody else is tried then.
        ``TransientPlatformError`` is what the HTTP layer could not retry away.
        """

    def group_url(self, group: str) -> str | None:
        """A web page of the group, for the task's extra link."""
        return None
