"""Trigger-form fields shared by the example DAGs (and by company DAGs): one place per field."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from airflow_invites.platforms import PlatformSpec


def _optional_text(pattern: str | None) -> dict[str, Any]:
    """An optional string: empty or matching ``pattern``."""
    schema: dict[str, Any] = {"type": ["null", "string"]}
    if pattern:
        schema["pattern"] = f"^$|{pattern}"
    return schema


def user_param(spec: PlatformSpec) -> Param:
    """``<platform>_user``: the person's id there, in the platform's format; empty = skip."""
    return Param(
        None,
        title=f"{spec.display}: person",
        description=f"{spec.user_description} Empty: skip {spec.display}.",
        section=spec.display,
        **_optional_text(spec.user_pattern),
    )


def group_param(spec: PlatformSpec, section: str | None = None) -> Param:
    """``<platform>_group``: the group id; empty = the Variable ``invites_<platform>_group``."""
    return Param(
        None,
        title=f"{spec.display}: group",
        description=f"{spec.group_description} Empty: the Variable invites_{spec.name}_group.",
        section=section or spec.display,
        **_optional_text(spec.group_pattern),
    )


def message_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        maxLength=500,
        title="Message",
        description="Invitation text, where the platform takes one.",
        section="Options",
    )


def dry_run_param() -> Param:
    return Param(
        False,
        type="boolean",
        title="Dry run",
        description="Look up and report; invite nobody.",
        section="Options",
    )
