"""The outcome record: one per person, the same shape on every platform and for every operation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class Status(str, Enum):
    """What happened to one person in one group."""

    INVITED = "invited"
    ALREADY_MEMBER = "already_member"
    ALREADY_INVITED = "already_invited"
    JOINED = "joined"  # the platform accepted the person's outstanding application instead
    WOULD_INVITE = "would_invite"  # dry run
    REMOVED = "removed"  # was a member, removed now
    INVITE_CANCELLED = "invite_cancelled"  # had a pending invitation, withdrawn now
    ALREADY_ABSENT = "already_absent"  # neither a member nor invited: nothing to remove
    WOULD_REMOVE = "would_remove"  # dry run of a removal
    FAILED = "failed"

    @property
    def ok(self) -> bool:
        return self is not Status.FAILED

    @property
    def changed(self) -> bool:
        """True where this run changed the platform's state (Ansible's ``changed``)."""
        return self in CHANGED


CHANGED = frozenset({Status.INVITED, Status.JOINED, Status.REMOVED, Status.INVITE_CANCELLED})
#: the statuses of each operation, in the order reports show them
INVITE_STATUSES = (
    Status.INVITED,
    Status.ALREADY_MEMBER,
    Status.ALREADY_INVITED,
    Status.JOINED,
    Status.WOULD_INVITE,
    Status.FAILED,
)
REMOVE_STATUSES = (
    Status.REMOVED,
    Status.INVITE_CANCELLED,
    Status.ALREADY_ABSENT,
    Status.WOULD_REMOVE,
    Status.FAILED,
)


@dataclass(frozen=True)
class InviteOutcome:
    """One person's result. ``to_dict()`` is what goes to XCom.

    ``user`` is the platform id acted on (or, when a handle could not be resolved, the handle as
    given); ``handle`` is the handle as given (``email:ann@example.com``), None when an id was given.
    """

    platform: str
    group: str
    user: str
    status: Status
    detail: str = ""
    code: str | None = None
    handle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InviteOutcome:
        return cls(
            platform=data["platform"],
            group=data["group"],
            user=data["user"],
            status=Status(data["status"]),
            detail=data.get("detail", ""),
            code=data.get("code"),
            handle=data.get("handle"),
        )

    @property
    def person(self) -> str:
        """How reports name the person: the handle as given and the id it resolved to."""
        if self.handle and self.handle != self.user:
            return f"{self.handle} ({self.user})"
        return self.user

    def line(self) -> str:
        """One readable log line."""
        text = f"{self.platform} {self.group} {self.person}: {self.status.value}"
        if self.detail:
            text += f" ({self.detail})"
        if self.code:
            text += f" [{self.code}]"
        return text


def summarize(outcomes: Iterable[InviteOutcome]) -> str:
    """``3 invited, 1 already member, 0 failed`` (statuses with no people are left out but failed)."""
    counts = Counter(o.status for o in outcomes)
    parts = [
        f"{counts[status]} {status.value.replace('_', ' ')}"
        for status in Status
        if counts[status] or status is Status.FAILED
    ]
    return ", ".join(parts)
