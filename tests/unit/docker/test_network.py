"""The docker platform's networks (network.py): which container is on which, under which alias."""

from __future__ import annotations

from etlstack import render
from tests.unit.docker.containers import (
    AIRFLOW_COMPONENTS,
    NETWORK,
    PREFIX,
    container,
    containers,
    networks_of,
)


def test_the_networks_are_private_and_named_after_the_stack(local: render.Evaluation) -> None:
    networks = {r.inputs["name"]: r.inputs for r in local.by_type(NETWORK)}
    assert set(networks) == {f"{PREFIX}-platform", f"{PREFIX}-docker-api", f"{PREFIX}-pipelines"}
    assert networks[f"{PREFIX}-docker-api"].get("internal") is True


def test_only_the_proxy_and_the_scheduler_are_on_the_docker_api_network(
    local: render.Evaluation,
) -> None:
    on_docker_api = {
        name for name, r in containers(local).items() if f"{PREFIX}-docker-api" in networks_of(r)
    }
    assert on_docker_api == {f"{PREFIX}-docker-api-proxy", f"{PREFIX}-airflow-scheduler"}
    proxy = container(local, "docker-api-proxy")
    assert networks_of(proxy) == {f"{PREFIX}-docker-api": ["docker-api-proxy"]}


def test_only_the_warehouse_shares_the_pipelines_network(local: render.Evaluation) -> None:
    on_pipelines = {
        name: networks_of(r)[f"{PREFIX}-pipelines"]
        for name, r in containers(local).items()
        if f"{PREFIX}-pipelines" in networks_of(r)
    }
    assert on_pipelines == {f"{PREFIX}-postgres": ["postgres"]}


def test_platform_network_aliases(local: render.Evaluation) -> None:
    platform = f"{PREFIX}-platform"
    assert networks_of(container(local, "postgres"))[platform] == ["postgres"]
    assert networks_of(container(local, "registry"))[platform] == ["registry"]
    for suffix, alias in AIRFLOW_COMPONENTS.items():
        component = container(local, f"airflow-{suffix}")
        assert networks_of(component)[platform] == [alias]
        assert component.inputs["hostname"] == alias
