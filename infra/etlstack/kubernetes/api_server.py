"""The api-server: UI, REST API and the execution API the task processes call.

Its Service name is the execution API URL every component gets. It scales out
(`airflow.apiServer.replicas`); with more than one replica a PodDisruptionBudget
keeps one serving while nodes are drained.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import API_SERVER_PORT
from etlstack.aliases import formerly
from etlstack.config import Component, Ingress
from etlstack.kubernetes.airflow import AirflowPod, AirflowWorkload, WorkloadSpec
from etlstack.kubernetes.common import child, labels, metadata, single_host_ingress_spec

COMPONENT = "api-server"
SERVICE = "airflow-api-server"
HEALTH_PATH = "/api/v2/monitor/health"


def _probes() -> dict[str, k8s.core.v1.ProbeArgs]:
    health = k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port=API_SERVER_PORT)
    return {
        # Startup covers the first start's slow imports; the others then run often.
        "startup_probe": k8s.core.v1.ProbeArgs(
            http_get=health, period_seconds=10, timeout_seconds=5, failure_threshold=30
        ),
        "readiness_probe": k8s.core.v1.ProbeArgs(
            http_get=health, period_seconds=10, timeout_seconds=5, failure_threshold=3
        ),
        "liveness_probe": k8s.core.v1.ProbeArgs(
            http_get=health, period_seconds=30, timeout_seconds=10, failure_threshold=5
        ),
    }


class ApiServer(AirflowWorkload):
    def __init__(
        self,
        name: str,
        settings: Component,
        ingress: Ingress,
        pod: AirflowPod,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        spec = WorkloadSpec(
            component=COMPONENT,
            command=["airflow", "api-server", "--port", str(API_SERVER_PORT)],
            settings=settings,
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=API_SERVER_PORT)],
            probes=_probes(),
        )
        super().__init__(
            name,
            spec,
            pod,
            opts,
            type_="etlstack:kubernetes:AirflowApiServer",
            more_children=True,
        )
        object_labels = labels("airflow", COMPONENT)
        # Deployed stacks know the Service, the budget and the Ingress by their object's name.
        former_name = "airflow-api-server"
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(SERVICE, pod.namespace, object_labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=self.pod_labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="http", port=API_SERVER_PORT, target_port="http"
                    )
                ],
            ),
            opts=child(self, depends_on=pod.depends_on, aliases=formerly(former_name)),
        )
        if settings.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-disruption-budget",
                metadata=metadata(SERVICE, pod.namespace, object_labels),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    min_available=1,
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.pod_labels),
                ),
                opts=child(self, depends_on=[self.deployment], aliases=formerly(former_name)),
            )
        if ingress.enabled:
            assert ingress.host is not None, "config requires ingress.host when enabled"
            k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=metadata(SERVICE, pod.namespace, object_labels),
                spec=single_host_ingress_spec(
                    host=ingress.host,
                    service=SERVICE,
                    port=k8s.networking.v1.ServiceBackendPortArgs(name="http"),
                    class_name=ingress.class_name,
                    tls_secret_name=ingress.tls_secret_name,
                ),
                opts=child(self, depends_on=[service], aliases=formerly(former_name)),
            )
        self.register_outputs(
            {"deployment": self.deployment.metadata.name, "service": service.metadata.name}
        )
