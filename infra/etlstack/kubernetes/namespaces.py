"""The two namespaces: the platform's, and the one where pipeline task pods run."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.kubernetes.common import PART_OF, PART_OF_LABEL, child

# The API server refuses any pod in these namespaces that breaks the "restricted"
# Pod Security Standard, whatever created it (a task pod, a kubectl run).
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}


@dataclass(frozen=True)
class NamespacesArgs:
    platform: str
    pipelines: str


class Namespaces(pulumi.ComponentResource):
    platform: str
    pipelines: str
    resources: list[k8s.core.v1.Namespace]

    def __init__(
        self, name: str, args: NamespacesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Namespaces", name, None, opts)
        self.platform = args.platform
        self.pipelines = args.pipelines
        self.resources = [
            k8s.core.v1.Namespace(
                f"{namespace}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=namespace,
                    labels={PART_OF_LABEL: PART_OF, **POD_SECURITY_LABELS},
                ),
                opts=child(self),
            )
            for namespace in (args.platform, args.pipelines)
        ]
        self.register_outputs({"platform": self.platform, "pipelines": self.pipelines})
