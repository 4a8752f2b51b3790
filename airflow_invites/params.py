"""Trigger-form fields shared by the example DAGs (and by company DAGs): one place per field; and the
check of a run's trigger conf against the params its DAG declares."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
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
    """``<platform>_user``: the person there, as an id or a handle the platform resolves; empty = skip."""
    email = (
        " Empty: the person's e-mail above, else skip." if "email" in spec.handle_kinds else " Empty: skip."
    )
    return Param(
        None,
        title=f"{spec.display}: person",
        description=f"{spec.person_forms}.{email}",
        section=spec.display,
        **_optional_text(spec.person_pattern),
    )


def email_param() -> Param:
    """``email``: the person's e-mail, used on every platform that finds people by e-mail."""
    return Param(
        None,
        type=["null", "string"],
        format="idn-email",
        title="E-mail",
        description="Used on the platforms that find people by e-mail (PlayFab, Bitrix24, Rocket.Chat 8.4+), "
        "unless that platform's own field is set.",
        section="Person",
    )


def person_template(spec: PlatformSpec) -> str:
    """Jinja: empty when the ``platforms`` param leaves the platform out; else its own field, else
    ``email:<the e-mail field>`` where the platform finds people by e-mail."""
    person = f"params.get('{spec.name}_user') or ''"
    if "email" in spec.handle_kinds:
        person += " or (('email:' ~ params.email) if params.get('email') else '')"
    return f"{{{{ ({person}) if '{spec.name}' in params.get('platforms', ['{spec.name}']) else '' }}}}"


def platforms_param(verb: str) -> Param:
    from airflow_invites.platforms import PLATFORMS

    return Param(
        list(PLATFORMS),
        type="array",
        items={"type": "string", "enum": list(PLATFORMS)},
        uniqueItems=True,
        title="Platforms",
        description=f"Which platforms to {verb} on (they run in the DAG's order).",
        section="Person",
    )


def person_params(verb: str) -> dict[str, Param]:
    """The person section of a one-person form: platforms, e-mail, and per platform the person and group."""
    from airflow_invites.platforms import PLATFORMS

    params = {"platforms": platforms_param(verb), "email": email_param()}
    for name, spec in PLATFORMS.items():
        params[f"{name}_user"] = user_param(spec)
        params[f"{name}_group"] = group_param(spec)
    return params


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


def dry_run_param(description: str = "Look up and report; invite nobody.") -> Param:
    return Param(False, type="boolean", title="Dry run", description=description, section="Options")


def nearest(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_conf(context: Any) -> None:
    """Fail, naming it and its nearest valid name, on a trigger-conf key the DAG declares no param for."""
    from airflow.sdk.exceptions import AirflowFailException

    dag_run, dag = context.get("dag_run"), context.get("dag")
    conf = getattr(dag_run, "conf", None) or {}
    declared = list(getattr(dag, "params", {}) or {})
    if not declared:
        return
    unknown = [key for key in conf if key not in declared]
    if unknown:
        key = unknown[0]
        raise AirflowFailException(
            f"trigger conf: unknown key {key!r}{nearest(key, declared)}; nothing was done. "
            f"This DAG takes: {', '.join(sorted(declared))}"
        )


def approval_param(verb: str = "invites") -> Param:
    """``require_approval``: preview the changes and wait for a person to approve them."""
    return Param(
        False,
        type="boolean",
        title="Require approval",
        description=f"Preview the {verb} (a dry run), then wait for someone to approve them in the "
        "Required Actions page before anyone is touched. Rejected: nobody is.",
        section="Options",
    )


def notify_room_param() -> Param:
    """``notify_room``: where notifications go (Rocket.Chat); empty: the Variable ``invites_notify_room``."""
    return Param(
        None,
        type=["null", "string"],
        title="Notify room (Rocket.Chat)",
        description="Room id, #channel or @username for 'approval needed' and 'failed on' messages. Empty: "
        "the Variable invites_notify_room; neither: no message.",
        section="Options",
    )
