"""Pipeline tasks as pods on the Kubernetes target, in the pipelines namespace."""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from pipeline_factory.refusal import ExpectRefusal


class RefusedPodOperator(ExpectRefusal, KubernetesPodOperator):
    """A pod the Kubernetes API server must refuse to create (RBAC)."""

    def __init__(self, *, refused_because: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refused_because = refused_because
