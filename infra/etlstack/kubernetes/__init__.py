"""The Kubernetes target: the platform on a cluster, one module per component."""

from etlstack.kubernetes.platform import KubernetesPlatform, KubernetesPlatformArgs

__all__ = ["KubernetesPlatform", "KubernetesPlatformArgs"]
