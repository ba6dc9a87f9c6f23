"""The two namespaces: the platform's, and the one where pipeline task pods run."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from etlstack.aliases import formerly
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


@dataclass(frozen=True)
class NamespaceRef:
    """A namespace to create objects in.

    `output` is its name as the Namespace resource reports it: an object whose metadata
    names it waits for the namespace, with no `depends_on` to thread by hand. `name` is
    the same name as plain text, for logical names and DNS names.
    """

    name: str
    output: pulumi.Output[str]


class Namespaces(pulumi.ComponentResource):
    platform: NamespaceRef
    pipelines: NamespaceRef

    def __init__(
        self, name: str, args: NamespacesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Namespaces", name, None, opts)
        self.platform, self.pipelines = (
            NamespaceRef(namespace, self._namespace(name, namespace).metadata.name)
            for namespace in (args.platform, args.pipelines)
        )
        self.register_outputs(
            {"platform": self.platform.output, "pipelines": self.pipelines.output}
        )

    def _namespace(self, name: str, namespace: str) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{name}-{namespace}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=namespace,
                labels={PART_OF_LABEL: PART_OF, **POD_SECURITY_LABELS},
            ),
            opts=child(self, aliases=formerly(f"{namespace}-namespace")),
        )
