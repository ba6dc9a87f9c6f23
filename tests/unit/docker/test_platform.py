"""The docker platform as a whole (platform.py): one explicit provider, images and
published ports from configuration, fixed-name containers and networks deleted before
they are replaced."""

from __future__ import annotations

import pytest

from etlstack import render
from tests.support.stacks import TEST_SOCKET_GID, evaluate
from tests.unit.docker.containers import (
    AIRFLOW_COMPONENTS,
    CONTAINER,
    IMAGE,
    NETWORK,
    REMOTE_IMAGE,
    container,
    containers,
    published,
)


def test_every_docker_resource_goes_through_the_explicit_provider(
    local: render.Evaluation,
) -> None:
    providers = local.by_type("pulumi:providers:docker")
    assert len(providers) == 1
    assert providers[0].inputs["host"] == f"unix://{local.config.docker.socket_path}"
    docker_resources = [r for r in local.resources if r.type.startswith("docker:index/")]
    assert docker_resources
    for resource in docker_resources:
        assert resource.provider.rsplit("::", 1)[0] == providers[0].urn, resource.name


def test_every_image_comes_from_configuration() -> None:
    mirror = {
        "postgres": "mirror.example:5000/library/postgres:16.9",
        "registry": "mirror.example:5000/library/registry:2.8.9",
        "dockerProxy": "mirror.example:5000/library/haproxy:3.0.9",
        "pythonBase": "mirror.example:5000/library/python:3.11.99",
    }
    evaluation = evaluate("local", images=mirror)
    assert container(evaluation, "postgres").inputs["image"] == mirror["postgres"]
    assert container(evaluation, "registry").inputs["image"] == mirror["registry"]
    assert container(evaluation, "docker-api-proxy").inputs["image"] == mirror["dockerProxy"]
    pulled = {r.inputs["name"]: r.inputs for r in evaluation.by_type(REMOTE_IMAGE)}
    assert set(pulled) == {mirror["postgres"], mirror["registry"], mirror["dockerProxy"]}
    assert all(image["keepLocally"] is True for image in pulled.values())
    for build in evaluation.by_type(IMAGE):
        assert build.inputs["build"]["args"]["BASE_IMAGE"] == mirror["pythonBase"]


@pytest.mark.parametrize("suffix", ["init", *AIRFLOW_COMPONENTS])
def test_airflow_runs_the_image_the_stack_deploys(local: render.Evaluation, suffix: str) -> None:
    deployed = local.outputs["artifacts"]["airflow"]
    assert container(local, f"airflow-{suffix}").inputs["image"] == deployed


def test_published_ports_bind_to_loopback_by_default(local: render.Evaluation) -> None:
    assert published(container(local, "airflow-api-server")) == [("127.0.0.1", 8080, 8080)]
    assert published(container(local, "registry")) == [("127.0.0.1", 5000, 5000)]
    everything = [port for r in containers(local).values() for port in published(r)]
    assert len(everything) == 2, "only the api-server and the registry are published"
    assert local.outputs["airflowUrl"] == "http://127.0.0.1:8080"
    assert local.outputs["registry"] == "127.0.0.1:5000"


def test_ports_and_bind_address_follow_configuration() -> None:
    evaluation = evaluate(
        "local",
        docker={
            "socketGid": TEST_SOCKET_GID,
            "bindAddress": "10.1.2.3",
            "ports": {"airflow": 18080, "registry": 15000, "postgres": 15432},
        },
    )
    assert published(container(evaluation, "airflow-api-server")) == [("10.1.2.3", 8080, 18080)]
    assert published(container(evaluation, "registry")) == [("10.1.2.3", 5000, 15000)]
    assert published(container(evaluation, "postgres")) == [("10.1.2.3", 5432, 15432)]
    assert evaluation.outputs["airflowUrl"] == "http://10.1.2.3:18080"
    assert evaluation.outputs["registry"] == "10.1.2.3:15000"


def test_fixed_names_are_deleted_before_they_are_replaced(local: render.Evaluation) -> None:
    fixed = [r for r in local.resources if r.type in (CONTAINER, NETWORK)]
    assert len(fixed) == 12
    for resource in fixed:
        assert resource.delete_before_replace is True, resource.name


def test_every_container_keeps_a_bounded_log(local: render.Evaluation) -> None:
    # A year of a scheduler's output must not fill the host.
    for name, resource in containers(local).items():
        assert resource.inputs["logDriver"] == "json-file", name
        assert resource.inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}, name
