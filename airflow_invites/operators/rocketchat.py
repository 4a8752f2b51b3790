"""Rocket.Chat: add people to a private group, or remove them."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class RocketChatGroupInviteOperator(GroupInviteOperator):
    """Add people to a Rocket.Chat private group (``groups.invite``, up to 500 per call).

    People by id, ``username:<name>`` or ``email:<address>`` (Rocket.Chat 8.4+). Rocket.Chat adds
    people at once (status ``invited`` = now a member, confirmed by a member listing); it takes no
    message.
    """

    platform = "rocketchat"


class RocketChatGroupRemoveOperator(GroupRemoveOperator):
    """Remove people from a Rocket.Chat private group (``groups.kick``, one per call).

    Rocket.Chat has no pending invitations, so every removal is a kick; nobody the look-up did not find
    in the group is ever kicked. Outcomes ``removed``, ``already_absent``, ``would_remove`` (dry run) or
    ``failed`` (the group's owner and the connection's own account are never removed).
    """

    platform = "rocketchat"
