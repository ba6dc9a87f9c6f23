"""Airflow's containers on the docker target (airflow.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etlstack import render
from tests.support.stacks import evaluate
from tests.unit.docker.containers import (
    AIRFLOW_COMPONENTS,
    PREFIX,
    SHARED_SECRETS,
    VOLUME,
    container,
    containers,
    env,
)


def test_the_migration_runs_once_and_first(local: render.Evaluation) -> None:
    migration = container(local, "airflow-init")
    assert migration.inputs["command"] == ["etlstack-init"]
    assert migration.inputs["mustRun"] is False
    assert migration.inputs["attach"] is True
    assert container(local, "postgres").urn in migration.dependencies
    for suffix in AIRFLOW_COMPONENTS:
        assert migration.urn in container(local, f"airflow-{suffix}").dependencies


def test_the_migration_creates_the_admin_with_the_exported_password(
    revealed: render.Evaluation,
) -> None:
    variables = env(container(revealed, "airflow-init"))
    settings = revealed.config.settings.airflow
    assert variables["ETLSTACK_ADMIN_USERNAME"] == settings.admin_username
    assert variables["ETLSTACK_ADMIN_PASSWORD"] == render.reveal(revealed.outputs["adminPassword"])
    assert variables["ETLSTACK_PIPELINE_SLOTS"] == str(settings.pipeline_task_slots)
    assert render.is_secret(revealed.outputs["adminPassword"])


@pytest.mark.parametrize("suffix", AIRFLOW_COMPONENTS)
def test_each_airflow_component_runs_with_a_restart_policy_and_a_healthcheck(
    local: render.Evaluation, suffix: str
) -> None:
    component = container(local, f"airflow-{suffix}").inputs
    assert component["command"] == ["airflow", suffix]
    assert component["restart"] == "unless-stopped"
    assert component["healthcheck"]["tests"] == ["CMD", "airflow-healthcheck", suffix]


TASK_LOGS = {"volumeName": f"{PREFIX}-airflow-logs", "containerPath": "/opt/airflow/logs"}
BACKUPS_READ_ONLY = {
    "volumeName": f"{PREFIX}-postgres-backups",
    "containerPath": "/opt/etlstack/backups",
    "readOnly": True,
}


@pytest.mark.parametrize(
    ("suffix", "volumes"),
    [
        ("init", []),
        ("api-server", [TASK_LOGS]),
        ("scheduler", [TASK_LOGS, BACKUPS_READ_ONLY]),
        ("dag-processor", [TASK_LOGS]),
        ("triggerer", [TASK_LOGS]),
    ],
)
def test_airflow_containers_keep_no_privileges_and_mount_only_their_volumes(
    local: render.Evaluation, suffix: str, volumes: list[dict[str, object]]
) -> None:
    component = container(local, f"airflow-{suffix}").inputs
    assert component["capabilities"] == {"drops": ["ALL"]}
    assert component["securityOpts"] == ["no-new-privileges:true"]
    # Named volumes only: no host path, no other container's data.
    assert not component.get("mounts")
    assert (component.get("volumes") or []) == volumes
    assert not component.get("privileged")


def test_task_logs_outlive_the_containers_and_a_destroy_unless_the_stack_opts_out() -> None:
    def volume(**overrides: Any) -> render.Resource:
        return evaluate("local", **overrides).one(VOLUME, "etlstack-airflow-task-logs")

    assert volume().inputs["name"] == TASK_LOGS["volumeName"]
    assert volume().retain_on_delete is True
    assert volume(postgres={"retainOnDestroy": False}).retain_on_delete is False


def test_the_scheduler_waits_for_the_proxy(local: render.Evaluation) -> None:
    proxy = container(local, "docker-api-proxy")
    assert proxy.urn in container(local, "airflow-scheduler").dependencies


@pytest.mark.parametrize("key", SHARED_SECRETS)
def test_the_generated_keys_are_identical_in_every_component(
    revealed: render.Evaluation, key: str
) -> None:
    environments = [env(container(revealed, f"airflow-{s}")) for s in ["init", *AIRFLOW_COMPONENTS]]
    values = {variables[key] for variables in environments}
    assert len(values) == 1, key
    assert len(values.pop()) >= 32, key


@pytest.mark.parametrize("suffix", AIRFLOW_COMPONENTS)
def test_tasks_reach_the_execution_api_at_the_api_server(
    revealed: render.Evaluation, suffix: str
) -> None:
    variables = env(container(revealed, f"airflow-{suffix}"))
    assert variables["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-api-server:8080/execution/"
    )
    assert variables["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_only_the_scheduler_holds_the_warehouse_connection(revealed: render.Evaluation) -> None:
    holders = {
        name for name, r in containers(revealed).items() if "AIRFLOW_CONN_WAREHOUSE" in env(r)
    }
    assert holders == {f"{PREFIX}-airflow-scheduler"}


@pytest.mark.parametrize("suffix", AIRFLOW_COMPONENTS)
def test_the_runtime_contract_names_the_proxy_and_the_pipelines_network(
    revealed: render.Evaluation, suffix: str
) -> None:
    artifacts = revealed.outputs["artifacts"]
    variables = env(container(revealed, f"airflow-{suffix}"))
    runtime = json.loads(variables["ETLSTACK_RUNTIME"])
    assert runtime["target"] == "docker"
    (registry_storage,) = container(revealed, "registry").inputs["volumes"]
    assert runtime["docker"] == {
        "url": "tcp://docker-api-proxy:2375",
        "network": f"{PREFIX}-pipelines",
        "warehouseConnId": "warehouse",
        # Housekeeping reports its size.
        "registryVolume": registry_storage["volumeName"],
        # What the proxy takes of a task container (its tests hold it to them).
        "apiVersion": "1.41",
        "taskContainerPrefix": f"{PREFIX}-task-",
        "pidsLimit": 1024,
        "logMaxBytes": 10_000_000,
        "logMaxFiles": 3,
    }
    assert runtime["pipelineImages"] == {
        name: ref for name, ref in artifacts.items() if name not in ("airflow", "dags")
    }
    assert not any(s in variables["ETLSTACK_RUNTIME"] for s in revealed.generated_secrets)


def test_every_password_derived_input_is_a_secret(local: render.Evaluation) -> None:
    with_passwords = ["postgres", "airflow-init", *(f"airflow-{s}" for s in AIRFLOW_COMPONENTS)]
    for suffix in with_passwords:
        assert render.is_secret(container(local, suffix).inputs["envs"]), suffix
    assert render.is_secret(container(local, "registry").inputs["uploads"])
    assert render.is_secret(local.outputs["adminPassword"])


def test_no_generated_secret_appears_outside_a_secret(revealed: render.Evaluation) -> None:
    secrets = [s for s in revealed.generated_secrets if len(s) >= 12]
    assert secrets
    for resource in revealed.resources:
        if not resource.type.startswith("docker:"):
            continue
        masked = json.dumps(render.mask(resource.inputs))
        assert not any(s in masked for s in secrets), resource.name


def test_only_the_scheduler_holds_airflows_database_as_a_connection(
    revealed: render.Evaluation,
) -> None:
    # Task processes do not see AIRFLOW__DATABASE__SQL_ALCHEMY_CONN; housekeeping's
    # `airflow db clean` reads the same database from this connection.
    scheduler = env(container(revealed, "airflow-scheduler"))
    assert (
        scheduler["AIRFLOW_CONN_AIRFLOW_METADATA"]
        == scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    for suffix in ("init", "api-server", "dag-processor", "triggerer"):
        assert "AIRFLOW_CONN_AIRFLOW_METADATA" not in env(container(revealed, f"airflow-{suffix}"))
