"""The outcome record: one per person, the same shape on every platform."""

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
    FAILED = "failed"

    @property
    def ok(self) -> bool:
        return self is not Status.FAILED

    @property
    def changed(self) -> bool:
        """True where this run changed the platform's state (Ansible's ``changed``)."""
        return self in (Status.INVITED, Status.JOINED)


@dataclass(frozen=True)
class InviteOutcome:
    """One person's result. ``to_dict()`` is what goes to XCom."""

    platform: str
    group: str
    user: str
    status: Status
    detail: str = ""
    code: str | None = None

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
        )

    def line(self) -> str:
        """One readable log line."""
        text = f"{self.platform} {self.group} {self.user}: {self.status.value}"
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
