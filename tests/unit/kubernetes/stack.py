"""A Kubernetes stack as the tests read it: its objects, and where to find each part."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from etlstack import render
from tests.support.stacks import evaluate
from tests.unit.kubernetes_helpers import (
    Endpoint,
    is_kubernetes_object,
    manifests,
    named,
    of_kind,
    pod_labels,
    pod_spec,
)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DIGEST = "@sha256:" + "a" * 64


class Stack:
    def __init__(self, evaluation: render.Evaluation) -> None:
        self.evaluation = evaluation
        self.objects = manifests(evaluation)
        self.kubernetes = evaluation.config.kubernetes
        self.platform = self.kubernetes.namespace
        self.pipelines = self.kubernetes.pipelines_namespace

    def resource(self, kind: str, name: str) -> render.Resource:
        found = [
            r
            for r in self.evaluation.resources
            if is_kubernetes_object(r)
            and r.inputs["kind"] == kind
            and render.reveal(r.inputs["metadata"]).get("name") == name
        ]
        assert len(found) == 1, f"{len(found)} {kind} named {name!r}"
        return found[0]

    def secret_values(self) -> set[str]:
        """Every string the program holds only as a secret (generated or configured).

        Parts of a secret that also appear in the open (a registry host inside a
        docker config, a user name) are not secret values.
        """
        held: set[str] = set()
        shown: set[str] = set()
        for value in [*(r.inputs for r in self.evaluation.resources), self.evaluation.outputs]:
            held |= _secret_strings(value)
            shown |= _plain_strings(value)
        return {v for v in held - shown if len(v) >= 8}


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def _plain_strings(value: Any) -> set[str]:
    if render.is_secret(value):
        return set()
    if isinstance(value, dict):
        return set().union(*(_plain_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_plain_strings(v) for v in value)) if value else set()
    return _strings(value)


def _secret_strings(value: Any) -> set[str]:
    if render.is_secret(value):
        revealed = render.reveal(value)
        found = _strings(revealed)
        for text in list(found):
            # Connection strings and docker configs: their parts are secrets too.
            parts = urlsplit(text)
            if parts.password:
                found.add(parts.password)
            if text.startswith("{"):
                found |= _strings(json.loads(text))
        return found
    if isinstance(value, dict):
        return set().union(*(_secret_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_secret_strings(v) for v in value)) if value else set()
    return set()


def evaluate_stack(
    stack: str, *, real_secrets: bool = False, fresh: bool = False, **overrides: Any
) -> Stack:
    """The stack's evaluation (shared unless `fresh`: see tests.support.stacks.evaluate)."""
    return Stack(evaluate(stack, real_secrets=real_secrets, fresh=fresh, **overrides))


def container_env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def airflow_deployment(stack: Stack, component: str) -> Mapping[str, Any]:
    return named(stack.objects, "Deployment", f"airflow-{component}")


def main_container(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod_spec(obj)
    assert spec is not None
    return spec["containers"][0]


def airflow_config(stack: Stack) -> Mapping[str, str]:
    return named(stack.objects, "ConfigMap", "airflow-config")["data"]


def migration_job(stack: Stack) -> Mapping[str, Any]:
    (job,) = of_kind(stack.objects, "Job")
    return job


def runs_its_registry(stack: Stack) -> bool:
    registry = stack.evaluation.config.settings.registry
    return registry.from_stack is None and not registry.external


def endpoints(stack: Stack) -> dict[str, Endpoint]:
    """The stack's pods, a task pod, an ingress controller and a pod elsewhere, by name."""
    found = {
        o["metadata"]["name"]: Endpoint(stack.platform, pod_labels(o))
        for o in stack.objects
        if pod_spec(o) is not None and o["kind"] != "Job"
    }
    found["migrations"] = Endpoint(stack.platform, pod_labels(migration_job(stack)))
    # Task pods carry whatever labels the operator gives them.
    found["task"] = Endpoint(stack.pipelines, {"kubernetes_pod_operator": "True"})
    found["ingress-controller"] = Endpoint(
        stack.kubernetes.ingress.controller_namespace, {"app": "ingress-nginx"}
    )
    found["elsewhere"] = Endpoint("default", {"app": "curious"})
    return found
