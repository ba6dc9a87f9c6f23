"""What every Kubernetes component of the platform shares: labels, pod security, names.

The pod and container security settings are the Pod Security Standard "restricted"
profile, which both namespaces enforce; building them in one place keeps every
workload identical in that respect, and the policy pack checks the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

PART_OF = "etlstack"
NAME_LABEL = "app.kubernetes.io/name"
# Pods that must share a node (to mount one ReadWriteOnce claim) share this.
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# Every namespace carries this label (set by the API server since 1.21); NetworkPolicy
# peers select namespaces by it.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# Names in the runtime contract with the DAG factory (dags/): fixed, never auto-named.
REGISTRY_PULL_SECRET = "registry-pull"
WAREHOUSE_SECRET = "warehouse"
WAREHOUSE_SECRET_KEY = "url"
PIPELINE_SERVICE_ACCOUNT = "pipeline-task"

POSTGRES_PORT = 5432
REGISTRY_PORT = 5000


def labels(name: str, component: str | None = None) -> dict[str, str]:
    """Labels of a workload, its pods and the objects that belong to it."""
    result = {NAME_LABEL: name, PART_OF_LABEL: PART_OF}
    if component:
        result[COMPONENT_LABEL] = component
    return result


def metadata(
    name: pulumi.Input[str],
    namespace: pulumi.Input[str] | None,
    object_labels: dict[str, str],
    annotations: dict[str, pulumi.Input[str]] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    # The namespace is always explicit: never the provider's or the kubeconfig's default.
    return k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=namespace, labels=object_labels, annotations=annotations
    )


def pod_security(uid: int, gid: int) -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=gid,
        # Volumes (PVCs, emptyDirs) become writable by the process's group.
        fs_group=gid,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def container_security(read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=read_only_root,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def resources(cpu: str, memory: str) -> k8s.core.v1.ResourceRequirementsArgs:
    # Requests equal limits: the pod is Guaranteed, so a busy node evicts it last.
    amounts = {"cpu": cpu, "memory": memory}
    return k8s.core.v1.ResourceRequirementsArgs(requests=amounts, limits=amounts)


def scratch_volumes(
    mounts: dict[str, str],
) -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
    """emptyDir volumes for the paths a process writes to, on a read-only root."""
    volumes = [
        k8s.core.v1.VolumeArgs(name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs())
        for name in mounts
    ]
    volume_mounts = [
        k8s.core.v1.VolumeMountArgs(name=name, mount_path=path) for name, path in mounts.items()
    ]
    return volumes, volume_mounts


@dataclass(frozen=True)
class MountedVolume:
    """A volume and where the container mounts it."""

    volume: k8s.core.v1.VolumeArgs
    path: str
    read_only: bool = False
    # One file of the volume (a script of a ConfigMap) rather than all of it.
    sub_path: str | None = None

    def mount(self) -> k8s.core.v1.VolumeMountArgs:
        return k8s.core.v1.VolumeMountArgs(
            name=self.volume.name,
            mount_path=self.path,
            read_only=self.read_only or None,
            sub_path=self.sub_path,
        )


def claim_volume(claim: str, name: str = "data") -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(
        name=name,
        persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim),
    )


def volume_claim(
    resource_name: str,
    claim: str,
    namespace: pulumi.Input[str],
    object_labels: dict[str, str],
    size: str,
    storage_class: str | None,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    """The ReadWriteOnce claim `claim` of `size`, a resource of its own (so that `opts` can
    protect or retain it, which a StatefulSet's volumeClaimTemplate cannot)."""
    return k8s.core.v1.PersistentVolumeClaim(
        resource_name,
        metadata=metadata(claim, namespace, object_labels),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": size}),
        ),
        opts=opts,
    )


def service_pod_spec(
    *,
    name: str,
    image: pulumi.Input[str],
    uid: int,
    env: list[k8s.core.v1.EnvVarArgs],
    requirements: k8s.core.v1.ResourceRequirementsArgs,
    mounted: list[MountedVolume],
    scratch: dict[str, str],
    gid: int | None = None,
    command: list[str] | None = None,
    port: k8s.core.v1.ContainerPortArgs | None = None,
    readiness_probe: k8s.core.v1.ProbeArgs | None = None,
    liveness_probe: k8s.core.v1.ProbeArgs | None = None,
    termination_grace_period_seconds: int | None = None,
) -> k8s.core.v1.PodSpecArgs:
    """The pod of a service the platform runs itself (PostgreSQL, its backups, the
    registry): one container, no API token, the restricted security contexts of every pod
    here, its volumes mounted, and emptyDirs where it writes on its read-only root."""
    scratch_vols, scratch_mounts = scratch_volumes(scratch)
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=pod_security(uid, uid if gid is None else gid),
        termination_grace_period_seconds=termination_grace_period_seconds,
        containers=[
            k8s.core.v1.ContainerArgs(
                name=name,
                image=image,
                command=command,
                ports=[port] if port else None,
                env=env,
                resources=requirements,
                security_context=container_security(),
                volume_mounts=[*(m.mount() for m in mounted), *scratch_mounts],
                readiness_probe=readiness_probe,
                liveness_probe=liveness_probe,
            )
        ],
        volumes=[*(m.volume for m in mounted), *scratch_vols],
    )


def single_host_ingress_spec(
    *,
    host: str,
    service: str,
    port: k8s.networking.v1.ServiceBackendPortArgs,
    class_name: str | None,
    tls_secret_name: str | None,
    always_tls: bool = False,
) -> k8s.networking.v1.IngressSpecArgs:
    """Every path of `host` to one Service port; TLS with the named certificate, or
    with the controller's default one when `always_tls` and none is named."""
    tls = (
        [k8s.networking.v1.IngressTLSArgs(hosts=[host], secret_name=tls_secret_name)]
        if tls_secret_name or always_tls
        else None
    )
    return k8s.networking.v1.IngressSpecArgs(
        ingress_class_name=class_name,
        tls=tls,
        rules=[
            k8s.networking.v1.IngressRuleArgs(
                host=host,
                http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                    paths=[
                        k8s.networking.v1.HTTPIngressPathArgs(
                            path="/",
                            path_type="Prefix",
                            backend=k8s.networking.v1.IngressBackendArgs(
                                service=k8s.networking.v1.IngressServiceBackendArgs(
                                    name=service, port=port
                                )
                            ),
                        )
                    ]
                ),
            )
        ],
    )


def service_dns(name: str, namespace: str) -> str:
    # `<service>.<namespace>.svc` resolves in every namespace through the cluster's
    # search path, without assuming the cluster domain is cluster.local.
    return f"{name}.{namespace}.svc"


def child(parent: pulumi.Resource, **options: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **options)
