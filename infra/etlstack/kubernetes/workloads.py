"""The scheduler, dag-processor and triggerer: one table of specs, one component each.

They differ only in their command, size, ports and whether they hold an API token;
each is an `AirflowWorkload` (airflow.py). The api-server, which adds a Service, a
PodDisruptionBudget and an Ingress, is its own component (api_server.py).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import SCHEDULER_HEALTH_PORT
from etlstack.config import Airflow
from etlstack.kubernetes.airflow import (
    SCHEDULER_LOG_PORT,
    TRIGGERER_LOG_PORT,
    AirflowPod,
    AirflowWorkload,
    WorkloadSpec,
    exec_health_probes,
)

SCHEDULER = "scheduler"
DAG_PROCESSOR = "dag-processor"
TRIGGERER = "triggerer"
# The components that launch or watch task pods, and so are bound to the pod-launcher Role.
POD_LAUNCHERS = (SCHEDULER, TRIGGERER)
# The type each had when it was a class of its own: an alias keeps a deployed stack's
# resources (a changed type would otherwise replace every child).
_FORMER_TYPES = {
    SCHEDULER: "etlstack:kubernetes:AirflowScheduler",
    DAG_PROCESSOR: "etlstack:kubernetes:AirflowDagProcessor",
    TRIGGERER: "etlstack:kubernetes:AirflowTriggerer",
}


def background_workloads(airflow: Airflow) -> list[WorkloadSpec]:
    return [
        WorkloadSpec(
            component=SCHEDULER,
            command=["airflow", "scheduler"],
            settings=airflow.scheduler,
            # KubernetesPodOperator runs in this pod and needs the token of the
            # service account that the pod-launcher Role is bound to.
            api_token=True,
            ports=[
                k8s.core.v1.ContainerPortArgs(name="health", container_port=SCHEDULER_HEALTH_PORT),
                k8s.core.v1.ContainerPortArgs(name="task-logs", container_port=SCHEDULER_LOG_PORT),
            ],
            probes=exec_health_probes(SCHEDULER),
            # Running task processes get time to hand over before the pod is killed;
            # the operator reattaches to its task pods after a restart.
            termination_grace_period_seconds=120,
        ),
        WorkloadSpec(
            component=DAG_PROCESSOR,
            command=["airflow", "dag-processor"],
            settings=airflow.dag_processor,
            # It parses the DAGs baked into the image: no API token.
            probes=exec_health_probes(DAG_PROCESSOR),
        ),
        WorkloadSpec(
            component=TRIGGERER,
            command=["airflow", "triggerer"],
            settings=airflow.triggerer,
            # A deferred KubernetesPodOperator is watched from here: pods and events.
            api_token=True,
            ports=[
                k8s.core.v1.ContainerPortArgs(
                    name="trigger-logs", container_port=TRIGGERER_LOG_PORT
                )
            ],
            probes=exec_health_probes(TRIGGERER),
        ),
    ]


def background_components(
    airflow: Airflow, pod: AirflowPod, opts: pulumi.ResourceOptions
) -> list[AirflowWorkload]:
    """One AirflowWorkload per spec, each under its component's name."""
    return [
        AirflowWorkload(
            spec.component,
            spec,
            pod,
            opts=pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=_FORMER_TYPES[spec.component])]),
            ),
        )
        for spec in background_workloads(airflow)
    ]
