"""The applier's own rules, checked without a Docker Engine (these run with `make unit`).

The end-to-end run is only as faithful as the applier: it must create resources in
an order the program's dependencies allow, refuse inputs it cannot map, replace
exactly the placeholder digests the mock runtime hands out, and keep secrets out of
what it writes down.
"""

from __future__ import annotations

import dataclasses
import threading
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


def _fan_in(config: StackConfig) -> None:
    """Two independent networks, and a container that needs both."""
    first = docker_provider.Network("first", name="first")
    second = docker_provider.Network("second", name="second")
    docker_provider.Container(
        "joined",
        name="joined",
        image="i:1",
        opts=pulumi.ResourceOptions(depends_on=[first, second]),
    )


def test_independent_resources_are_created_together_and_before_what_needs_them() -> None:
    evaluation = render.evaluate("local", PROJECT_ROOT, overrides=SOCKET_GID, program=_fan_in)
    applier = deploy.Applier(None, evaluation, PROJECT_ROOT)
    # Each network waits until the other one is being created too: only a parallel
    # ready set gets both past the barrier.
    together = threading.Barrier(2, timeout=10)
    created: list[str] = []

    def create(resource: render.Resource) -> None:
        if resource.name in ("first", "second"):
            together.wait()
        created.append(resource.name)

    applier._create = create
    applier.apply()
    assert set(created[:2]) == {"first", "second"}
    assert created[2:] == ["joined"]
    assert [r.name for r in deploy.order(evaluation)] == ["first", "second", "joined"]


def test_a_dependency_cycle_stops_the_run_before_anything_is_created() -> None:
    evaluation = render.evaluate("local", PROJECT_ROOT, overrides=SOCKET_GID, program=_fan_in)
    cyclic = dataclasses.replace(
        evaluation,
        resources=[
            render.Resource(deploy.NETWORK, name, f"urn:{name}", {}, "", [f"urn:{needs}"], "", True)
            for name, needs in (("first", "second"), ("second", "first"))
        ],
    )
    with pytest.raises(RuntimeError, match=r"dependency cycle: (first|second) -> "):
        deploy.order(cyclic)
    applier = deploy.Applier(None, cyclic, PROJECT_ROOT)
    applier._create = lambda resource: pytest.fail(f"created {resource.name}")
    with pytest.raises(RuntimeError, match="dependency cycle"):
        applier.apply()
