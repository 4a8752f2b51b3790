"""PlayFab: invite players into an entity group (guild, clan)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_invites.core.adapter import InviteRequest
from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator, parse_bool


class PlayFabGroupInviteOperator(GroupInviteOperator):
    """Invite title players into a PlayFab group (``InviteToGroup``, one player per call).

    People are ``title_player_account`` ids (16 upper-case hex), ``character:<id>``, EntityKey
    mappings ``{"Id": ..., "Type": ...}``, or handles: ``email:<address>`` (or the bare address) and
    ``username:<name>``. PlayFab invitations carry no message: ``message`` is ignored.

    :param role_id: role the player gets on accepting (default: the group's member role) (templated)
    :param custom_tags: PlayFab CustomTags sent with each invite: at most 10 string pairs (templated)
    :param auto_accept_outstanding_application: when the player has applied to the group, accept
        the application (outcome ``joined``) instead of inviting; PlayFab's default is true (templated)
    """

    platform = "playfab"
    template_fields: Sequence[str] = (
        *GroupInviteOperator.template_fields,
        "role_id",
        "custom_tags",
        "auto_accept_outstanding_application",
    )

    def __init__(
        self,
        *,
        role_id: str | None = None,
        custom_tags: Mapping[str, str] | None = None,
        auto_accept_outstanding_application: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role_id = role_id
        self.custom_tags = custom_tags
        self.auto_accept_outstanding_application = auto_accept_outstanding_application

    def invite_request(self) -> InviteRequest:
        tags: object = self.custom_tags
        if isinstance(tags, str) and tags.strip().startswith("{"):  # a template rendered to JSON text
            with contextlib.suppress(ValueError):  # else the hook names the field and the shape
                tags = json.loads(tags)
        extra: dict[str, Any] = {
            "role_id": self.role_id or None,
            "custom_tags": dict(tags) if isinstance(tags, Mapping) else tags,
            "auto_accept_outstanding_application": parse_bool(
                self.auto_accept_outstanding_application, "auto_accept_outstanding_application"
            ),
        }
        return InviteRequest(message=self.message or None, extra=extra)


class PlayFabGroupRemoveOperator(GroupRemoveOperator):
    """Remove players from a PlayFab group: members with one ``RemoveMembers`` call (a list of up to
    1,000, a group's whole size), pending invitations with ``RemoveGroupInvitation`` (one per call).

    People as for the invite operator, or ``email:<address>`` / ``username:<name>`` (a bare address
    too), found with ``/Admin/GetUserAccountInfo``. Outcomes ``removed``, ``invite_cancelled``,
    ``already_absent``, ``would_remove`` (dry run) or ``failed``: members holding the group's admin
    role (its creator is one) are never removed (code ``protected``); demote them first.
    """

    platform = "playfab"
