"""The ``sparkpipe`` connection form as Airflow 3's UI gets it: the ``/ui/connections/hook_meta`` answer
of the real API app, built from the provider info's ``conn-fields`` and ``ui-field-behaviour``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_provider_sparkpipe.get_provider_info import SPARKPIPE_CONN_FIELDS, get_provider_info
from airflow_provider_sparkpipe.runtimes import runtime_kinds, runtimes

SCRIPT = """
import json
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app

response = TestClient(create_app("core")).get("/ui/connections/hook_meta")
sparkpipe = [m for m in response.json() if m["connection_type"] == "sparkpipe"]
print("HOOK_META", response.status_code, json.dumps(sparkpipe))
"""


@pytest.fixture(scope="module")
def form(airflow_home: Path) -> dict[str, Any]:
    """What the API server answers the UI for the sparkpipe connection type (Airflow's own auth manager)."""
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("HOOK_META ")), None)
    assert line is not None, done.stdout[-5000:] + done.stderr[-5000:]
    _, status, body = line.split(" ", 2)
    assert status == "200", body
    (meta,) = json.loads(body)
    return meta


def test_the_form_hides_the_standard_fields_the_runtime_does_not_use(form: dict[str, Any]) -> None:
    assert form["hook_name"] == "Spark pipeline (sparkpipe)"
    standard = form["standard_fields"]
    assert {name for name, field in standard.items() if field and field["hidden"]} == {
        "host",
        "port",
        "login",
        "password",
        "url_schema",
    }


def test_every_setting_has_a_field_saying_what_to_type(form: dict[str, Any]) -> None:
    fields = form["extra_fields"]
    assert list(fields) == list(SPARKPIPE_CONN_FIELDS)
    for name, field in fields.items():
        assert field["schema"]["title"], name
        assert len(field["description"] or "") > 20, name
        # Nothing prefilled: the Extra box holds only what the user types.
        assert field["value"] is None, name
        assert "null" in field["schema"]["type"], name  # a field may be left empty
    assert sorted(k for k in fields["runtime"]["schema"]["enum"] if k is not None) == runtime_kinds()
    assert "spark://spark-master:7077" in fields["master"]["schema"]["examples"]
    assert fields["conf"]["schema"]["type"] == ["object", "null"]
    assert {"WARN", "INFO"} <= set(fields["log_level"]["schema"]["enum"])
    assert "gs://" in fields["staging_uri"]["description"] and "s3://" in fields["staging_uri"]["description"]


def test_the_fields_are_the_settings_of_the_runtimes() -> None:
    """Each field is a setting of some runtime, and each setting a runtime requires has a field."""
    runtime_fields = {kind: dataclasses.fields(cls) for kind, cls in runtimes.items()}  # type: ignore[arg-type]
    assert sorted(runtime_fields) == runtime_kinds()
    settings = {f.name for fields in runtime_fields.values() for f in fields}
    assert set(SPARKPIPE_CONN_FIELDS) - {"runtime"} <= settings
    required = {
        f.name
        for fields in runtime_fields.values()
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert required and required <= set(SPARKPIPE_CONN_FIELDS)


def test_the_connection_type_follows_airflows_provider_schema() -> None:
    schema_path = Path(jsonschema.__file__).parents[1] / "airflow" / "provider.yaml.schema.json"
    schema = json.loads(schema_path.read_text())
    item = schema["properties"]["connection-types"]["items"]
    for conn_type in get_provider_info()["connection-types"]:
        jsonschema.validate(conn_type, item)
