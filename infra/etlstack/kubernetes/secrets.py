"""Every Secret that crosses components: Airflow's, the image pull secret, the warehouse.

Secret values reach pods only through these objects (env `valueFrom`/`envFrom`);
no ConfigMap and no pod spec holds one. ConfigMaps and Secrets are replaced when
their data changes; the values here are generated once and stay in the stack's
state, so an update leaves them as they are.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.aliases import formerly
from etlstack.kubernetes.common import (
    REGISTRY_PULL_SECRET,
    WAREHOUSE_SECRET,
    WAREHOUSE_SECRET_KEY,
    child,
    labels,
    metadata,
)
from etlstack.kubernetes.namespaces import NamespaceRef

AIRFLOW_ENV_SECRET = "airflow-env"
AIRFLOW_ADMIN_SECRET = "airflow-admin"
AIRFLOW_ADMIN_PASSWORD_KEY = "password"


@dataclass(frozen=True)
class PlatformSecretsArgs:
    platform_namespace: NamespaceRef
    pipelines_namespace: NamespaceRef
    # Environment variables every Airflow component gets from a Secret.
    airflow_env: dict[str, pulumi.Output[str]]
    admin_password: pulumi.Output[str]
    registry_server: pulumi.Input[str]
    registry_username: str
    registry_password: pulumi.Output[str]
    warehouse_url: pulumi.Output[str]


def docker_config_json(server: str, username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps(
        {"auths": {server: {"username": username, "password": password, "auth": token}}}
    )


class PlatformSecrets(pulumi.ComponentResource):
    resources: list[pulumi.Resource]

    def __init__(
        self, name: str, args: PlatformSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Secrets", name, None, opts)
        airflow = labels("airflow")
        self.resources = [
            k8s.core.v1.Secret(
                f"{name}-airflow-env",
                metadata=metadata(AIRFLOW_ENV_SECRET, args.platform_namespace.output, airflow),
                type="Opaque",
                string_data=args.airflow_env,
                opts=child(self, aliases=formerly("airflow-env")),
            ),
            k8s.core.v1.Secret(
                f"{name}-airflow-admin",
                metadata=metadata(AIRFLOW_ADMIN_SECRET, args.platform_namespace.output, airflow),
                type="Opaque",
                string_data={AIRFLOW_ADMIN_PASSWORD_KEY: args.admin_password},
                opts=child(self, aliases=formerly("airflow-admin")),
            ),
            k8s.core.v1.Secret(
                f"{name}-warehouse",
                metadata=metadata(
                    WAREHOUSE_SECRET, args.pipelines_namespace.output, labels("pipelines")
                ),
                type="Opaque",
                string_data={WAREHOUSE_SECRET_KEY: args.warehouse_url},
                opts=child(self, aliases=formerly("warehouse-secret")),
            ),
        ]
        config_json: pulumi.Output[str] = pulumi.Output.all(
            args.registry_server, args.registry_username, args.registry_password
        ).apply(lambda parts: docker_config_json(*parts))
        pull_config: pulumi.Output[str] = pulumi.Output.secret(config_json)
        # Airflow pods and pipeline task pods pull from the same registry.
        for namespace in (args.platform_namespace, args.pipelines_namespace):
            self.resources.append(
                k8s.core.v1.Secret(
                    f"{name}-{namespace.name}-registry-pull",
                    metadata=metadata(REGISTRY_PULL_SECRET, namespace.output, labels("registry")),
                    type="kubernetes.io/dockerconfigjson",
                    string_data={".dockerconfigjson": pull_config},
                    opts=child(self, aliases=formerly(f"{namespace.name}-registry-pull")),
                )
            )
        self.register_outputs({})
