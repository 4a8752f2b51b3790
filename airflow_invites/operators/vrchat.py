"""VRChat: invite people into a group."""

from __future__ import annotations

from typing import Any

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class VRChatGroupInviteOperator(GroupInviteOperator):
    """Invite people into a VRChat group (``POST /groups/{groupId}/invites``, one per person).

    People are user ids or ``name:<display name>`` (matched whole, case ignored; a name several
    accounts share fails as ambiguous). An invite is pending until the person accepts it in VRChat
    (status ``invited``). People banned from the group are reported ``failed`` and never invited:
    an invite would lift the ban. VRChat's group invites carry no message, so ``message`` is ignored.

    :param confirm_override_block: send ``confirmOverrideBlock: true`` (VRChat's default), which
        may override a block between the bot account and the person; off by default
    """

    platform = "vrchat"

    def __init__(self, *, confirm_override_block: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.confirm_override_block = confirm_override_block

    def invite_request(self) -> InviteRequest:
        return InviteRequest(
            message=self.message or None, extra={"confirm_override_block": self.confirm_override_block}
        )


class VRChatGroupRemoveOperator(GroupRemoveOperator):
    """Remove people from a VRChat group: ``DELETE /groups/{groupId}/members/{userId}`` for members, ``DELETE /groups/{groupId}/invites/{userId}`` for pending invitations.

    Outcomes ``removed``, ``invite_cancelled``, ``already_absent`` (also for banned people: a ban is
    not a membership, and it stays), ``would_remove`` (dry run) or ``failed`` (the owner and the
    connection's own account are never removed).
    """

    platform = "vrchat"
