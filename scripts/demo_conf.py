"""Build the onboard_user trigger conf from the sandbox's --print-env variables (first person each)."""

from __future__ import annotations

import json
import os

from airflow_invites.platforms import PLATFORMS

conf: dict[str, object] = {"message": "Welcome aboard!"}
for name in PLATFORMS:
    users = os.environ.get(f"INVITES_SANDBOX_{name.upper()}_USERS")
    if users:
        conf[f"{name}_user"] = users.split(",")[0]
        conf[f"{name}_group"] = os.environ[f"INVITES_SANDBOX_{name.upper()}_GROUP"]
print(json.dumps(conf))
