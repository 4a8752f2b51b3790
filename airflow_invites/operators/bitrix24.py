"""Bitrix24: invite people into a workgroup."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator, GroupRemoveOperator


class Bitrix24GroupInviteOperator(GroupInviteOperator):
    """Invite people into a Bitrix24 workgroup (``sonet_group.user.invite``, 50 per call).

    ``group`` is the workgroup id, ``users`` are user ids (positive integers). People already in
    the group or already invited are reported as such; unknown and deactivated (fired) people,
    and anyone the portal skipped without a reason, are reported ``failed``. ``invited`` means an
    invitation is pending: the person still has to accept it. ``message`` is the invitation text.
    """

    platform = "bitrix24"


class Bitrix24GroupRemoveOperator(GroupRemoveOperator):
    """Remove people from a Bitrix24 workgroup (``sonet_group.user.delete``, members and pending invitations; portal admins only).

    Outcomes ``removed``, ``invite_cancelled``, ``already_absent``, ``would_remove`` (dry run) or
    ``failed`` (the owner and the connection's own account are never removed).
    """

    platform = "bitrix24"
