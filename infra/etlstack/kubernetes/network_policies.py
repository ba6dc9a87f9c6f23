"""NetworkPolicies: deny everything, then allow exactly the connections the platform makes.

Platform namespace:
- PostgreSQL accepts Airflow's pods, its backup pod and the pipelines namespace (the
  warehouse), nothing else; the backup pod reaches PostgreSQL only.
- The api-server accepts the scheduler, triggerer and dag-processor (the execution API),
  and the ingress controller when the UI is published; it reaches the scheduler's and
  triggerer's log servers.
- The scheduler and triggerer reach the Kubernetes API (they launch task pods).
- The registry accepts the ingress controller only (pushes and kubelet pulls go through it).
Pipelines namespace: task pods reach DNS, the warehouse, and the networks in
`kubernetes.pipelineEgressCidrs`; nothing reaches them.
Every pod may resolve names (port 53 anywhere, which also covers node-local DNS caches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import API_SERVER_PORT
from etlstack.aliases import formerly
from etlstack.config import Kubernetes
from etlstack.kubernetes.airflow import AIRFLOW, SCHEDULER_LOG_PORT, TRIGGERER_LOG_PORT
from etlstack.kubernetes.common import (
    COMPONENT_LABEL,
    NAME_LABEL,
    NAMESPACE_NAME_LABEL,
    POSTGRES_PORT,
    REGISTRY_PORT,
    child,
    labels,
    metadata,
)
from etlstack.kubernetes.namespaces import NamespaceRef
from etlstack.kubernetes.postgres import BACKUP

ANYWHERE = "0.0.0.0/0"
KUBERNETES_API_PORTS = (443, 6443)
EXECUTION_API_CLIENTS = ("scheduler", "triggerer", "dag-processor")
TASK_LAUNCHERS = ("scheduler", "triggerer")

Peer = k8s.networking.v1.NetworkPolicyPeerArgs
Port = k8s.networking.v1.NetworkPolicyPortArgs


def _selector(match: dict[str, str]) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(match_labels=match)


def _components(*components: str) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(
        match_labels={NAME_LABEL: AIRFLOW},
        match_expressions=[
            k8s.meta.v1.LabelSelectorRequirementArgs(
                key=COMPONENT_LABEL, operator="In", values=list(components)
            )
        ],
    )


def _airflow(component: str) -> dict[str, str]:
    return {NAME_LABEL: AIRFLOW, COMPONENT_LABEL: component}


def _namespace(name: str) -> k8s.meta.v1.LabelSelectorArgs:
    return _selector({NAMESPACE_NAME_LABEL: name})


def _tcp(*ports: int) -> list[Port]:
    return [Port(protocol="TCP", port=port) for port in ports]


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    kubernetes: Kubernetes
    # The database is outside the cluster (postgres.external): egress goes to it instead.
    external_database: bool
    platform_namespace: NamespaceRef
    pipelines_namespace: NamespaceRef
    registry_deployed: bool


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:NetworkPolicies", name, None, opts)
        # Each policy's logical name derives from this one (see _policy).
        self._component_name = name
        kubernetes = args.kubernetes
        platform, pipelines = args.platform_namespace, args.pipelines_namespace
        external_database = args.external_database
        controller = Peer(namespace_selector=_namespace(kubernetes.ingress.controller_namespace))

        for namespace in (platform, pipelines):
            self._policy(
                "default-deny",
                namespace,
                resource_name=f"{namespace.name}-default-deny",
                pod_selector={},
                policy_types=["Ingress", "Egress"],
            )
            self._policy(
                "allow-dns",
                namespace,
                resource_name=f"{namespace.name}-allow-dns",
                pod_selector={},
                policy_types=["Egress"],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        ports=[Port(protocol="UDP", port=53), Port(protocol="TCP", port=53)]
                    )
                ],
            )

        postgres_pods = _selector({NAME_LABEL: "postgres"})
        # Where the databases are, seen from a pod's egress rule.
        database_peer = (
            Peer(ip_block=k8s.networking.v1.IPBlockArgs(cidr=ANYWHERE))
            if external_database
            else Peer(namespace_selector=_namespace(platform.name), pod_selector=postgres_pods)
        )
        if not external_database:
            backup_pods = _selector({NAME_LABEL: BACKUP})
            self._policy(
                "postgres",
                platform,
                pod_selector=postgres_pods,
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            Peer(pod_selector=_selector({NAME_LABEL: AIRFLOW})),
                            Peer(pod_selector=backup_pods),
                            Peer(namespace_selector=_namespace(pipelines.name)),
                        ],
                        ports=_tcp(POSTGRES_PORT),
                    )
                ],
            )
            self._policy(
                "postgres-backup",
                platform,
                pod_selector=backup_pods,
                policy_types=["Egress"],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[Peer(pod_selector=postgres_pods)], ports=_tcp(POSTGRES_PORT)
                    )
                ],
            )
        self._policy(
            "airflow-database",
            platform,
            pod_selector=_selector({NAME_LABEL: AIRFLOW}),
            policy_types=["Egress"],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[database_peer], ports=_tcp(POSTGRES_PORT)
                )
            ],
        )

        api_clients = [
            Peer(pod_selector=_selector(_airflow(component))) for component in EXECUTION_API_CLIENTS
        ]
        self._policy(
            "airflow-api-server",
            platform,
            pod_selector=_airflow("api-server"),
            policy_types=["Ingress", "Egress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[*api_clients, *([controller] if kubernetes.ingress.enabled else [])],
                    ports=_tcp(API_SERVER_PORT),
                )
            ],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[Peer(pod_selector=_selector(_airflow("scheduler")))],
                    ports=_tcp(SCHEDULER_LOG_PORT),
                ),
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[Peer(pod_selector=_selector(_airflow("triggerer")))],
                    ports=_tcp(TRIGGERER_LOG_PORT),
                ),
            ],
        )
        self._policy(
            "airflow-execution-api-clients",
            platform,
            pod_selector=_components(*EXECUTION_API_CLIENTS),
            policy_types=["Egress"],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[Peer(pod_selector=_selector(_airflow("api-server")))],
                    ports=_tcp(API_SERVER_PORT),
                )
            ],
        )
        self._policy(
            "airflow-task-launchers",
            platform,
            pod_selector=_components(*TASK_LAUNCHERS),
            policy_types=["Egress"],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[
                        Peer(
                            ip_block=k8s.networking.v1.IPBlockArgs(cidr=kubernetes.api_server_cidr)
                        )
                    ],
                    ports=_tcp(*KUBERNETES_API_PORTS),
                )
            ],
        )
        for component, port in (
            ("scheduler", SCHEDULER_LOG_PORT),
            ("triggerer", TRIGGERER_LOG_PORT),
        ):
            self._policy(
                f"airflow-{component}",
                platform,
                pod_selector=_airflow(component),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[Peer(pod_selector=_selector(_airflow("api-server")))],
                        ports=_tcp(port),
                    )
                ],
            )
        if args.registry_deployed:
            self._policy(
                "registry",
                platform,
                pod_selector={NAME_LABEL: "registry"},
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[controller], ports=_tcp(REGISTRY_PORT)
                    )
                ],
            )

        self._policy(
            "pipeline-tasks",
            pipelines,
            pod_selector={},
            policy_types=["Egress"],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[database_peer], ports=_tcp(POSTGRES_PORT)
                ),
                *(
                    [
                        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                            to=[
                                Peer(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
                                for cidr in kubernetes.pipeline_egress_cidrs
                            ]
                        )
                    ]
                    if kubernetes.pipeline_egress_cidrs
                    else []
                ),
            ],
        )
        self.register_outputs({})

    def _policy(
        self,
        name: str,
        namespace: NamespaceRef,
        *,
        resource_name: str | None = None,
        pod_selector: dict[str, str] | k8s.meta.v1.LabelSelectorArgs,
        policy_types: list[str],
        **rules: Any,
    ) -> k8s.networking.v1.NetworkPolicy:
        selector = (
            pod_selector
            if isinstance(pod_selector, k8s.meta.v1.LabelSelectorArgs)
            else _selector(pod_selector)
        )
        # Unique per stack: the same policy name in two namespaces needs its own.
        unique_name = resource_name or name
        return k8s.networking.v1.NetworkPolicy(
            f"{self._component_name}-{unique_name}",
            metadata=metadata(name, namespace.output, labels("etlstack", "network-policy")),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=selector, policy_types=policy_types, **rules
            ),
            opts=child(self, aliases=formerly(f"{unique_name}-network-policy")),
        )
