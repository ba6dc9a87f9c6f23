"""The scheduler, dag-processor and triggerer (workloads.py): one table, the identity
deployed stacks know, and the scheduler's claims."""

from __future__ import annotations

import pytest

from etlstack import render
from tests.support.stacks import KUBERNETES_STACKS, evaluate
from tests.unit.kubernetes.stack import Stack
from tests.unit.kubernetes_helpers import claims, named, pod_spec

WORKLOAD = "etlstack:kubernetes:AirflowWorkload"
FORMER = {
    "scheduler": "etlstack:kubernetes:AirflowScheduler",
    "dag-processor": "etlstack:kubernetes:AirflowDagProcessor",
    "triggerer": "etlstack:kubernetes:AirflowTriggerer",
}


@pytest.mark.parametrize("component", FORMER)
@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
def test_each_background_component_keeps_the_name_and_type_a_deployed_stack_knows(
    stack: str, component: str
) -> None:
    evaluation = evaluate(stack)
    workloads = {r.name: r for r in evaluation.by_type(WORKLOAD)}
    assert set(workloads) == {f"etlstack-{c}" for c in FORMER}
    # With the aliases the engine moves the old component and its children over
    # instead of replacing the Deployment and ServiceAccount: the component was named
    # after its component alone, first with a type of its own, then as an AirflowWorkload.
    assert workloads[f"etlstack-{component}"].aliases == [
        (component, WORKLOAD),
        (component, FORMER[component]),
    ]


def test_the_scheduler_writes_task_logs_to_a_retained_claim_and_reads_the_backups(
    stack: Stack,
) -> None:
    scheduler = named(stack.objects, "Deployment", "airflow-scheduler")
    # A ReadWriteOnce claim: the old pod stops before the new one mounts it.
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(scheduler)
    assert spec is not None
    mounted = claims(spec)
    for container in [*spec["initContainers"], *spec["containers"]]:
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounted[mounts["/opt/airflow/logs"]["name"]] == "airflow-task-logs"
        backups = mounts["/opt/etlstack/backups"]
        assert mounted[backups["name"]] == "postgres-backups" and backups["readOnly"] is True
    # Both claims are ReadWriteOnce: the scheduler runs on the backup pod's node.
    (term,) = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    backup = named(stack.objects, "Deployment", "postgres-backup")
    assert term["labelSelector"]["matchLabels"] == backup["spec"]["selector"]["matchLabels"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    (scheduler_container,) = spec["containers"]
    (connection,) = scheduler_container["env"]
    assert connection == {
        "name": "AIRFLOW_CONN_AIRFLOW_METADATA",
        "valueFrom": {
            "secretKeyRef": {"name": "airflow-env", "key": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
        },
    }
    logs = stack.resource("PersistentVolumeClaim", "airflow-task-logs")
    assert logs.retain_on_delete is True
    housekeeping = stack.evaluation.config.settings.housekeeping
    assert render.reveal(logs.inputs["spec"])["resources"]["requests"] == {
        "storage": housekeeping.task_logs_storage_size
    }
