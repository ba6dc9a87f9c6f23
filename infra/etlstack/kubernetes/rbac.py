"""Least-privilege RBAC for launching pipeline task pods with KubernetesPodOperator.

One Role in the pipelines namespace, bound to the scheduler's service account (the
LocalExecutor runs the operator inside the scheduler pod) and the triggerer's (a
deferrable operator is watched from there). Nothing cluster-wide, and no access to
Secrets: task pods get the warehouse URL through a secretKeyRef, which the kubelet
resolves, not the launcher.

The verbs, and which operator call needs each (cncf-kubernetes provider 10.x):
- pods create: starting the task pod.
- pods get, list: polling its phase, and `reattach_on_restart` finding a running
  pod by its labels after a scheduler restart. pods watch: the official chart's
  pod-launcher role grants it; read-only, in a namespace that holds only task pods,
  it keeps a provider release that watches pods instead of polling working.
- pods patch: labelling a finished pod `already_checked`.
- pods delete: `on_finish_action`, and killing the task.
- pods/log get: streaming the task's output into the Airflow task log.
- events list, watch: the pod's events in the task log when it fails to start; the
  deferrable path watches them (and polls with a warning if it may not).
Not granted: pods/exec, which only the XCom sidecar (`do_xcom_push=True`) needs.
Pipelines hand results over through the warehouse, never XCom, so the DAG factory
builds operators with `do_xcom_push=False`, and an exec into a task pod, which
could read whatever the task holds, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.aliases import formerly
from etlstack.kubernetes.common import PIPELINE_SERVICE_ACCOUNT, child, labels, metadata

POD_LAUNCHER = "pod-launcher"

POD_LAUNCHER_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pods", ("create", "get", "list", "watch", "patch", "delete")),
    ("pods/log", ("get",)),
    ("events", ("list", "watch")),
)


@dataclass(frozen=True)
class PodLauncherRbacArgs:
    platform_namespace: pulumi.Input[str]
    pipelines_namespace: pulumi.Input[str]
    # Service accounts in the platform namespace that launch task pods.
    launchers: list[str]


class PodLauncherRbac(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: PodLauncherRbacArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:PodLauncherRbac", name, None, opts)
        namespace = args.pipelines_namespace
        rbac_labels = labels("airflow", "pod-launcher")
        # Task pods run as this account, which can do nothing: no role names it and it
        # mounts no API token.
        k8s.core.v1.ServiceAccount(
            f"{name}-pipeline-task",
            metadata=metadata(PIPELINE_SERVICE_ACCOUNT, namespace, labels("pipelines")),
            automount_service_account_token=False,
            opts=child(self, aliases=formerly("pipeline-task")),
        )
        role = k8s.rbac.v1.Role(
            f"{name}-pod-launcher",
            metadata=metadata(POD_LAUNCHER, namespace, rbac_labels),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=[resource], verbs=list(verbs))
                for resource, verbs in POD_LAUNCHER_RULES
            ],
            opts=child(self, aliases=formerly("pod-launcher")),
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-pod-launcher-binding",
            metadata=metadata(POD_LAUNCHER, namespace, rbac_labels),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=POD_LAUNCHER
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount", name=account, namespace=args.platform_namespace
                )
                for account in args.launchers
            ],
            opts=child(self, depends_on=[role], aliases=formerly("pod-launcher-binding")),
        )
        self.register_outputs({})
