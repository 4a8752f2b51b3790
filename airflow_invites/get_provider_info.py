"""Provider info: what Airflow learns about this package (built from ``platforms.PLATFORMS``)."""

from __future__ import annotations

from typing import Any

from airflow_invites import __version__
from airflow_invites.platforms import COMMON_CONN_FIELDS, PLATFORMS

#: the integration of the parts that serve every platform (onboarding, sensor, trigger)
GENERIC = "Invites"


def get_provider_info() -> dict[str, Any]:
    specs = list(PLATFORMS.values())
    return {
        "package-name": "airflow-invites",
        "name": "Invites",
        "description": "Invite people into groups on Bungie.net, VRChat, PlayFab, Bitrix24 and Rocket.Chat, "
        "idempotently, and onboard new people across them.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": GENERIC, "tags": ["service"]},
            *({"integration-name": spec.display, "tags": ["service"]} for spec in specs),
        ],
        "hooks": [
            {"integration-name": spec.display, "python-modules": [spec.hook.rsplit(".", 1)[0]]}
            for spec in specs
        ],
        "operators": [
            {
                "integration-name": GENERIC,
                "python-modules": ["airflow_invites.onboarding", "airflow_invites.bulk"],
            },
            *(
                {"integration-name": spec.display, "python-modules": [spec.operator.rsplit(".", 1)[0]]}
                for spec in specs
            ),
        ],
        # one sensor and one trigger serve every platform (they call the platform's hook)
        "sensors": [{"integration-name": GENERIC, "python-modules": ["airflow_invites.sensors.membership"]}],
        "triggers": [
            {"integration-name": GENERIC, "python-modules": ["airflow_invites.triggers.membership"]}
        ],
        "extra-links": ["airflow_invites.operators.base.GroupLink"],
        # invites://<platform>/<group>: the asset events of the membership tasks
        "asset-uris": [{"schemes": ["invites"], "handler": "airflow_invites.assets.normalize_uri"}],
        "notifications": ["airflow_invites.notifications.rocketchat.RocketChatNotifier"],
        "connection-types": [
            {
                "connection-type": spec.conn_type,
                "hook-class-name": spec.hook,
                "hook-name": spec.display,
                "ui-field-behaviour": spec.ui_field_behaviour,
                "conn-fields": {**spec.conn_fields, **COMMON_CONN_FIELDS},
            }
            for spec in specs
        ],
    }
