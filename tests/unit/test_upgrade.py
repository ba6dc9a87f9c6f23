"""A stack deployed before child logical names were derived from component names keeps
every resource: `pulumi up` adopts each under its new name, through an alias, instead
of creating it anew and deleting the old one (a database's claim, a generated key).

deployed_urns/<stack>.txt holds the URNs each stack declared then (its header says so).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etlstack import render
from tests.support.stacks import evaluate

DEPLOYED_URNS = Path(__file__).parent / "deployed_urns"
DEPLOYED_STACKS = sorted(path.stem for path in DEPLOYED_URNS.glob("*.txt"))


def deployed_urns(stack: str) -> set[str]:
    lines = (DEPLOYED_URNS / f"{stack}.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def test_every_stack_has_its_deployed_urns() -> None:
    # Without their files the test below would check nothing, and pass.
    assert DEPLOYED_STACKS == ["dev", "local", "prod"]


@pytest.mark.parametrize("stack", DEPLOYED_STACKS)
def test_every_resource_a_deployed_stack_holds_is_adopted_not_replaced(stack: str) -> None:
    held = deployed_urns(stack)
    # The former resources each current one would take over: the one at its own URN,
    # and any its aliases stand for.
    adopts = {
        resource.urn: [urn for urn in (resource.urn, *resource.alias_urns()) if urn in held]
        for resource in evaluate(stack).resources
    }
    adopted = [urn for urns in adopts.values() for urn in urns]
    lost = sorted(held - set(adopted))
    assert not lost, "no resource takes these over, so `pulumi up` would replace them:\n" + (
        "\n".join(lost)
    )
    # The engine refuses a former resource that two resources claim, and a resource
    # that finds two takes the first and deletes the other.
    claimed_twice = sorted({urn for urn in adopted if adopted.count(urn) > 1})
    assert not claimed_twice, f"two resources take these over: {claimed_twice}"
    greedy = {urn: urns for urn, urns in adopts.items() if len(urns) > 1}
    assert not greedy, f"resources that would take over more than one: {greedy}"


def test_an_alias_stands_for_the_urn_with_the_former_name_and_type() -> None:
    def resource(urn: str, aliases: list[tuple[str, str]]) -> render.Resource:
        return render.Resource(
            type=urn.split("::")[2].split("$")[-1],
            name=urn.split("::")[3],
            urn=urn,
            inputs={},
            parent="",
            dependencies=[],
            provider="",
            custom=True,
            aliases=aliases,
        )

    nested = resource(
        "urn:pulumi:dev::etlstack::etlstack:kubernetes:Platform$etlstack:kubernetes:Postgres::"
        "etlstack-postgres",
        [("postgres", "etlstack:kubernetes:Postgres"), ("db", "etlstack:kubernetes:Database")],
    )
    assert nested.alias_urns() == [
        "urn:pulumi:dev::etlstack::etlstack:kubernetes:Platform$etlstack:kubernetes:Postgres::"
        "postgres",
        "urn:pulumi:dev::etlstack::etlstack:kubernetes:Platform$etlstack:kubernetes:Database::db",
    ]
    top_level = resource(
        "urn:pulumi:dev::etlstack::etlstack:kubernetes:Platform::etlstack",
        [("platform", "etlstack:kubernetes:Platform")],
    )
    assert top_level.alias_urns() == [
        "urn:pulumi:dev::etlstack::etlstack:kubernetes:Platform::platform"
    ]
