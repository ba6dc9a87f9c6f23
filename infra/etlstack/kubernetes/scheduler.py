"""The scheduler: runs tasks with the LocalExecutor, so it is what launches task pods."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import SCHEDULER_HEALTH_PORT
from etlstack.config import StackConfig
from etlstack.kubernetes.airflow import (
    SCHEDULER_LOG_PORT,
    AirflowPod,
    AirflowWorkload,
    WorkloadSpec,
    exec_health_probes,
)

COMPONENT = "scheduler"


class Scheduler(AirflowWorkload):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        pod: AirflowPod,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        spec = WorkloadSpec(
            component=COMPONENT,
            command=["airflow", "scheduler"],
            settings=config.settings.airflow.scheduler,
            # KubernetesPodOperator runs in this pod and needs the token of the
            # service account that the pod-launcher Role is bound to.
            api_token=True,
            ports=[
                k8s.core.v1.ContainerPortArgs(name="health", container_port=SCHEDULER_HEALTH_PORT),
                k8s.core.v1.ContainerPortArgs(name="task-logs", container_port=SCHEDULER_LOG_PORT),
            ],
            probes=exec_health_probes(COMPONENT),
            # Running task processes get time to hand over before the pod is killed;
            # the operator reattaches to its task pods after a restart.
            termination_grace_period_seconds=120,
        )
        super().__init__("etlstack:kubernetes:AirflowScheduler", name, spec, pod, opts)
        self.register_outputs({})
