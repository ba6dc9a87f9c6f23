"""The `local` stack's Docker resources as the tests read them: containers by name, their
environment, networks and published ports."""

from __future__ import annotations

from etlstack import render

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
PREFIX = "etlstack-local"
AIRFLOW_COMPONENTS = {
    "api-server": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
}
SHARED_SECRETS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
)


def containers(evaluation: render.Evaluation) -> dict[str, render.Resource]:
    return {r.inputs["name"]: r for r in evaluation.by_type(CONTAINER)}


def container(evaluation: render.Evaluation, suffix: str) -> render.Resource:
    return containers(evaluation)[f"{PREFIX}-{suffix}"]


def env(resource: render.Resource) -> dict[str, str]:
    pairs = render.reveal(resource.inputs.get("envs") or [])
    return dict(pair.split("=", 1) for pair in pairs)


def networks_of(resource: render.Resource) -> dict[str, list[str]]:
    return {
        n["name"]: list(n.get("aliases") or []) for n in resource.inputs.get("networksAdvanced", [])
    }


def published(resource: render.Resource) -> list[tuple[str, int, int]]:
    return [
        (p["ip"], int(p["internal"]), int(p["external"])) for p in resource.inputs.get("ports", [])
    ]
