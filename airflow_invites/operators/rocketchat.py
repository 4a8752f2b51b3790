"""Rocket.Chat: invite people into a private group."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator


class RocketChatGroupInviteOperator(GroupInviteOperator):
    """Add people to a Rocket.Chat private group (``groups.invite``, many per call).

    Rocket.Chat adds people at once (status ``invited`` = now a member); it takes no message.
    """

    platform = "rocketchat"
