"""Credentials of Airflow connections on SparkKubernetes, through the real kubernetes clients against the fake
API server: a Secret owned by the application becomes the driver's environment, and the values appear
nowhere else."""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import Any

import pytest

from airflow_provider_sparkpipe.connections import env_name
from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.hooks.kubernetes_manifest import config_digest
from airflow_provider_sparkpipe.runs import RunState
from tests.provider.kubernetes.conftest import (
    NAMESPACE,
    pipeline_document,
    poll_until_running,
    runtime,
    submission,
)
from tests.provider.kubernetes.fake_apiserver import FakeKubernetes

USER, PASSWORD = env_name("shop_db", "USER"), env_name("shop_db", "PASSWORD")
ENVIRONMENT = {USER: "etl_writer_7Qx", PASSWORD: "pw-Zr8!vK2#mQ9$tL"}
SECRETS = "/secrets"


def connection_document(app_name: str = "shop_summary") -> dict[str, Any]:
    """The shop pipeline with its JDBC target given as the operator writes a ``connection:`` reference."""
    document = pipeline_document(app_name)
    target = document["sequences"][1]["target"]
    target.update(user=f"${{env:{USER}}}", password=f"${{env:{PASSWORD}}}")
    return document


def with_credentials(
    try_number: int = 1, environment: dict[str, str] | None = None, app_name: str = "shop_summary"
) -> Any:
    return submission(
        try_number=try_number, document=connection_document(app_name), environment=environment or ENVIRONMENT
    )


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret_of(apiserver: FakeKubernetes, name: str) -> dict[str, Any]:
    return apiserver.secrets[(NAMESPACE, f"{name}-credentials")]


def test_the_credentials_travel_in_a_secret_owned_by_the_application(apiserver: FakeKubernetes) -> None:
    run = hook_for(runtime(labels={"team": "data"})).submit(with_credentials())
    secret = secret_of(apiserver, run.run_id)
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    assert "stringData" not in secret
    assert secret["data"] == {USER: b64(ENVIRONMENT[USER]), PASSWORD: b64(ENVIRONMENT[PASSWORD])}
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication",
            "name": run.run_id,
            "uid": run.details["uid"],
        }
    ]
    config_map = apiserver.config_maps[(NAMESPACE, f"{run.run_id}-config")]
    assert secret["metadata"]["labels"] == config_map["metadata"]["labels"]
    assert secret["metadata"]["labels"]["team"] == "data"
    assert run.details["credentials_uid"] == secret["metadata"]["uid"]
    # Only the driver reads the Secret.
    spec = apiserver.apps[(NAMESPACE, run.run_id)]["spec"]
    assert spec["driver"]["envFrom"] == [{"secretRef": {"name": f"{run.run_id}-credentials"}}]
    assert "envFrom" not in spec["executor"]


def test_no_request_but_the_secrets_own_creation_and_no_log_line_holds_a_value(
    apiserver: FakeKubernetes, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # the kubernetes client logs response bodies at debug level
    hook = hook_for(runtime())
    run = hook.submit(with_credentials())
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    assert hook.fetch_metrics(run) is not None
    hook.cleanup(run, RunState.SUCCEEDED)
    creations = apiserver.calls("POST", SECRETS)
    assert len(creations) == 1
    others = [r for r in apiserver.requests if r is not creations[0]]
    assert [r.method for r in others if r.body is not None].count("POST") == 2  # the application, the ConfigMap
    forbidden = [*ENVIRONMENT.values(), *(b64(v) for v in ENVIRONMENT.values())]
    for request in others:
        text = json.dumps(request.body)
        assert not [v for v in forbidden if v in text], (request.method, request.path)
    task_log = capsys.readouterr().out  # the hook's own log lines
    assert f"Created Secret {NAMESPACE}/{run.run_id}-credentials" in task_log
    assert "response body" in caplog.text
    assert not [v for v in forbidden if v in caplog.text + task_log]
    # The config and its digest hold the references only: the same digest as with other values.
    app = apiserver.calls("POST", "/sparkapplications")[0].body
    assert app["metadata"]["annotations"]["sparkpipe/config-digest"] == config_digest(connection_document())
    config_map = apiserver.calls("POST", "/configmaps")[0].body
    assert json.loads(config_map["data"]["config.json"])["sequences"][1]["target"]["password"] == f"${{env:{PASSWORD}}}"


def test_the_driver_starts_with_the_values_its_config_references(apiserver: FakeKubernetes) -> None:
    hook = hook_for(runtime(env={"TZ": "UTC"}))
    run = hook.submit(with_credentials())
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    driver_env = apiserver.driver_env[run.details["uid"]]
    assert driver_env == {**ENVIRONMENT, "TZ": "UTC"}
    config = apiserver.config_maps[(NAMESPACE, f"{run.run_id}-config")]["data"]["config.json"]
    references = set(re.findall(r"\$\{env:([A-Za-z0-9_]+)\}", config))
    assert references == {USER, PASSWORD}
    assert {name: driver_env[name] for name in references} == ENVIRONMENT


def test_a_driver_whose_secret_is_missing_never_starts(apiserver: FakeKubernetes) -> None:
    hook = hook_for(runtime())
    run = hook.submit(with_credentials())
    del apiserver.secrets[(NAMESPACE, f"{run.run_id}-credentials")]
    assert hook.wait(run, poll_interval=0.01) == RunState.FAILED
    assert run.details["uid"] not in apiserver.driver_env
    failure = hook.describe_failure(run) or ""
    assert f'driver pod failed to start: Error: secret "{run.run_id}-credentials" not found' in failure
    assert hook.fetch_metrics(run) is None


def test_the_secret_is_deleted_when_the_run_ends_and_a_failed_application_is_kept(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = "FAILED"
    hook = hook_for(runtime())
    run = hook.submit(with_credentials())
    assert hook.wait(run, poll_interval=0.01) == RunState.FAILED
    hook.cleanup(run, RunState.FAILED)
    assert apiserver.secrets == {}
    assert (NAMESPACE, run.run_id) in apiserver.apps and (NAMESPACE, f"{run.run_id}-config") in apiserver.config_maps
    deletes = apiserver.calls("DELETE", SECRETS)
    assert [d.body["preconditions"] for d in deletes] == [{"uid": run.details["credentials_uid"]}]


def test_cancel_deletes_the_secret_with_the_application(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    hook = hook_for(runtime())
    run = hook.submit(with_credentials())
    poll_until_running(hook, run)
    assert apiserver.driver_env[run.details["uid"]] == ENVIRONMENT
    hook.cancel(run)
    assert apiserver.apps == {} and apiserver.config_maps == {} and apiserver.secrets == {}
    assert [d.path.rsplit("/", 1)[1] for d in apiserver.calls("DELETE", SECRETS)] == [f"{run.run_id}-credentials"]
    hook.cancel(run)  # the Secret is gone already: harmless


def test_deleting_the_application_deletes_its_secret(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    run = hook_for(runtime()).submit(with_credentials())
    other = hook_for(runtime()).submit(submission(task_id="other_task", document=connection_document(), environment={}))
    assert list(apiserver.secrets) == [(NAMESPACE, f"{run.run_id}-credentials")]
    hook_for(runtime()).kube.delete_custom_object(
        "sparkoperator.k8s.io", "v1beta2", "sparkapplications", run.run_id, NAMESPACE
    )
    assert apiserver.secrets == {}  # garbage-collected with its owner, as the ConfigMap
    assert list(apiserver.config_maps) == [(NAMESPACE, f"{other.run_id}-config")]


def test_a_retry_re_attaching_to_the_running_application_creates_no_second_secret(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    first_hook = hook_for(runtime())
    first = first_hook.submit(with_credentials(try_number=1))
    secret_uid = secret_of(apiserver, first.run_id)["metadata"]["uid"]
    poll_until_running(first_hook, first)
    retry_hook = hook_for(runtime())
    retry = retry_hook.submit(with_credentials(try_number=2))
    assert (retry.details["uid"], retry.details["attached"]) == (first.details["uid"], True)
    assert "credentials_uid" not in retry.details
    assert len(apiserver.calls("POST", SECRETS)) == 1 and apiserver.calls("DELETE", SECRETS) == []
    assert secret_of(apiserver, retry.run_id)["metadata"]["uid"] == secret_uid
    assert retry_hook.poll(retry) == RunState.RUNNING
    assert apiserver.driver_env[retry.details["uid"]] == ENVIRONMENT


def test_a_replaced_application_gets_a_fresh_secret(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = "FAILED"
    hook = hook_for(runtime())
    first = hook.submit(with_credentials(try_number=1))
    assert hook.wait(first, poll_interval=0.01) == RunState.FAILED
    apiserver.outcomes["shop_summary"] = "COMPLETED"
    rotated = {**ENVIRONMENT, PASSWORD: "rotated-pw-5Tn"}
    retry_hook = hook_for(runtime())
    retry = retry_hook.submit(with_credentials(try_number=2, environment=rotated))
    assert retry.details["uid"] != first.details["uid"] and retry.details["attached"] is False
    secret = secret_of(apiserver, retry.run_id)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == retry.details["uid"]
    assert secret["data"][PASSWORD] == b64("rotated-pw-5Tn")
    assert len(apiserver.calls("POST", SECRETS)) == 2
    assert retry_hook.wait(retry, poll_interval=0.01) == RunState.SUCCEEDED
    assert apiserver.driver_env[retry.details["uid"]] == rotated


def test_a_secret_that_cannot_be_created_deletes_the_application(apiserver: FakeKubernetes) -> None:
    apiserver.refused[("POST", "secrets")] = 403
    hook = hook_for(runtime())
    with pytest.raises(SparkRuntimeError, match=r"cannot create Secret spark-jobs/.*-credentials: HTTP 403") as info:
        hook.submit(with_credentials())
    assert "RBAC permissions on sparkapplications/configmaps/secrets" in str(info.value)
    assert apiserver.apps == {} and apiserver.config_maps == {} and apiserver.secrets == {}
    app_deletes = apiserver.calls("DELETE", "/sparkapplications")
    assert [d.body["preconditions"]["uid"] for d in app_deletes] == [
        apiserver.calls("POST", "/configmaps")[0].body["metadata"]["ownerReferences"][0]["uid"]
    ]


def test_cancelling_a_replaced_attempt_leaves_the_new_applications_config_and_secret(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    old_hook = hook_for(runtime())
    old = old_hook.submit(with_credentials(try_number=1))
    new = hook_for(runtime()).submit(with_credentials(try_number=2, app_name="changed"))
    assert new.details["uid"] != old.details["uid"]
    old_hook.cancel(old)  # the uid precondition fails: the name is the new attempt's application now
    assert (NAMESPACE, new.run_id) in apiserver.apps
    assert secret_of(apiserver, new.run_id)["metadata"]["ownerReferences"][0]["uid"] == new.details["uid"]
    assert (NAMESPACE, f"{new.run_id}-config") in apiserver.config_maps
    old_hook.cleanup(old, RunState.CANCELLED)  # the old attempt's Secret is gone; the new one stays
    assert secret_of(apiserver, new.run_id)["metadata"]["ownerReferences"][0]["uid"] == new.details["uid"]


def test_a_submission_without_credentials_creates_no_secret(apiserver: FakeKubernetes) -> None:
    hook = hook_for(runtime())
    run = hook.submit(submission())
    assert "envFrom" not in apiserver.apps[(NAMESPACE, run.run_id)]["spec"]["driver"]
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    hook.cleanup(run, RunState.SUCCEEDED)
    assert apiserver.calls("POST", SECRETS) == [] and apiserver.calls("DELETE", SECRETS) == []


def test_a_retry_restores_what_an_attempt_stopped_while_submitting_did_not_create(apiserver: FakeKubernetes) -> None:
    """The worker died between creating the application and creating its ConfigMap and Secret: the
    driver would wait for them for ever. The retry re-attaches and creates them, owned by the application."""
    first = hook_for(runtime()).submit(with_credentials(try_number=1))
    app_uid = first.details["uid"]
    del apiserver.config_maps[(NAMESPACE, f"{first.run_id}-config")]
    del apiserver.secrets[(NAMESPACE, f"{first.run_id}-credentials")]
    retry_hook = hook_for(runtime())
    retry = retry_hook.submit(with_credentials(try_number=2))
    assert (retry.details["uid"], retry.details["attached"]) == (app_uid, True)
    config_map = apiserver.config_maps[(NAMESPACE, f"{first.run_id}-config")]
    assert json.loads(config_map["data"]["config.json"]) == connection_document()
    restored = secret_of(apiserver, first.run_id)
    assert {
        ref["uid"] for ref in [*config_map["metadata"]["ownerReferences"], *restored["metadata"]["ownerReferences"]]
    } == {app_uid}
    assert retry.details["credentials_uid"] == restored["metadata"]["uid"]
    assert retry_hook.wait(retry, poll_interval=0.01) == RunState.SUCCEEDED
    assert apiserver.driver_env[app_uid] == ENVIRONMENT
    retry_hook.cleanup(retry, RunState.SUCCEEDED)
    assert (NAMESPACE, f"{first.run_id}-credentials") not in apiserver.secrets  # deleted once the run ended


def test_a_retry_re_attaching_before_the_driver_started_keeps_existing_parts(apiserver: FakeKubernetes) -> None:
    first = hook_for(runtime()).submit(with_credentials(try_number=1))
    secret_uid = secret_of(apiserver, first.run_id)["metadata"]["uid"]
    retry = hook_for(runtime()).submit(with_credentials(try_number=2))
    assert retry.details["attached"] is True and "credentials_uid" not in retry.details
    assert secret_of(apiserver, first.run_id)["metadata"]["uid"] == secret_uid
    assert apiserver.calls("DELETE", SECRETS) == [] and apiserver.calls("DELETE", "/configmaps") == []
