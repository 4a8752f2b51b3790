"""Provider registration: the one registry reaches Airflow as valid provider info."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

import airflow
import jsonschema

from airflow_invites.get_provider_info import get_provider_info
from airflow_invites.platforms import PLATFORMS


def test_provider_info_validates_against_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_platform_has_a_connection_type_with_its_own_fields():
    info = get_provider_info()
    types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(types) == set(PLATFORMS)
    for name, spec in PLATFORMS.items():
        entry = types[name]
        assert entry["hook-class-name"] == spec.hook
        for field in entry["conn-fields"].values():
            assert {"label", "schema"} <= set(field) and "type" in field["schema"]
        hook_class = spec.hook_class
        assert hook_class.conn_type == name
        assert hook_class.default_conn_name == spec.default_conn_id
        assert hook_class(**{hook_class.conn_name_attr: "x"}).conn_id == "x"  # the Test button's call


def test_every_listed_module_imports():
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                import_module(module)
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert hasattr(import_module(module), name)


def test_runtime_providers_manager_sees_our_hooks():
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    for name in PLATFORMS:
        assert hooks[name] is not None
