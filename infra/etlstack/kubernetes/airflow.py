"""What the Airflow components share: their configuration and the shape of their pods.

Plain settings live in one ConfigMap and secret ones in the `airflow-env` Secret;
every Airflow container takes both with `envFrom`. A ConfigMap keeps its fixed name
when its data changes, so the pod templates carry a hash of that data: new settings
(a new pipeline image in ETLSTACK_RUNTIME, say) roll the Deployments.

Each component (the api-server, and the scheduler, dag-processor and triggerer of
workloads.py) is an `AirflowWorkload`: its own ServiceAccount and a Deployment whose pods wait for the
database migrations (`airflow db check-migrations`, as the official chart does),
run as uid 50000 on a read-only root filesystem, and write only to emptyDirs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from etlstack.aliases import formerly
from etlstack.config import Component
from etlstack.kubernetes.common import (
    REGISTRY_PULL_SECRET,
    MountedVolume,
    child,
    container_security,
    labels,
    metadata,
    pod_security,
    resources,
    scratch_volumes,
)
from etlstack.kubernetes.secrets import AIRFLOW_ENV_SECRET

AIRFLOW = "airflow"
CONFIG_MAP = "airflow-config"
# The uid and gid of the Airflow image (airflow_image/Dockerfile).
AIRFLOW_UID = 50000
AIRFLOW_GID = 0
AIRFLOW_HOME = "/opt/airflow"
# Airflow writes its config file on first start if there is none, and the root
# filesystem is read-only: the file goes to an emptyDir.
AIRFLOW_CONFIG = f"{AIRFLOW_HOME}/config/airflow.cfg"
SCRATCH = {"tmp": "/tmp", "logs": f"{AIRFLOW_HOME}/logs", "config": f"{AIRFLOW_HOME}/config"}
CONFIG_HASH_ANNOTATION = "etlstack.io/config-hash"
# With the LocalExecutor the scheduler serves its task logs, the triggerer its
# trigger logs; the api-server fetches them from there.
SCHEDULER_LOG_PORT = 8793
TRIGGERER_LOG_PORT = 8794
MIGRATION_WAIT_SECONDS = 600


def service_account_name(component: str) -> str:
    return f"airflow-{component}"


def kubernetes_plain_settings() -> dict[str, str]:
    """Settings only the Kubernetes target needs, on top of the shared environment."""
    return {
        "AIRFLOW_CONFIG": AIRFLOW_CONFIG,
        # Task logs are fetched from the pod that ran the task; a pod's name does not
        # resolve in cluster DNS, its IP address works.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.get_host_ip_address",
    }


@dataclass(frozen=True)
class AirflowConfigArgs:
    namespace: pulumi.Input[str]
    plain: dict[str, pulumi.Input[str]]


class AirflowConfig(pulumi.ComponentResource):
    """The ConfigMap with every plain setting, and the hash that rolls the pods."""

    config_map: k8s.core.v1.ConfigMap
    config_hash: pulumi.Output[str]

    def __init__(
        self, name: str, args: AirflowConfigArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:AirflowConfig", name, None, opts)
        self.config_map = k8s.core.v1.ConfigMap(
            name,
            metadata=metadata(CONFIG_MAP, args.namespace, labels(AIRFLOW)),
            data=args.plain,
            opts=child(self, aliases=formerly("airflow-config")),
        )
        self.config_hash = pulumi.Output.from_input(args.plain).apply(
            lambda data: hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
        )
        self.register_outputs({"configHash": self.config_hash})


@dataclass(frozen=True)
class AirflowPod:
    """What every Airflow pod is made of, whatever its component."""

    namespace: pulumi.Input[str]
    image: pulumi.Output[str]
    config_hash: pulumi.Output[str]
    depends_on: list[pulumi.Resource]

    def env_from(self) -> list[k8s.core.v1.EnvFromSourceArgs]:
        return [
            k8s.core.v1.EnvFromSourceArgs(
                config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=CONFIG_MAP)
            ),
            k8s.core.v1.EnvFromSourceArgs(
                secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=AIRFLOW_ENV_SECRET)
            ),
        ]

    def container(
        self,
        name: str,
        command: list[str],
        component: Component,
        mounted: list[MountedVolume] | None = None,
        **extra: object,
    ) -> k8s.core.v1.ContainerArgs:
        scratch = _scratch(mounted)
        _, mounts = scratch_volumes(scratch)
        return k8s.core.v1.ContainerArgs(
            name=name,
            image=self.image,
            command=command,
            env_from=self.env_from(),
            resources=resources(component.resources.cpu, component.resources.memory),
            security_context=container_security(),
            volume_mounts=[*mounts, *(m.mount() for m in mounted or [])],
            **extra,  # type: ignore[arg-type]
        )

    def wait_for_migrations(
        self, component: Component, mounted: list[MountedVolume] | None = None
    ) -> k8s.core.v1.ContainerArgs:
        # The main container's volumes: the pod has no emptyDir where a claim is mounted.
        return self.container(
            "wait-for-migrations",
            [
                "airflow",
                "db",
                "check-migrations",
                "--migration-wait-timeout",
                str(MIGRATION_WAIT_SECONDS),
            ],
            component,
            mounted,
        )

    def spec(
        self,
        component: str,
        containers: list[k8s.core.v1.ContainerArgs],
        *,
        api_token: bool,
        init_containers: list[k8s.core.v1.ContainerArgs] | None = None,
        restart_policy: str | None = None,
        termination_grace_period_seconds: int | None = None,
        mounted: list[MountedVolume] | None = None,
        affinity: k8s.core.v1.AffinityArgs | None = None,
    ) -> k8s.core.v1.PodSpecArgs:
        scratch_vols, _ = scratch_volumes(_scratch(mounted))
        volumes = [*scratch_vols, *(m.volume for m in mounted or [])]
        return k8s.core.v1.PodSpecArgs(
            affinity=affinity,
            service_account_name=service_account_name(component),
            # Only the pods that launch task pods hold an API token.
            automount_service_account_token=api_token,
            image_pull_secrets=[k8s.core.v1.LocalObjectReferenceArgs(name=REGISTRY_PULL_SECRET)],
            security_context=pod_security(AIRFLOW_UID, AIRFLOW_GID),
            init_containers=init_containers,
            containers=containers,
            volumes=volumes,
            restart_policy=restart_policy,
            termination_grace_period_seconds=termination_grace_period_seconds,
        )


def _scratch(mounted: list[MountedVolume] | None) -> dict[str, str]:
    """The emptyDirs, but for the paths a volume is mounted on (task logs on a claim)."""
    taken = {m.path for m in mounted or []}
    return {name: path for name, path in SCRATCH.items() if path not in taken}


def exec_health_probes(
    component: str,
) -> dict[str, k8s.core.v1.ProbeArgs]:
    """Probes running the image's `airflow-healthcheck <component>` (a CLI call: slow)."""
    check = k8s.core.v1.ExecActionArgs(command=["airflow-healthcheck", component])
    return {
        "startup_probe": k8s.core.v1.ProbeArgs(
            exec_=check, period_seconds=15, timeout_seconds=30, failure_threshold=20
        ),
        "liveness_probe": k8s.core.v1.ProbeArgs(
            exec_=check, period_seconds=60, timeout_seconds=30, failure_threshold=5
        ),
    }


@dataclass(frozen=True)
class WorkloadSpec:
    component: str
    command: list[str]
    settings: Component
    # Whether the pod mounts its service account's API token (to launch task pods).
    api_token: bool = False
    ports: list[k8s.core.v1.ContainerPortArgs] = field(default_factory=list)
    probes: dict[str, k8s.core.v1.ProbeArgs] = field(default_factory=dict)
    termination_grace_period_seconds: int | None = None
    # Claims it mounts; a pod with one is replaced by stopping the old one first.
    mounted: list[MountedVolume] = field(default_factory=list)
    affinity: k8s.core.v1.AffinityArgs | None = None
    # Variables of its own, on top of the shared ConfigMap and Secret.
    env: list[k8s.core.v1.EnvVarArgs] = field(default_factory=list)


class AirflowWorkload(pulumi.ComponentResource):
    """One Airflow component: its ServiceAccount and its Deployment."""

    component: str
    pod_labels: dict[str, str]
    deployment: k8s.apps.v1.Deployment

    def __init__(
        self,
        name: str,
        spec: WorkloadSpec,
        pod: AirflowPod,
        opts: pulumi.ResourceOptions | None = None,
        *,
        type_: str = "etlstack:kubernetes:AirflowWorkload",
        more_children: bool = False,
    ) -> None:
        """`more_children`: a subclass adds children and registers the outputs itself."""
        super().__init__(type_, name, None, opts)
        self.component = spec.component
        account = service_account_name(spec.component)
        object_labels = labels(AIRFLOW, spec.component)
        self.pod_labels = object_labels
        # Deployed stacks know both the account and the Deployment by the account's name.
        former_name = f"airflow-{spec.component}"
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(account, pod.namespace, object_labels),
            # Off by default; the pod spec turns it on where the token is needed.
            automount_service_account_token=False,
            opts=child(self, depends_on=pod.depends_on, aliases=formerly(former_name)),
        )
        container = pod.container(
            spec.component,
            spec.command,
            spec.settings,
            spec.mounted,
            ports=spec.ports or None,
            env=spec.env or None,
            **spec.probes,
        )
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata=metadata(account, pod.namespace, object_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=spec.settings.replicas,
                # A ReadWriteOnce claim is mounted by one pod at a time.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate")
                if spec.mounted
                else None,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=object_labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=object_labels,
                        annotations={CONFIG_HASH_ANNOTATION: pod.config_hash},
                    ),
                    spec=pod.spec(
                        spec.component,
                        [container],
                        api_token=spec.api_token,
                        init_containers=[pod.wait_for_migrations(spec.settings, spec.mounted)],
                        termination_grace_period_seconds=spec.termination_grace_period_seconds,
                        mounted=spec.mounted,
                        affinity=spec.affinity,
                    ),
                ),
            ),
            opts=child(
                self, depends_on=[*pod.depends_on, service_account], aliases=formerly(former_name)
            ),
        )
        if not more_children:
            self.register_outputs({"deployment": self.deployment.metadata.name})
