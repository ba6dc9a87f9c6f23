"""The scheduler, dag-processor and triggerer (workloads.py): one table, and the identity
deployed stacks know."""

from __future__ import annotations

import pytest

from tests.support.stacks import KUBERNETES_STACKS, evaluate

WORKLOAD = "etlstack:kubernetes:AirflowWorkload"
FORMER = {
    "scheduler": "etlstack:kubernetes:AirflowScheduler",
    "dag-processor": "etlstack:kubernetes:AirflowDagProcessor",
    "triggerer": "etlstack:kubernetes:AirflowTriggerer",
}


@pytest.mark.parametrize("name", FORMER)
@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
def test_each_background_component_keeps_the_type_a_deployed_stack_knows(
    stack: str, name: str
) -> None:
    evaluation = evaluate(stack)
    workloads = {r.name: r for r in evaluation.by_type(WORKLOAD)}
    assert set(workloads) == set(FORMER)
    # With the alias the engine moves the old component and its children over
    # instead of replacing the Deployment and ServiceAccount.
    assert workloads[name].former_types == [FORMER[name]], name
