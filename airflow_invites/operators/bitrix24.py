"""Bitrix24: invite people into a workgroup."""

from __future__ import annotations

from airflow_invites.operators.base import GroupInviteOperator


class Bitrix24GroupInviteOperator(GroupInviteOperator):
    """Invite people into a Bitrix24 workgroup (``sonet_group.user.invite``, 50 per call).

    ``group`` is the workgroup id, ``users`` are user ids (positive integers). People already in
    the group or already invited are reported as such; unknown and deactivated (fired) people,
    and anyone the portal skipped without a reason, are reported ``failed``. ``invited`` means an
    invitation is pending: the person still has to accept it. ``message`` is the invitation text.
    """

    platform = "bitrix24"
