"""The DAG factory's operators, for both targets, with each stack's real runtime.

Docker: the operator runs against the platform's real Docker API proxy configuration
(HAProxy in front of a stub engine, from tests/unit/docker/test_docker_api_proxy.py):
a pipeline task's container create gets through with its limits, the smoke test's
forbidden launches are refused with 403. Kubernetes: the pod the operator would
create is built offline and validated strictly against the Kubernetes 1.30 schema,
then checked against what the stack deploys (service account, secrets, and RBAC as
the offline model in tests/unit/kubernetes_helpers.py decides it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowFailException
from docker.errors import APIError
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from pipeline_factory import (
    TASK_UID,
    PipelineNotDeployed,
    RuntimeSettingsError,
    pipeline_task,
    refused_tasks,
)
from pipeline_factory.runtime import Runtime, cpu_cores, memory_bytes, parse
from tests.support.stacks import KUBERNETES_STACKS, STACKS, evaluate
from tests.unit.dag_helpers import stack_runtime

# The platform's real proxy (HAProxy with the rendered allowlist) as a fixture.
from tests.unit.docker.test_docker_api_proxy import Proxy
from tests.unit.docker.test_docker_api_proxy import proxy as proxy
from tests.unit.kubernetes_helpers import RbacAuthorizer, Request, manifests

WAREHOUSE = "postgresql://warehouse:s3cr%2Ft@postgres:5432/warehouse"


def runtime(stack: str, **changes: Any) -> Runtime:
    value = json.loads(stack_runtime(stack))
    value.update(changes)
    return parse(json.dumps(value))


# --- runtime settings ---------------------------------------------------------------


def test_quantities() -> None:
    assert cpu_cores("1") == 1.0
    assert cpu_cores("500m") == 0.5
    assert cpu_cores("1.5") == 1.5
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("1Gi") == 2**30
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("1048576") == 2**20
    for bad in ("", "0", "1 cpu", "-1"):
        with pytest.raises(RuntimeSettingsError, match=r"taskResources\.cpu"):
            cpu_cores(bad)
    for bad in ("512mb", "0Mi", "lots", "1ki"):
        with pytest.raises(RuntimeSettingsError, match=r"taskResources\.memory"):
            memory_bytes(bad)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"target": "nomad"}', "target 'nomad' is not one of"),
        ('{"target": "docker"}', "has no pipelineImages"),
    ],
)
def test_malformed_runtime_is_named(raw: str, message: str) -> None:
    with pytest.raises(RuntimeSettingsError, match=message):
        parse(raw)


def test_missing_target_settings_are_named() -> None:
    value = json.loads(stack_runtime("local"))
    del value["docker"]["network"]
    with pytest.raises(RuntimeSettingsError, match=r"has no docker\.network"):
        parse(json.dumps(value))


def test_runtime_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETLSTACK_RUNTIME", raising=False)
    with pytest.raises(RuntimeSettingsError, match="ETLSTACK_RUNTIME is not set"):
        pipeline_task("weather", "extract")


@pytest.mark.parametrize("stack", ["local", *KUBERNETES_STACKS])
def test_a_pipeline_the_stack_does_not_deploy_is_refused(stack: str) -> None:
    settings = runtime(stack)
    with pytest.raises(PipelineNotDeployed) as refused:
        pipeline_task("ghost", "extract", runtime=settings)
    message = str(refused.value)
    assert "pipeline 'ghost', which this stack does not deploy" in message
    assert f"(deployed pipelines: {', '.join(sorted(settings.pipeline_images))})" in message
    # The fix depends on where the stack's artifacts come from.
    if settings.promoted:
        assert "promote again from the stack that ran them" in message
    else:
        assert "there is no folder pipelines/ghost/" in message
        assert "etlstack new-pipeline ghost" in message


def test_only_a_stack_that_deploys_promoted_artifacts_says_so() -> None:
    promoted = {s for s in STACKS if runtime(s).promoted}
    assert promoted == {s for s in STACKS if evaluate(s).config.settings.artifacts is not None}
    assert promoted, "no stack deploys promoted artifacts"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image", "busybox"),
        ("pool", "default_pool"),
        ("user", "0"),
        ("privileged", True),
        ("mounts", [{"Target": "/host", "Source": "/", "Type": "bind"}]),
        ("cap_add", ["SYS_ADMIN"]),
        ("network_mode", "host"),
        ("namespace", "kube-system"),
        ("security_context", {}),
        ("hostnetwork", True),
    ],
)
def test_launch_settings_cannot_be_set_in_a_dag(field: str, value: Any) -> None:
    for stack in ("local", "dev"):
        with pytest.raises(ValueError, match=f"{field} cannot be set in a DAG"):
            pipeline_task("weather", "extract", runtime=runtime(stack), **{field: value})


# --- docker target -----------------------------------------------------------------


def test_docker_operator_fields() -> None:
    settings = runtime("local")
    assert settings.docker is not None
    operator = pipeline_task("weather", "extract", runtime=settings, retries=2)
    assert isinstance(operator, DockerOperator)
    assert operator.task_id == "extract"
    assert operator.image == settings.pipeline_images["weather"]
    assert "@sha256:" in operator.image
    assert operator.command == ["run_extract.sh"]
    assert operator.docker_url == settings.docker.url
    assert operator.network_mode == settings.docker.network
    assert operator.pool == settings.pool == "pipeline_tasks"
    assert operator.mount_tmp_dir is False
    assert operator.auto_remove == "success"
    assert operator.user == f"{TASK_UID}:{TASK_UID}"
    assert TASK_UID != 0
    assert operator.mem_limit == memory_bytes(settings.memory)
    assert operator.privileged is False
    assert not operator.mounts and not operator.cap_add
    assert operator.retries == 2
    # The credential is not part of the DAG: it is read when the task runs.
    assert "WAREHOUSE_URL" not in operator.environment
    assert operator.warehouse_conn_id == settings.docker.warehouse_conn_id  # type: ignore[attr-defined]


def _created(proxy: Proxy, since: int) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for _, path, body in proxy.seen.requests[since:]
        if path.split("?")[0].endswith("/containers/create")
    ]


def _through(settings: Runtime, proxy: Proxy) -> Runtime:
    """The local stack's runtime, with the Docker URL pointed at the test proxy."""
    assert settings.docker is not None
    docker = settings.docker.model_copy(update={"url": f"tcp://127.0.0.1:{proxy.port}"})
    return settings.model_copy(update={"docker": docker})


def test_docker_task_runs_through_the_proxy_confined(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", WAREHOUSE)
    settings = _through(runtime("local"), proxy)
    before = proxy.seen.count()
    pipeline_task("weather", "load", runtime=settings).execute(context={})
    (created,) = _created(proxy, before)
    host = created["HostConfig"]
    assert created["Image"] == settings.pipeline_images["weather"]
    assert created["Cmd"] == ["run_load.sh"]
    assert created["User"] == f"{TASK_UID}:{TASK_UID}"
    assert f"WAREHOUSE_URL={WAREHOUSE}" in created["Env"]
    assert host["NetworkMode"] == settings.docker.network  # type: ignore[union-attr]
    assert host["Memory"] == memory_bytes(settings.memory)
    # A hard CPU limit, not only the relative weight DockerOperator sets.
    assert host["NanoCpus"] == round(cpu_cores(settings.cpu) * 1e9)
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert not host.get("Privileged") and not host.get("Binds") and not host.get("Mounts")
    # Removed after success, never left behind by the launch itself.
    assert any(m == "DELETE" for m, _, _ in proxy.seen.requests[before:])
    # The task log (Airflow logs to stdout here) never shows the credential.
    assert "s3cr" not in capsys.readouterr().out


@pytest.mark.parametrize("task_id", ["privileged_container_refused", "host_mount_refused"])
def test_docker_refused_tasks_succeed_because_the_proxy_refuses(
    proxy: Proxy, task_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _through(runtime("local"), proxy)
    (task,) = [t for t in refused_tasks("platform-smoke", runtime=settings) if t.task_id == task_id]
    assert task.pool == settings.pool
    before = proxy.seen.count()
    outcome = task.execute(context={})
    assert outcome["refused"] is True and outcome["status"] == 403
    assert outcome["message"]
    assert not _created(proxy, before), "the proxy let the forbidden create through"
    # What refused it is in the task log.
    logged = capsys.readouterr().out
    assert "Refused, as the platform must" in logged
    assert "403 Client Error" in logged and "Forbidden" in logged


class _Launched:
    """A Docker client where the launch succeeds: what a platform without guard rails does."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def images(self, name: str) -> list[str]:
        return [name]

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.created.append(kwargs)
        return {"Id": "c0ffee"}

    def attach(self, **_: Any) -> Iterator[bytes]:
        return iter([])

    def start(self, _: str) -> None:
        pass

    def wait(self, _: str) -> dict[str, int]:
        return {"StatusCode": 0}

    def remove_container(self, _: str) -> None:
        pass


class _Failing(_Launched):
    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        response = type("Response", (), {"status_code": self.status, "reason": "Nope"})()
        raise APIError("engine said no", response=response, explanation="engine said no")


def _with_client(task: Any, client: Any) -> Any:
    task.__dict__["hook"] = type("Hook", (), {"api_client": client})()
    return task


@pytest.mark.parametrize("task_index", [0, 1])
def test_docker_refused_task_fails_when_the_launch_goes_through(task_index: int) -> None:
    task = refused_tasks("platform-smoke", runtime=runtime("local"))[task_index]
    client = _Launched()
    with pytest.raises(AirflowFailException, match="launched a task it must refuse"):
        _with_client(task, client).execute(context={})
    assert client.created, "the launch was not attempted"


def test_docker_refused_task_fails_on_other_errors() -> None:
    task = refused_tasks("platform-smoke", runtime=runtime("local"))[0]
    with pytest.raises(APIError):
        _with_client(task, _Failing(500)).execute(context={})


# --- kubernetes target ---------------------------------------------------------------


def pod_of(operator: KubernetesPodOperator) -> dict[str, Any]:
    # A dry run builds the pod exactly, without asking a cluster anything.
    pod = operator.build_pod_request_obj(context=None, dry_run=True)
    return dict(ApiClient().sanitize_for_serialization(pod))


@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
def test_kubernetes_operator_fields(stack: str) -> None:
    settings = runtime(stack)
    assert settings.kubernetes is not None
    operator = pipeline_task("weather", "transform", runtime=settings)
    assert isinstance(operator, KubernetesPodOperator)
    assert operator.pool == settings.pool
    assert operator.namespace == settings.kubernetes.namespace
    assert operator.image == settings.pipeline_images["weather"]
    assert operator.cmds == ["run_transform.sh"]


@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
@pytest.mark.parametrize(
    ("pipeline", "task"), [("weather", "extract"), ("platform-smoke", "check")]
)
def test_kubernetes_pod_is_valid_and_confined(stack: str, pipeline: str, task: str) -> None:
    settings = runtime(stack)
    assert settings.kubernetes is not None
    pod = pod_of(pipeline_task(pipeline, task, runtime=settings))  # type: ignore[arg-type]
    kubernetes_validate.validate(pod, "1.30", strict=True)

    spec = pod["spec"]
    (container,) = spec["containers"]
    assert pod["metadata"]["namespace"] == settings.kubernetes.namespace
    assert spec["serviceAccountName"] == settings.kubernetes.service_account
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": settings.kubernetes.image_pull_secret}]
    assert container["image"] == settings.pipeline_images[pipeline]
    assert container["command"] == [f"run_{task}.sh"]
    assert container["env"] == [
        {
            "name": "WAREHOUSE_URL",
            "valueFrom": {
                "secretKeyRef": {"name": settings.kubernetes.warehouse_secret, "key": "url"}
            },
        }
    ]
    limits = {"cpu": settings.cpu, "memory": settings.memory}
    assert container["resources"] == {"limits": limits, "requests": limits}
    # Pod Security Standards, "restricted" profile.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == TASK_UID != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    assert not any("hostPath" in v for v in spec.get("volumes") or [])
    assert all(len(v) <= 63 for v in pod["metadata"]["labels"].values())


@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
def test_kubernetes_pod_uses_what_the_stack_deploys(stack: str) -> None:
    """The service account, pull secret and warehouse Secret the pod names exist there."""
    settings = runtime(stack)
    assert settings.kubernetes is not None
    namespace = settings.kubernetes.namespace
    objects = manifests(evaluate(stack))

    def present(kind: str, name: str) -> dict[str, Any]:
        found = [
            o
            for o in objects
            if o["kind"] == kind
            and o["metadata"]["name"] == name
            and o["metadata"].get("namespace") == namespace
        ]
        assert len(found) == 1, f"{stack}: no {kind} {namespace}/{name}"
        return found[0]

    present("ServiceAccount", settings.kubernetes.service_account)
    present("Secret", settings.kubernetes.image_pull_secret)
    warehouse = present("Secret", settings.kubernetes.warehouse_secret)
    assert "url" in {**warehouse.get("data", {}), **warehouse.get("stringData", {})}


@pytest.mark.parametrize("stack", KUBERNETES_STACKS)
def test_kubernetes_launches_are_allowed_and_the_refused_one_is_not(stack: str) -> None:
    """For the scheduler, which launches pods, as the offline RBAC model decides."""
    settings = runtime(stack)
    platform_namespace = evaluate(stack).config.kubernetes.namespace
    authorizer = RbacAuthorizer(manifests(evaluate(stack)))
    allowed = pipeline_task("weather", "extract", runtime=settings)
    (refused,) = refused_tasks("platform-smoke", runtime=settings)
    assert isinstance(refused, KubernetesPodOperator)
    kubernetes_validate.validate(pod_of(refused), "1.30", strict=True)
    assert refused.pool == settings.pool

    def may_create(namespace: str | None) -> bool:
        return namespace is not None and authorizer.allowed(
            platform_namespace, "airflow-scheduler", Request("create", "pods", namespace)
        )

    assert may_create(allowed.namespace)  # type: ignore[attr-defined]
    assert refused.namespace is not None
    assert refused.namespace != allowed.namespace  # type: ignore[attr-defined]
    assert not may_create(refused.namespace)


def _forbidden() -> ApiException:
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps(
        {
            "kind": "Status",
            "message": 'pods is forbidden: User "system:serviceaccount:etlstack:airflow-scheduler"'
            ' cannot create resource "pods" in API group "" in the namespace "default"',
            "reason": "Forbidden",
            "code": 403,
        }
    )
    return error


def test_kubernetes_refused_task_succeeds_on_403_and_fails_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

    (task,) = refused_tasks("platform-smoke", runtime=runtime("dev"))
    created: list[Any] = []

    def refuse(self: Any, pod: Any) -> Any:
        created.append(pod)
        raise _forbidden()

    build = KubernetesPodOperator.build_pod_request_obj
    monkeypatch.setattr(
        KubernetesPodOperator,
        "build_pod_request_obj",
        lambda self, context=None, **_: build(self, None, dry_run=True),
    )
    monkeypatch.setattr(PodManager, "create_pod", refuse)
    monkeypatch.setattr(KubernetesPodOperator, "find_pod", lambda *a, **k: None)
    monkeypatch.setattr(KubernetesPodOperator, "client", object(), raising=False)
    monkeypatch.setattr(KubernetesPodOperator, "cleanup", lambda *a, **k: None)
    outcome = task.execute(context={})
    assert created and created[0].metadata.namespace == "default"
    assert outcome["refused"] is True
    assert 'cannot create resource "pods"' in outcome["message"]

    def conflict(self: Any, pod: Any) -> Any:
        raise ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(PodManager, "create_pod", conflict)
    (task,) = refused_tasks("platform-smoke", runtime=runtime("dev"))
    with pytest.raises(ApiException):
        task.execute(context={})


def test_the_refused_pod_always_leaves_the_pipelines_namespace() -> None:
    value = json.loads(stack_runtime("dev"))
    value["kubernetes"]["namespace"] = "default"
    (refused,) = refused_tasks("platform-smoke", runtime=parse(json.dumps(value)))
    assert refused.namespace == "kube-system"  # type: ignore[attr-defined]
