"""Build DAGs from pipeline tasks, launched the way this platform launches them.

    from pipeline_factory import pipeline_dag

    dag = pipeline_dag("weather", ["extract", "transform", "load", "check"], schedule="@daily")

Each task runs `run_<task>.sh` in the pipeline's image, the image pinned for this
stack (ETLSTACK_RUNTIME's pipelineImages): a DockerOperator on the docker target, a
KubernetesPodOperator on the kubernetes target. A DAG naming a pipeline the stack
does not deploy fails to import, so deployed DAGs and images agree by construction.
Every task gets the stack's CPU and memory limits, runs as a non-root user, in the
stack's pool, with only WAREHOUSE_URL from the platform.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, BaseOperator, chain

from pipeline_factory.runtime import (
    PipelineNotDeployed,
    Runtime,
    RuntimeSettingsError,
    cpu_cores,
    load,
    memory_bytes,
    nano_cpus,
)

__all__ = [
    "PIPELINE_LABEL",
    "TASK_GID",
    "TASK_LABEL",
    "TASK_UID",
    "PipelineNotDeployed",
    "Runtime",
    "RuntimeSettingsError",
    "pipeline_dag",
    "pipeline_task",
    "refused_tasks",
]

# Pipeline images run as this user (their Dockerfiles create it); the platform
# enforces it so a task is non-root even if an image forgets to switch user.
TASK_UID = 10001
TASK_GID = 10001
# Namespaces every cluster has; the smoke test's refused pod goes to the first one
# that is not the pipelines namespace.
FOREIGN_NAMESPACES = ("default", "kube-system")
# What a launch that must be refused runs if it is not: a command that succeeds, so
# the only failure reported is the one that matters (the launch went through).
LAUNCH_ONLY = ["true"]
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
# The labels naming a task container's (docker) or pod's (kubernetes) pipeline and task,
# by target; platform_housekeeping finds failed task containers by them.
PIPELINE_LABEL = {"docker": "org.etlstack.pipeline", "kubernetes": "etlstack.org/pipeline"}
TASK_LABEL = {"docker": "org.etlstack.task", "kubernetes": "etlstack.org/task"}
# The task arguments a DAG may set. Everything else (image, pool, limits, user,
# mounts, privileges, where and how the task launches) is the platform's decision.
TASK_ARGUMENTS = frozenset(
    {
        "depends_on_past",
        "doc_md",
        "email",
        "email_on_failure",
        "email_on_retry",
        "execution_timeout",
        "max_active_tis_per_dag",
        "max_retry_delay",
        "on_failure_callback",
        "on_retry_callback",
        "on_success_callback",
        "owner",
        "priority_weight",
        "retries",
        "retry_delay",
        "retry_exponential_backoff",
        "trigger_rule",
        "wait_for_downstream",
        "weight_rule",
    }
)


def _docker_task(
    runtime: Runtime, pipeline: str, task_id: str, command: list[str]
) -> dict[str, Any]:
    """What the platform decides for a task container; a DAG cannot override it."""
    assert runtime.docker is not None
    return {
        "task_id": task_id,
        "image": runtime.image(pipeline),
        "pool": runtime.pool,
        "command": command,
        "docker_url": runtime.docker.url,
        # The one version the Docker API proxy takes a create at.
        "api_version": runtime.docker.api_version,
        "docker_settings": runtime.docker,
        "network_mode": runtime.docker.network,
        "user": f"{TASK_UID}:{TASK_GID}",
        "cpus": cpu_cores(runtime.cpu),
        "nano_cpus": nano_cpus(runtime.cpu),
        "mem_limit": memory_bytes(runtime.memory),
        # The scheduler runs in a container: a host temp dir to mount does not exist.
        "mount_tmp_dir": False,
        "auto_remove": "success",
        "labels": {PIPELINE_LABEL["docker"]: pipeline, TASK_LABEL["docker"]: task_id},
        # Tasks hand data over through the warehouse; their logs are not results.
        "do_xcom_push": False,
    }


def _pod_name(pipeline: str, task: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"{pipeline}-{task}".lower()).strip("-")


def _kubernetes_task(
    runtime: Runtime, pipeline: str, task_id: str, command: list[str], namespace: str | None = None
) -> dict[str, Any]:
    """What the platform decides for a task pod; a DAG cannot override it."""
    from kubernetes.client import models as k8s

    assert runtime.kubernetes is not None
    settings = runtime.kubernetes
    limits = {"cpu": runtime.cpu, "memory": runtime.memory}
    return {
        "task_id": task_id,
        "image": runtime.image(pipeline),
        "pool": runtime.pool,
        "name": _pod_name(pipeline, task_id),
        "namespace": namespace or settings.namespace,
        "cmds": command,
        "labels": {PIPELINE_LABEL["kubernetes"]: pipeline, TASK_LABEL["kubernetes"]: task_id},
        "service_account_name": settings.service_account,
        "automount_service_account_token": False,
        "image_pull_secrets": [k8s.V1LocalObjectReference(name=settings.image_pull_secret)],
        "env_vars": [
            k8s.V1EnvVar(
                name="WAREHOUSE_URL",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(
                        name=settings.warehouse_secret, key="url"
                    )
                ),
            )
        ],
        # Requests equal to limits: the pod is Guaranteed and is never squeezed by
        # a noisy neighbour, nor can it be one.
        "container_resources": k8s.V1ResourceRequirements(limits=limits, requests=limits),
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=TASK_UID,
            run_as_group=TASK_GID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            privileged=False,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        # The scheduler runs in the cluster and launches pods with its own account.
        "in_cluster": True,
        "kubernetes_conn_id": None,
        "image_pull_policy": "IfNotPresent",
        "get_logs": True,
        # A failed pod stays for inspection; a succeeded one is removed.
        "on_finish_action": "delete_succeeded_pod",
        "do_xcom_push": False,
    }


def pipeline_task(
    pipeline: str,
    task: str,
    *,
    task_id: str | None = None,
    runtime: Runtime | None = None,
    **operator_kwargs: Any,
) -> BaseOperator:
    """The operator that runs `run_<task>.sh` of `pipeline` on this platform.

    `operator_kwargs` are ordinary task arguments (TASK_ARGUMENTS: retries,
    execution_timeout, trigger_rule, ...); what the platform decides (image, pool,
    limits, user, launch settings) cannot be set from a DAG.
    """
    refused = sorted(set(operator_kwargs) - TASK_ARGUMENTS)
    if refused:
        raise ValueError(
            f"{pipeline}.{task}: {', '.join(refused)} cannot be set in a DAG; the platform "
            f"decides how tasks launch. A DAG may set: {', '.join(sorted(TASK_ARGUMENTS))}"
        )
    runtime = runtime or load()
    task_id = task_id or task
    if runtime.target == "docker":
        from pipeline_factory.docker_operators import PipelineDockerOperator

        assert runtime.docker is not None
        fields = _docker_task(runtime, pipeline, task_id, [f"run_{task}.sh"])
        fields["warehouse_conn_id"] = runtime.docker.warehouse_conn_id
        operator: type[BaseOperator] = PipelineDockerOperator
    else:
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        fields = _kubernetes_task(runtime, pipeline, task_id, [f"run_{task}.sh"])
        operator = KubernetesPodOperator
    return operator(**fields, **operator_kwargs)


def refused_tasks(pipeline: str, *, runtime: Runtime | None = None) -> list[BaseOperator]:
    """Launches this platform must refuse; each task succeeds only if it is refused.

    Docker: a privileged container and one bind-mounting the host's root, which the
    Docker API proxy answers with 403. Kubernetes: a pod in a namespace outside the
    pipelines namespace, which RBAC answers with 403.
    """
    runtime = runtime or load()
    if runtime.target == "docker":
        from docker.types import Mount

        from pipeline_factory.docker_operators import RefusedDockerOperator

        return [
            RefusedDockerOperator(
                **_docker_task(runtime, pipeline, task_id, LAUNCH_ONLY),
                **escape,
                refused_because=because,
            )
            for task_id, escape, because in (
                ("privileged_container_refused", {"privileged": True}, "a privileged container"),
                (
                    "host_mount_refused",
                    {"mounts": [Mount(target="/host", source="/", type="bind", read_only=True)]},
                    "a bind mount of the host's root filesystem",
                ),
            )
        ]
    from pipeline_factory.kubernetes_operators import RefusedPodOperator

    assert runtime.kubernetes is not None
    foreign = next(n for n in FOREIGN_NAMESPACES if n != runtime.kubernetes.namespace)
    return [
        RefusedPodOperator(
            **_kubernetes_task(
                runtime, pipeline, "foreign_namespace_refused", LAUNCH_ONLY, foreign
            ),
            refused_because=f"a pod in namespace {foreign!r}, outside the pipelines namespace",
        )
    ]


def pipeline_dag(
    pipeline: str,
    tasks: Sequence[str],
    *,
    dag_id: str | None = None,
    schedule: Any = None,
    start_date: datetime = DEFAULT_START,
    tags: Sequence[str] = (),
    default_args: Mapping[str, Any] | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """A DAG running `tasks` of `pipeline` one after the other.

    One run at a time: a pipeline's tasks share its staging tables in the warehouse.
    """
    runtime = load()
    image = runtime.image(pipeline)
    dags_version = os.environ.get("ETLSTACK_DAGS_VERSION", "unversioned")
    with DAG(
        dag_id=dag_id or pipeline,
        schedule=schedule,
        start_date=start_date,
        catchup=False,
        max_active_runs=1,
        tags=["pipeline", pipeline, *tags],
        default_args=dict(default_args or {}),
        doc_md=dag_kwargs.pop(
            "doc_md",
            f"Pipeline `{pipeline}` (`pipelines/{pipeline}/`), tasks {', '.join(tasks)}.\n\n"
            f"Image `{image}`, DAGs `{dags_version}`.",
        ),
        **dag_kwargs,
    ) as dag:
        chain(*(pipeline_task(pipeline, task, runtime=runtime) for task in tasks))
    return dag
