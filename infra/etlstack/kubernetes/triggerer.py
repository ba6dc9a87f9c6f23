"""The triggerer: runs deferred tasks' triggers, including deferrable pod operators."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from etlstack.config import StackConfig
from etlstack.kubernetes.airflow import (
    TRIGGERER_LOG_PORT,
    AirflowPod,
    AirflowWorkload,
    WorkloadSpec,
    exec_health_probes,
)

COMPONENT = "triggerer"


class Triggerer(AirflowWorkload):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        pod: AirflowPod,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        spec = WorkloadSpec(
            component=COMPONENT,
            command=["airflow", "triggerer"],
            settings=config.settings.airflow.triggerer,
            # A deferred KubernetesPodOperator is watched from here: pods and events.
            api_token=True,
            ports=[
                k8s.core.v1.ContainerPortArgs(
                    name="trigger-logs", container_port=TRIGGERER_LOG_PORT
                )
            ],
            probes=exec_health_probes(COMPONENT),
        )
        super().__init__("etlstack:kubernetes:AirflowTriggerer", name, spec, pod, opts)
        self.register_outputs({})
