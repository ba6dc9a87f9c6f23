"""The applier's own rules, checked without a Docker Engine (these run with `make unit`).

The end-to-end run is only as faithful as the applier: it must create resources in
an order the program's dependencies allow, refuse inputs it cannot map, replace
exactly the placeholder digests the mock runtime hands out, and keep secrets out of
what it writes down.
"""

from __future__ import annotations

from typing import Any

import deploy
import pulumi
import pulumi_docker as docker_provider
import pytest
from harness import PROJECT_ROOT

from etlstack import render
from etlstack.config import StackConfig

SOCKET_GID = {"docker": {"socketGid": 998}}


def test_order_respects_every_dependency_of_the_local_stack() -> None:
    evaluation = render.evaluate("local", PROJECT_ROOT, overrides=SOCKET_GID)
    ordered = deploy.order(evaluation)
    position = {r.urn: i for i, r in enumerate(ordered)}
    _, needs = deploy._needs(evaluation)
    assert len(ordered) == len([r for r in evaluation.resources if r.custom])
    for resource in ordered:
        for needed in needs[resource.urn]:
            assert position[needed] < position[resource.urn], (resource.name, needed)
    names = [r.name for r in ordered]
    migration = next(n for n in names if n.endswith("airflow-migration"))
    # Builds and pushes wait for the registry; the migration for every image and the database.
    for image in evaluation.by_type(deploy.IMAGE):
        assert names.index(image.name) < names.index(migration)
        assert names.index(next(n for n in names if n.endswith("registry-container"))) < (
            names.index(image.name)
        )


def test_placeholders_are_the_ones_the_mock_runtime_gives() -> None:
    evaluation = render.evaluate("local", PROJECT_ROOT, overrides=SOCKET_GID)
    artifacts = evaluation.outputs["artifacts"]
    for image in evaluation.by_type(deploy.IMAGE):
        assert deploy._placeholder(image.inputs["imageName"]) in artifacts.values()


def _program_with(**container_args: Any) -> Any:
    def program(config: StackConfig) -> None:
        docker_provider.Container("c", name="c", image="i:1", **container_args)
        pulumi.export("x", 1)

    return program


def test_an_input_the_applier_does_not_map_stops_the_run() -> None:
    evaluation = render.evaluate(
        "local", PROJECT_ROOT, overrides=SOCKET_GID, program=_program_with(gpus="all")
    )
    applier = deploy.Applier(None, evaluation, PROJECT_ROOT)
    with pytest.raises(deploy.UnsupportedInput, match="gpus"):
        applier.apply()


def test_go_durations() -> None:
    assert deploy.go_duration_ns("0s") == 0
    assert deploy.go_duration_ns("30s") == 30 * 10**9
    assert deploy.go_duration_ns("1m30s") == 90 * 10**9
    assert deploy.go_duration_ns("250ms") == 250 * 10**6
    with pytest.raises(deploy.UnsupportedInput):
        deploy.go_duration_ns("30 seconds")


def test_redactor_hides_secret_values_and_their_parts() -> None:
    redact = deploy.Redactor()
    redact.collect(
        {
            "envs": pulumi.runtime.rpc.wrap_rpc_secret(
                ["DB=postgresql://warehouse:s3cretPassw0rdXYZ@postgres:5432/warehouse"]
            ),
            "plain": "LocalExecutorIsNotSecret",
        }
    )
    text = "connecting with s3cretPassw0rdXYZ as LocalExecutorIsNotSecret"
    assert redact(text) == "connecting with [secret] as LocalExecutorIsNotSecret"
