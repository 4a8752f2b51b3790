"""Bitrix24: invite people into a workgroup, or remove them from it."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class Bitrix24GroupInviteOperator(GroupInviteOperator):
    """Invite people into a Bitrix24 workgroup (``sonet_group.user.invite``, 200 per call).

    ``group`` is the workgroup id, ``users`` are user ids (positive integers) or e-mail addresses
    (``email:ann@example.com`` or bare). People already in the group or already invited are reported
    as such; unknown and deactivated (fired) people, and anyone the portal skipped without a reason,
    are reported ``failed``. ``invited`` means an invitation is pending: the person still has to
    accept it. ``message`` is the invitation text.
    """

    platform = "bitrix24"


class Bitrix24GroupRemoveOperator(GroupRemoveOperator):
    """Remove people from a Bitrix24 workgroup (``sonet_group.user.delete``, 200 per call; the
    connection's user must be a portal administrator).

    Members are ``removed``; a pending invitation is deleted with its notification
    (``invite_cancelled``); people with no relation are ``already_absent`` and sent nothing (a banned
    person included: a delete would lift the ban). The owner, the scrum master and the connection's
    own user are never removed (``failed``, code ``protected``).
    """

    platform = "bitrix24"
