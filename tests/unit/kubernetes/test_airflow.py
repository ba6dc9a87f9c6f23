"""Airflow's four components on Kubernetes (airflow.py, api_server.py and the workloads)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from etlstack import render
from tests.unit.kubernetes.stack import (
    COMPONENTS,
    Stack,
    airflow_config,
    airflow_deployment,
    evaluate_stack,
    main_container,
)
from tests.unit.kubernetes_helpers import (
    named,
    of_kind,
    pod_labels,
    pod_spec,
)


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_is_a_deployment_with_a_service_account_of_its_own(
    stack: Stack, component: str
) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(stack.objects, "ServiceAccount")}
    spec = pod_spec(airflow_deployment(stack, component))
    assert spec is not None
    assert spec["serviceAccountName"] == f"airflow-{component}"
    assert accounts[f"airflow-{component}"]["metadata"]["namespace"] == stack.platform
    # Only the pods that launch task pods hold an API token.
    assert spec["automountServiceAccountToken"] is (component in ("scheduler", "triggerer"))
    assert spec["imagePullSecrets"] == [{"name": "registry-pull"}]


def test_api_server_replicas_and_disruption_budget_follow_config(stack: Stack) -> None:
    replicas = stack.evaluation.config.settings.airflow.api_server.replicas
    assert airflow_deployment(stack, "api-server")["spec"]["replicas"] == replicas
    budgets = of_kind(stack.objects, "PodDisruptionBudget")
    if replicas > 1:
        (budget,) = budgets
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == pod_labels(
            airflow_deployment(stack, "api-server")
        )
    else:
        assert budgets == []


def test_disruption_budget_appears_when_dev_scales_out() -> None:
    stack = evaluate_stack("dev", airflow={"apiServer": {"replicas": 3}})
    assert airflow_deployment(stack, "api-server")["spec"]["replicas"] == 3
    assert len(of_kind(stack.objects, "PodDisruptionBudget")) == 1


@pytest.mark.parametrize("component", COMPONENTS)
def test_commands_probes_and_resources(stack: Stack, component: str) -> None:
    airflow = stack.evaluation.config.settings.airflow
    settings = {
        "api-server": airflow.api_server,
        "scheduler": airflow.scheduler,
        "dag-processor": airflow.dag_processor,
        "triggerer": airflow.triggerer,
    }
    container = main_container(airflow_deployment(stack, component))
    assert container["command"][:2] == ["airflow", component]
    amounts = {
        "cpu": settings[component].resources.cpu,
        "memory": settings[component].resources.memory,
    }
    assert container["resources"] == {"requests": amounts, "limits": amounts}
    if component == "api-server":
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {
                "path": "/api/v2/monitor/health",
                "port": 8080,
            }
    else:
        assert container["livenessProbe"]["exec"]["command"] == [
            "airflow-healthcheck",
            component,
        ]


def test_runtime_contract_for_the_dag_factory(stack: Stack) -> None:
    runtime = json.loads(airflow_config(stack)["ETLSTACK_RUNTIME"])
    assert runtime["target"] == "kubernetes"
    assert runtime["kubernetes"] == {
        "namespace": stack.pipelines,
        "serviceAccount": "pipeline-task",
        "imagePullSecret": "registry-pull",
        "warehouseSecret": "warehouse",
    }
    artifacts = stack.evaluation.outputs["artifacts"]
    assert runtime["pipelineImages"] == {
        k: v for k, v in artifacts.items() if k not in ("airflow", "dags")
    }
    # Everything the contract names exists where task pods look for it.
    named(stack.objects, "ServiceAccount", "pipeline-task")
    for name in ("registry-pull", "warehouse"):
        namespaces = {
            o["metadata"]["namespace"]
            for o in of_kind(stack.objects, "Secret")
            if o["metadata"]["name"] == name
        }
        assert stack.pipelines in namespaces
    warehouse = stack.resource("Secret", "warehouse")
    assert set(render.reveal(warehouse.inputs["stringData"])) == {"url"}
    assert render.reveal(warehouse.inputs["stringData"])["url"].startswith("postgresql://")


def test_execution_api_url_is_the_api_server_service(stack: Stack) -> None:
    url = urlsplit(airflow_config(stack)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    service = named(stack.objects, "Service", "airflow-api-server")
    assert url.hostname == f"airflow-api-server.{stack.platform}.svc"
    assert url.port == service["spec"]["ports"][0]["port"] == 8080
    assert url.path == "/execution/"
    assert service["spec"]["selector"] == pod_labels(airflow_deployment(stack, "api-server"))


def test_ingress_follows_config(stack: Stack) -> None:
    ingress = stack.kubernetes.ingress
    airflow_ingresses = [
        i
        for i in of_kind(stack.objects, "Ingress")
        if i["metadata"]["name"] == "airflow-api-server"
    ]
    if ingress.enabled:
        (found,) = airflow_ingresses
        assert found["spec"]["rules"][0]["host"] == ingress.host
        assert stack.evaluation.outputs["airflowUrl"].endswith(ingress.host)
        assert (
            airflow_config(stack)["AIRFLOW__API__BASE_URL"]
            == stack.evaluation.outputs["airflowUrl"]
        )
    else:
        assert airflow_ingresses == []
