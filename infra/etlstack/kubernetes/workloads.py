"""The scheduler, dag-processor and triggerer: one table of specs, one component each.

They differ only in their command, size, ports and whether they hold an API token;
each is an `AirflowWorkload` (airflow.py). The api-server, which adds a Service, a
PodDisruptionBudget and an Ingress, is its own component (api_server.py).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import (
    BACKUPS_DIRECTORY,
    METADATA_CONN_ENV,
    SCHEDULER_HEALTH_PORT,
    TASK_LOGS_DIRECTORY,
)
from etlstack.aliases import formerly
from etlstack.config import Airflow
from etlstack.kubernetes.airflow import (
    SCHEDULER_LOG_PORT,
    TRIGGERER_LOG_PORT,
    AirflowPod,
    AirflowWorkload,
    WorkloadSpec,
    exec_health_probes,
)
from etlstack.kubernetes.common import (
    HOSTNAME_TOPOLOGY,
    MountedVolume,
    claim_volume,
    labels,
    volume_claim,
)
from etlstack.kubernetes.secrets import AIRFLOW_ENV_SECRET

SCHEDULER = "scheduler"
DAG_PROCESSOR = "dag-processor"
TRIGGERER = "triggerer"
# The components that launch or watch task pods, and so are bound to the pod-launcher Role.
POD_LAUNCHERS = (SCHEDULER, TRIGGERER)
# The type each had when it was a class of its own, and was named after its component:
# an alias keeps such a deployed stack's resources (a changed type would otherwise
# replace every child).
_FORMER_TYPES = {
    SCHEDULER: "etlstack:kubernetes:AirflowScheduler",
    DAG_PROCESSOR: "etlstack:kubernetes:AirflowDagProcessor",
    TRIGGERER: "etlstack:kubernetes:AirflowTriggerer",
}


TASK_LOGS_CLAIM = "airflow-task-logs"


def task_logs_claim(
    resource_name: str,
    namespace: pulumi.Input[str],
    size: str,
    storage_class: str | None,
    retain: bool,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    """Where the scheduler writes task logs: they outlive its pods (every deploy replaces
    them) and, unless postgres.retainOnDestroy is false, the stack."""
    return volume_claim(
        resource_name,
        TASK_LOGS_CLAIM,
        namespace,
        labels("airflow", SCHEDULER),
        size,
        storage_class,
        pulumi.ResourceOptions.merge(
            opts,
            # Deployed stacks know the claim by its own name.
            pulumi.ResourceOptions(retain_on_delete=retain, aliases=formerly("airflow-task-logs")),
        ),
    )


def _scheduler_volumes(
    backups_claim: str | None, backup_pod_labels: dict[str, str]
) -> tuple[list[MountedVolume], k8s.core.v1.AffinityArgs | None]:
    """The task logs' claim; and, with the platform's own database, its backups' claim,
    read-only, on the backup pod's node (a ReadWriteOnce claim is on one node at a time)."""
    logs = MountedVolume(claim_volume(TASK_LOGS_CLAIM, "task-logs"), TASK_LOGS_DIRECTORY)
    if backups_claim is None:
        return [logs], None
    backups = MountedVolume(
        claim_volume(backups_claim, "backups"), BACKUPS_DIRECTORY, read_only=True
    )
    beside_backups = k8s.core.v1.AffinityArgs(
        pod_affinity=k8s.core.v1.PodAffinityArgs(
            required_during_scheduling_ignored_during_execution=[
                k8s.core.v1.PodAffinityTermArgs(
                    label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=backup_pod_labels),
                    topology_key=HOSTNAME_TOPOLOGY,
                )
            ]
        )
    )
    return [logs, backups], beside_backups


def background_workloads(
    airflow: Airflow,
    backups_claim: str | None = None,
    backup_pod_labels: dict[str, str] | None = None,
) -> list[WorkloadSpec]:
    scheduler_volumes, scheduler_affinity = _scheduler_volumes(
        backups_claim, backup_pod_labels or {}
    )
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
            mounted=scheduler_volumes,
            affinity=scheduler_affinity,
            # Housekeeping's `airflow db clean` reads Airflow's database as a connection.
            env=[
                k8s.core.v1.EnvVarArgs(
                    name=METADATA_CONN_ENV,
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                            name=AIRFLOW_ENV_SECRET, key="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
                        )
                    ),
                )
            ],
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
    platform: str,
    airflow: Airflow,
    pod: AirflowPod,
    opts: pulumi.ResourceOptions,
    backups_claim: str | None = None,
    backup_pod_labels: dict[str, str] | None = None,
) -> list[AirflowWorkload]:
    """One AirflowWorkload per spec, named f"{platform}-{component}".

    Deployed stacks know each by its component's name alone, with its present type or,
    deployed earlier still, its former one.
    """
    return [
        AirflowWorkload(
            f"{platform}-{spec.component}",
            spec,
            pod,
            opts=pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    aliases=[
                        *formerly(spec.component),
                        pulumi.Alias(name=spec.component, type_=_FORMER_TYPES[spec.component]),
                    ]
                ),
            ),
        )
        for spec in background_workloads(airflow, backups_claim, backup_pod_labels)
    ]
