"""Airflow's configuration and secrets on Kubernetes (secrets.py): plain settings in a ConfigMap,
everything derived from a password in a Secret.
"""

from __future__ import annotations

import json
from typing import Any

from etlstack import render
from tests.unit.kubernetes.stack import (
    COMPONENTS,
    Stack,
    airflow_config,
    airflow_deployment,
    main_container,
)
from tests.unit.kubernetes_helpers import (
    all_containers,
    is_kubernetes_object,
    pod_spec,
)


def test_plain_config_in_a_config_map_secrets_only_in_secrets(stack: Stack) -> None:
    config = stack.resource("ConfigMap", "airflow-config")
    assert not render.is_secret(config.inputs["data"])
    data = airflow_config(stack)
    assert data["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    airflow_env = stack.resource("Secret", "airflow-env")
    assert render.is_secret(airflow_env.inputs["stringData"])
    assert set(render.reveal(airflow_env.inputs["stringData"])) == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    }
    for component in COMPONENTS:
        container = main_container(airflow_deployment(stack, component))
        assert container["envFrom"] == [
            {"configMapRef": {"name": "airflow-config"}},
            {"secretRef": {"name": "airflow-env"}},
        ]


def test_no_secret_value_in_any_config_map_or_plain_env(stack: Stack) -> None:
    secrets = stack.secret_values()
    assert secrets, "the stack holds generated secrets"
    plain: list[Any] = [o for o in stack.objects if o["kind"] == "ConfigMap"]
    for obj in stack.objects:
        spec = pod_spec(obj)
        if spec is not None:
            plain += [c.get("env", []) for c in all_containers(spec)]
    text = json.dumps(plain)
    assert not [s for s in secrets if s in text]


def test_every_password_derived_input_is_a_secret(stack: Stack) -> None:
    for resource in stack.evaluation.resources:
        if is_kubernetes_object(resource) and resource.inputs["kind"] == "Secret":
            assert render.is_secret(resource.inputs["stringData"]), resource.name
    assert render.is_secret(stack.evaluation.outputs["adminPassword"])
    for image in stack.evaluation.by_type("docker:index/image:Image"):
        assert render.is_secret(image.inputs["registry"])


def test_shared_airflow_keys_come_from_the_generated_once_component(stack: Stack) -> None:
    generated = [
        r.urn
        for r in stack.evaluation.resources
        if r.type.startswith("random:")
        and r.parent == _component_urn(stack, "etlstack:airflow:Secrets")
    ]
    assert len(generated) == 4
    airflow_env = stack.resource("Secret", "airflow-env")
    assert set(generated) - {_admin_password_urn(stack)} <= set(airflow_env.dependencies)


def _component_urn(stack: Stack, type_: str) -> str:
    (component,) = stack.evaluation.by_type(type_)
    return component.urn


def _admin_password_urn(stack: Stack) -> str:
    return next(r.urn for r in stack.evaluation.resources if r.name.endswith("admin-password"))
