"""The registry on the docker target (registry.py): deployed with htpasswd, or a team's own."""

from __future__ import annotations

import json

from etlstack import render
from tests.support.stacks import evaluate, stack_file_with
from tests.unit.docker.containers import (
    IMAGE,
    PREFIX,
    container,
    containers,
    env,
)


def test_the_registry_authenticates_with_htpasswd(revealed: render.Evaluation) -> None:
    registry = container(revealed, "registry").inputs
    variables = env(container(revealed, "registry"))
    assert variables["REGISTRY_AUTH"] == "htpasswd"
    # A secret anywhere in a property makes the whole property secret.
    assert render.is_secret(registry["uploads"])
    (upload,) = render.reveal(registry["uploads"])
    assert upload["file"] == variables["REGISTRY_AUTH_HTPASSWD_PATH"]
    user, digest = upload["content"].strip().split(":", 1)
    assert user == revealed.config.settings.registry.username
    assert digest.startswith("$2")
    assert registry["volumes"] == [
        {"volumeName": f"{PREFIX}-registry-data", "containerPath": "/var/lib/registry"}
    ]


def test_images_are_pushed_only_once_the_registry_runs(local: render.Evaluation) -> None:
    registry = container(local, "registry")
    builds = local.by_type(IMAGE)
    assert builds
    for build in builds:
        assert registry.urn in build.dependencies, build.name
        assert render.is_secret(build.inputs["registry"])
        assert render.mask(build.inputs["imageName"]).startswith("127.0.0.1:5000/etlstack/")


def test_a_registry_the_team_already_runs() -> None:
    with stack_file_with("local", {}, {"registryPassword": "team-registry-password"}):
        evaluation = evaluate(
            "local",
            registry={"external": True, "host": "registry.example.org", "username": "ci"},
        )
    assert f"{PREFIX}-registry" not in containers(evaluation)
    assert evaluation.outputs["registry"] == "registry.example.org"
    (provider,) = evaluation.by_type("pulumi:providers:docker")
    assert render.is_secret(provider.inputs["registryAuth"])
    assert "team-registry-password" in json.dumps(render.reveal(provider.inputs["registryAuth"]))
    for build in evaluation.by_type(IMAGE):
        assert render.mask(build.inputs["imageName"]).startswith("registry.example.org/etlstack/")
        assert render.reveal(build.inputs["registry"])["password"] == "team-registry-password"
