"""The database migration Job (migrations.py) and the components that wait for it."""

from __future__ import annotations

import re

import pytest

from etlstack.kubernetes.migrations import job_name
from tests.unit.kubernetes.stack import (
    COMPONENTS,
    Stack,
    airflow_deployment,
    container_env,
    evaluate_stack,
    main_container,
    migration_job,
)
from tests.unit.kubernetes_helpers import (
    pod_spec,
)


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_wait_for_the_migration_job(stack: Stack, component: str) -> None:
    job = stack.resource("Job", migration_job(stack)["metadata"]["name"])
    deployment = airflow_deployment(stack, component)
    spec = pod_spec(deployment)
    assert spec is not None
    (init,) = spec["initContainers"]
    assert init["command"][:3] == ["airflow", "db", "check-migrations"]
    assert init["image"] == main_container(deployment)["image"]
    assert job.urn in stack.resource("Deployment", f"airflow-{component}").dependencies


def test_migration_job_runs_init_and_is_named_after_version_and_image(stack: Stack) -> None:
    job = migration_job(stack)
    container = main_container(job)
    assert container["command"] == ["etlstack-init"]
    version = stack.evaluation.config.project_root.joinpath(
        "airflow_image", "requirements.txt"
    ).read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)", version, re.M)
    assert airflow_version is not None
    assert job["metadata"]["name"].startswith(
        f"airflow-migrate-{airflow_version[1].replace('.', '-')}-"
    )
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    assert len(job["metadata"]["name"]) <= 63
    assert (
        container_env(container)["ETLSTACK_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "airflow-admin"
    )
    assert container["image"] == stack.evaluation.outputs["artifacts"]["airflow"]


def test_a_new_image_gets_a_new_migration_job() -> None:
    def job_for(digit: str) -> str:
        artifacts = {
            "airflow": "registry.example.org/etlstack/airflow@sha256:" + digit * 64,
            "dags": "dags-" + digit * 12,
        }
        return migration_job(evaluate_stack("dev", artifacts=artifacts))["metadata"]["name"]

    assert job_for("1") != job_for("2")
    assert job_name("3.3.2", "x") == job_name("3.3.2", "x") != job_name("3.3.3", "x")
