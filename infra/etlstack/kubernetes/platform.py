"""The platform on a Kubernetes cluster: every component, wired together.

Everything goes through one explicit provider bound to the stack's kubeconfig
context, and every namespaced object names its namespace, so neither the
kubeconfig's default namespace nor a stray `kubernetes:*` setting can redirect it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.airflow_settings import (
    API_SERVER_PORT,
    AirflowSecrets,
    airflow_environment,
    runtime_settings,
)
from etlstack.aliases import formerly
from etlstack.artifacts import PlatformImages, PlatformImagesArgs, RegistryAccess
from etlstack.catalog import Catalog
from etlstack.config import StackConfig
from etlstack.kubernetes.airflow import (
    AirflowConfig,
    AirflowConfigArgs,
    AirflowPod,
    kubernetes_plain_settings,
    service_account_name,
)
from etlstack.kubernetes.api_server import SERVICE as API_SERVER_SERVICE
from etlstack.kubernetes.api_server import ApiServer
from etlstack.kubernetes.common import (
    PIPELINE_SERVICE_ACCOUNT,
    REGISTRY_PULL_SECRET,
    WAREHOUSE_SECRET,
    child,
    service_dns,
)
from etlstack.kubernetes.migrations import Migrations, MigrationsArgs
from etlstack.kubernetes.namespaces import Namespaces, NamespacesArgs
from etlstack.kubernetes.network_policies import NetworkPolicies, NetworkPoliciesArgs
from etlstack.kubernetes.postgres import Postgres, PostgresArgs
from etlstack.kubernetes.rbac import PodLauncherRbac, PodLauncherRbacArgs
from etlstack.kubernetes.registry import Registry, RegistryArgs
from etlstack.kubernetes.secrets import PlatformSecrets, PlatformSecretsArgs
from etlstack.kubernetes.workloads import POD_LAUNCHERS, background_components, task_logs_claim


@dataclass(frozen=True)
class KubernetesPlatformArgs:
    config: StackConfig
    catalog: Catalog


def public_url(config: StackConfig) -> str:
    ingress = config.kubernetes.ingress
    if ingress.enabled:
        scheme = "https" if ingress.tls_secret_name else "http"
        return f"{scheme}://{ingress.host}"
    # Without an Ingress the UI is reached with `kubectl port-forward`.
    return f"http://localhost:{API_SERVER_PORT}"


def _warn_about_foreign_registries(config: StackConfig, server: pulumi.Output[str]) -> None:
    """Pinned images from another registry need pull credentials this stack does not hold."""
    pinned = config.settings.artifacts or {}
    hosts = {ref.split("/", 1)[0] for name, ref in pinned.items() if name != "dags"}

    def warn(host: str) -> None:
        foreign = sorted(hosts - {host})
        if foreign:
            pulumi.log.warn(
                f"artifacts are pulled from {foreign}, but the image pull secret "
                f"{REGISTRY_PULL_SECRET!r} holds credentials for {host!r} only: copy the "
                f"images to {host} before promoting, or pull from the registry that holds "
                "them (registry.fromStack, or registry.host with registry.external)"
            )

    server.apply(warn)


class KubernetesPlatform(pulumi.ComponentResource):
    airflow_url: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    registry_server: pulumi.Output[str]
    registry_password: pulumi.Output[str]
    images: PlatformImages

    def __init__(
        self, name: str, args: KubernetesPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Platform", name, None, opts)
        config = args.config
        settings = config.settings
        kubernetes = config.kubernetes
        provider = k8s.Provider(
            f"{name}-cluster",
            context=kubernetes.context,
            # Explicit, so that an SDK default change can never switch apply modes.
            enable_server_side_apply=True,
            opts=child(self),
        )
        on_cluster = child(self, providers={"kubernetes": provider})

        def on_cluster_formerly(former_name: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(aliases=formerly(former_name))
            )

        namespaces = Namespaces(
            f"{name}-namespaces",
            NamespacesArgs(platform=kubernetes.namespace, pipelines=kubernetes.pipelines_namespace),
            opts=on_cluster_formerly("namespaces"),
        )
        # Whatever names these outputs waits for its namespace; no depends_on to thread.
        platform_ns, pipelines_ns = namespaces.platform, namespaces.pipelines

        postgres = Postgres(
            f"{name}-postgres",
            PostgresArgs(
                settings=settings.postgres,
                image=settings.images.postgres,
                storage_class=kubernetes.storage_class,
                external_database_url=config.secrets.external_database_url,
                namespace=platform_ns,
            ),
            opts=on_cluster_formerly("postgres"),
        )
        registry = Registry(
            f"{name}-registry",
            RegistryArgs(
                settings=settings.registry,
                image=settings.images.registry,
                storage_class=kubernetes.storage_class,
                ingress_class=kubernetes.ingress.class_name,
                external_password=config.secrets.registry_password,
                namespace=platform_ns.output,
            ),
            opts=on_cluster_formerly("registry"),
        )
        self.images = PlatformImages(
            f"{name}-images",
            PlatformImagesArgs(
                config=config,
                catalog=args.catalog,
                registry=RegistryAccess(
                    server=registry.server, username=registry.username, password=registry.password
                ),
            ),
            opts=child(self, aliases=formerly("images")),
        )

        _warn_about_foreign_registries(config, registry.server)

        secrets = AirflowSecrets(
            f"{name}-airflow-secrets", opts=child(self), former_name="airflow-secrets"
        )
        runtime = runtime_settings(
            config,
            self.images.pipelines,
            {
                "namespace": pipelines_ns.output,
                "serviceAccount": PIPELINE_SERVICE_ACCOUNT,
                "imagePullSecret": REGISTRY_PULL_SECRET,
                "warehouseSecret": WAREHOUSE_SECRET,
            },
        )
        environment = airflow_environment(
            config,
            secrets=secrets,
            metadata_database_url=postgres.airflow_database_url,
            api_server_host=service_dns(API_SERVER_SERVICE, platform_ns.name),
            public_url=public_url(config),
            runtime=runtime,
        )
        platform_secrets = PlatformSecrets(
            f"{name}-secrets",
            PlatformSecretsArgs(
                platform_namespace=platform_ns,
                pipelines_namespace=pipelines_ns,
                airflow_env=environment.secret,
                admin_password=secrets.admin_password,
                registry_server=registry.server,
                registry_username=registry.username,
                registry_password=registry.password,
                warehouse_url=postgres.warehouse_url,
            ),
            opts=on_cluster_formerly("secrets"),
        )
        airflow_config = AirflowConfig(
            f"{name}-airflow-config",
            AirflowConfigArgs(
                namespace=platform_ns.output,
                plain={**environment.plain, **kubernetes_plain_settings()},
            ),
            opts=on_cluster_formerly("airflow-config"),
        )
        PodLauncherRbac(
            f"{name}-rbac",
            PodLauncherRbacArgs(
                platform_namespace=platform_ns.output,
                pipelines_namespace=pipelines_ns.output,
                launchers=[service_account_name(c) for c in POD_LAUNCHERS],
            ),
            opts=on_cluster_formerly("rbac"),
        )
        NetworkPolicies(
            f"{name}-network-policies",
            NetworkPoliciesArgs(
                kubernetes=kubernetes,
                external_database=settings.postgres.external,
                platform_namespace=platform_ns,
                pipelines_namespace=pipelines_ns,
                registry_deployed=not settings.registry.external,
            ),
            opts=on_cluster_formerly("network-policies"),
        )

        pod = AirflowPod(
            namespace=platform_ns.output,
            image=self.images.airflow,
            config_hash=airflow_config.config_hash,
            depends_on=[
                *platform_secrets.resources,
                airflow_config.config_map,
                *postgres.ready,
            ],
        )
        migrations = Migrations(
            f"{name}-migrations",
            MigrationsArgs(
                airflow=settings.airflow, airflow_version=args.catalog.airflow_version, pod=pod
            ),
            opts=on_cluster_formerly("migrations"),
        )
        # The components start once the schema is current: Pulumi waits for the Job.
        migrated = AirflowPod(
            namespace=pod.namespace,
            image=pod.image,
            config_hash=pod.config_hash,
            depends_on=[*pod.depends_on, migrations.job],
        )
        ApiServer(
            f"{name}-api-server",
            settings.airflow.api_server,
            kubernetes.ingress,
            migrated,
            opts=on_cluster_formerly("api-server"),
        )
        logs_claim = task_logs_claim(
            f"{name}-task-logs",
            platform_ns.output,
            settings.housekeeping.task_logs_storage_size,
            kubernetes.storage_class,
            settings.postgres.retain_on_destroy,
            on_cluster,
        )
        background_components(
            name,
            settings.airflow,
            AirflowPod(
                namespace=migrated.namespace,
                image=migrated.image,
                config_hash=migrated.config_hash,
                depends_on=[*migrated.depends_on, logs_claim],
            ),
            on_cluster,
            postgres.backups_claim,
            postgres.backup_pod_labels,
        )

        self.airflow_url = pulumi.Output.from_input(public_url(config))
        self.admin_password = secrets.admin_password
        self.registry_server = registry.server
        self.registry_password = registry.password
        self.register_outputs({"airflowUrl": self.airflow_url, "registry": self.registry_server})
