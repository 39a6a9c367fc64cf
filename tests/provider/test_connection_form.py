"""The ``sparkpipe`` connection form as Airflow 3's UI gets it: the ``/ui/connections/hook_meta`` answer
of the real API app, built from the provider info's ``conn-fields`` and ``ui-field-behaviour``.

Airflow's form saves every field it shows, an empty one as ``null``: the form has one field, the
runtime (a choice without an empty entry), and lists each runtime's settings for the Extra JSON.
What the browser shows and saves is checked by the deployment test."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_provider_sparkpipe.get_provider_info import RUNTIME_LABELS, RUNTIME_SETTINGS, get_provider_info
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


def test_the_one_field_is_the_runtime_chosen_by_name_without_an_empty_choice(form: dict[str, Any]) -> None:
    (name, field), *others = form["extra_fields"].items()
    assert (name, others) == ("runtime", [])
    schema = field["schema"]
    assert schema["title"] == "Runtime" and schema["type"] == "string"
    assert schema["enum"] == runtime_kinds_in_form() and None not in schema["enum"]
    assert field["value"] == "local"  # what a new connection saves unless another runtime is chosen
    assert set(schema["values_display"]) == set(runtime_kinds())
    # The help text (Markdown: Airflow shows it when the field has no plain description) lists the settings.
    assert field["description"] is None and "Extra Fields JSON" in schema["description_md"]


def runtime_kinds_in_form() -> list[str]:
    return list(RUNTIME_LABELS)  # the built-in ones, in the order of the form; no plugin is installed here


def test_the_help_lists_every_setting_of_each_runtime_required_ones_in_bold(form: dict[str, Any]) -> None:
    help_text = form["extra_fields"]["runtime"]["schema"]["description_md"]
    bullets = dict(re.findall(r"^- (\w+): (.*)$", help_text, re.MULTILINE))
    assert sorted(bullets) == runtime_kinds() == sorted(RUNTIME_SETTINGS)
    for kind, cls in runtimes.items():
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        listed = set(re.findall(r"\w+", bullets[kind].replace(" or ", ", "))) - {"or"}
        assert listed == {f.name for f in fields}, kind
        bold = set(re.findall(r"\*\*(\w+)\*\*", bullets[kind]))
        required = {
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        assert required <= bold, kind


def test_the_connection_type_follows_airflows_provider_schema() -> None:
    schema_path = Path(jsonschema.__file__).parents[1] / "airflow" / "provider.yaml.schema.json"
    schema = json.loads(schema_path.read_text())
    item = schema["properties"]["connection-types"]["items"]
    for conn_type in get_provider_info()["connection-types"]:
        jsonschema.validate(conn_type, item)
