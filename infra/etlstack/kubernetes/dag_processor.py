"""The dag-processor: parses the DAGs baked into the image; needs no API token."""

from __future__ import annotations

import pulumi

from etlstack.config import StackConfig
from etlstack.kubernetes.airflow import (
    AirflowPod,
    AirflowWorkload,
    WorkloadSpec,
    exec_health_probes,
)

COMPONENT = "dag-processor"


class DagProcessor(AirflowWorkload):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        pod: AirflowPod,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        spec = WorkloadSpec(
            component=COMPONENT,
            command=["airflow", "dag-processor"],
            settings=config.settings.airflow.dag_processor,
            probes=exec_health_probes(COMPONENT),
        )
        super().__init__("etlstack:kubernetes:AirflowDagProcessor", name, spec, pod, opts)
        self.register_outputs({})
