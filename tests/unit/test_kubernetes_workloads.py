"""The scheduler, dag-processor and triggerer: one table, and the identity deployed stacks know."""

from __future__ import annotations

import pytest

from etlstack import render
from tests.conftest import PROJECT_ROOT

WORKLOAD = "etlstack:kubernetes:AirflowWorkload"
FORMER = {
    "scheduler": "etlstack:kubernetes:AirflowScheduler",
    "dag-processor": "etlstack:kubernetes:AirflowDagProcessor",
    "triggerer": "etlstack:kubernetes:AirflowTriggerer",
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_background_component_keeps_the_type_a_deployed_stack_knows(stack: str) -> None:
    evaluation = render.evaluate(stack, PROJECT_ROOT)
    workloads = {r.name: r for r in evaluation.by_type(WORKLOAD)}
    assert set(workloads) == set(FORMER)
    for name, former in FORMER.items():
        # With the alias the engine moves the old component and its children over
        # instead of replacing the Deployment and ServiceAccount.
        assert workloads[name].former_types == [former], name
