"""Who reaches whom under the NetworkPolicies the stacks declare (network_policies.py).

Decided by the offline NetworkPolicy model in tests/unit/kubernetes_helpers.py, which
has known-answer tests of its own (tests/unit/test_kubernetes_helpers.py).
"""

from __future__ import annotations

from tests.unit.kubernetes.stack import (
    Stack,
    endpoints,
    evaluate_stack,
    runs_its_registry,
)
from tests.unit.kubernetes_helpers import (
    Endpoint,
    NetworkPolicies,
)


def test_only_airflow_its_backups_and_pipeline_pods_reach_postgres(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    reach = {name for name, pod in pods.items() if policies.allowed(pod, pods["postgres"], 5432)}
    assert reach == {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "migrations",
        "postgres-backup",
        "task",
    }


def test_the_backup_pod_reaches_postgres_and_nothing_else(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    backup = pods["postgres-backup"]
    reached = {
        (name, port)
        for name, pod in pods.items()
        for port in (80, 443, 5000, 5432, 6443, 8080, 8793)
        if name != "postgres-backup" and policies.allowed(backup, pod, port)
    }
    assert reached == {("postgres", 5432)}


def test_only_what_must_reaches_the_api_server(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    reach = {
        n for n, pod in pods.items() if policies.allowed(pod, pods["airflow-api-server"], 8080)
    }
    expected = {"airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    if stack.kubernetes.ingress.enabled:
        expected.add("ingress-controller")
    assert reach == expected


def test_task_pods_reach_the_warehouse_and_dns_only(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    task = pods["task"]
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"})
    assert policies.allowed(task, dns, 53, "UDP")
    assert policies.allowed(task, pods["postgres"], 5432)
    assert not policies.allowed(task, pods["postgres"], 22)
    assert not policies.allowed(task, Endpoint(ip="203.0.113.9"), 443)
    assert not policies.allowed(task, Endpoint(ip="10.96.0.1"), 443), "no Kubernetes API"
    for name in ("airflow-scheduler", "registry", "elsewhere"):
        if name in pods:
            assert not policies.allowed(task, pods[name], 8793)
    assert not any(policies.allowed(pod, task, 8080) for pod in pods.values())


def test_only_the_launchers_reach_the_kubernetes_api(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    api = Endpoint(ip="10.96.0.1")
    reach = {
        n
        for n, pod in pods.items()
        if pod.namespace in (stack.platform, stack.pipelines) and policies.allowed(pod, api, 443)
    }
    assert reach == {"airflow-scheduler", "airflow-triggerer"}


def test_the_api_server_fetches_task_logs_and_the_registry_is_behind_the_ingress(
    stack: Stack,
) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = endpoints(stack)
    assert policies.allowed(pods["airflow-api-server"], pods["airflow-scheduler"], 8793)
    assert policies.allowed(pods["airflow-api-server"], pods["airflow-triggerer"], 8794)
    assert not policies.allowed(pods["airflow-dag-processor"], pods["airflow-scheduler"], 8793)
    if runs_its_registry(stack):
        reach = {n for n, pod in pods.items() if policies.allowed(pod, pods["registry"], 5000)}
        assert reach == {"ingress-controller"}


def test_pipeline_egress_networks_come_from_config() -> None:
    stack = evaluate_stack(
        "dev",
        kubernetes={
            "context": "dev-cluster",
            "version": "1.30",
            "pipelineEgressCidrs": ["203.0.113.0/24"],
        },
    )
    policies = NetworkPolicies(stack.objects)
    task = endpoints(stack)["task"]
    assert policies.allowed(task, Endpoint(ip="203.0.113.9"), 443)
    assert not policies.allowed(task, Endpoint(ip="198.51.100.1"), 443)
