"""Rocket.Chat: invite people into a private group."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class RocketChatGroupInviteOperator(GroupInviteOperator):
    """Add people to a Rocket.Chat private group (``groups.invite``, many per call).

    Rocket.Chat adds people at once (status ``invited`` = now a member); it takes no message.
    """

    platform = "rocketchat"


class RocketChatGroupRemoveOperator(GroupRemoveOperator):
    """Remove people from a Rocket.Chat private group (``groups.kick``; Rocket.Chat has no pending invitations). Nobody the look-up did not find in the group is ever kicked.

    Outcomes ``removed``, ``invite_cancelled``, ``already_absent``, ``would_remove`` (dry run) or
    ``failed`` (the owner and the connection's own account are never removed).
    """

    platform = "rocketchat"
