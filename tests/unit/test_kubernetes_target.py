"""The Kubernetes target (dev, prod), checked offline as strictly as a cluster would.

Every object is validated against the schema of the stack's Kubernetes version;
the wiring users rely on (provider, namespaces, database, migrations, probes, the
runtime contract, secrets, network reachability) is asserted from the declared
objects themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pulumi
import pytest
import yaml

from etlstack import render
from etlstack.kubernetes.migrations import job_name
from tests.unit.kubernetes_helpers import (
    KUBERNETES_STACKS,
    Endpoint,
    NetworkPolicies,
    all_containers,
    evaluate,
    is_kubernetes_object,
    manifest,
    manifests,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    stack_file_with,
)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
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


def _evaluate(stack: str, *, real_secrets: bool = False, **overrides: Any) -> Stack:
    return Stack(evaluate(stack, real_secrets=real_secrets, **overrides))


@pytest.fixture(scope="module", params=KUBERNETES_STACKS)
def stack(request: pytest.FixtureRequest) -> Stack:
    # Real random values: a generated password is then unmistakable wherever it lands.
    return _evaluate(request.param, real_secrets=True)


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _deployment(stack: Stack, component: str) -> Mapping[str, Any]:
    return named(stack.objects, "Deployment", f"airflow-{component}")


def _main_container(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod_spec(obj)
    assert spec is not None
    return spec["containers"][0]


def _config(stack: Stack) -> Mapping[str, str]:
    return named(stack.objects, "ConfigMap", "airflow-config")["data"]


# --- Schema ---------------------------------------------------------------------


def test_every_object_validates_strictly_for_the_stacks_kubernetes_version(stack: Stack) -> None:
    assert stack.objects, "the stack declares Kubernetes objects"
    for obj in stack.objects:
        kubernetes_validate.validate(obj, stack.kubernetes.version, strict=True)


def test_strict_validation_catches_an_unknown_field(stack: Stack) -> None:
    broken = json.loads(json.dumps(_deployment(stack, "scheduler")))
    broken["spec"]["template"]["spec"]["containers"][0]["healthCheck"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, stack.kubernetes.version, strict=True)


def test_render_writes_exactly_the_validated_objects(stack: Stack, tmp_path: Any) -> None:
    """`etlstack render` writes each object above, a Secret's values masked."""
    out = tmp_path / "render"
    written = [p for p in render.write(stack.evaluation, out) if p.parent.name == "kubernetes"]
    assert len(written) == len(stack.objects)
    for resource in stack.evaluation.resources:
        if not is_kubernetes_object(resource):
            continue
        kind = resource.type.split(":")[-1]
        on_disk = yaml.safe_load((out / "kubernetes" / f"{kind}-{resource.name}.yaml").read_text())
        expected = manifest(resource, stack.evaluation)
        if kind == "Secret":
            # Same keys, every value masked.
            real = expected.pop("stringData")
            assert on_disk.pop("stringData") == dict.fromkeys(real, render.SECRET_PLACEHOLDER)
        assert on_disk == expected, resource.name


# --- Provider and namespaces ----------------------------------------------------


def test_one_explicit_provider_bound_to_the_configured_context(stack: Stack) -> None:
    providers = stack.evaluation.by_type("pulumi:providers:kubernetes")
    assert len(providers) == 1
    (provider,) = providers
    assert provider.inputs["context"] == stack.kubernetes.context
    for resource in stack.evaluation.resources:
        if is_kubernetes_object(resource):
            assert resource.provider.rsplit("::", 1)[0] == provider.urn, resource.name


def test_namespaced_objects_name_their_namespace_themselves(stack: Stack) -> None:
    for resource in stack.evaluation.resources:
        if not is_kubernetes_object(resource):
            continue
        metadata = render.reveal(resource.inputs["metadata"])
        assert metadata.get("name"), f"{resource.name} has a fixed name"
        if resource.inputs["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in metadata
        else:
            assert metadata.get("namespace") in (stack.platform, stack.pipelines), resource.name


def test_two_namespaces_enforcing_the_restricted_profile(stack: Stack) -> None:
    namespaces = of_kind(stack.objects, "Namespace")
    assert {n["metadata"]["name"] for n in namespaces} == {stack.platform, stack.pipelines}
    for namespace in namespaces:
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- PostgreSQL -----------------------------------------------------------------


def test_postgres_statefulset_on_a_claim_no_update_or_destroy_deletes(stack: Stack) -> None:
    statefulset = named(stack.objects, "StatefulSet", "postgres")
    spec = pod_spec(statefulset)
    assert spec is not None
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["postgres-data"]
    claim = stack.resource("PersistentVolumeClaim", "postgres-data")
    assert claim.protect and claim.retain_on_delete
    assert stack.resource("StatefulSet", "postgres").dependencies.count(claim.urn) == 1
    assert named(stack.objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    assert named(stack.objects, "Service", "postgres-headless")["spec"]["clusterIP"] == "None"


def test_postgres_passwords_are_generated_secrets_read_from_a_secret(stack: Stack) -> None:
    credentials = stack.resource("Secret", "postgres-credentials")
    assert render.is_secret(credentials.inputs["stringData"])
    container = _main_container(named(stack.objects, "StatefulSet", "postgres"))
    env = _env(container)
    for name in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "WAREHOUSE_DB_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "postgres-credentials"
        assert "value" not in env[name]


def test_postgres_init_creates_both_databases_and_roles_without_a_password(stack: Stack) -> None:
    init = named(stack.objects, "ConfigMap", "postgres-init")
    (script,) = init["data"].values()
    for database in ("airflow", "warehouse"):
        assert f"CREATE ROLE {database} LOGIN PASSWORD :'{database}_password'" in script
        assert f"CREATE DATABASE {database} OWNER {database}" in script
    mounts = {
        m["mountPath"]: m
        for m in _main_container(named(stack.objects, "StatefulSet", "postgres"))["volumeMounts"]
    }
    assert mounts["/docker-entrypoint-initdb.d"]["name"] == "init"


def test_an_external_database_replaces_the_statefulset() -> None:
    url = "postgresql+psycopg2://etl:s3cr3t-pw@db.example.org:5432/airflow?sslmode=require"
    with stack_file_with("dev", {"postgres": {"external": True}}, {"externalDatabaseUrl": url}):
        stack = _evaluate("dev")
    for kind in ("StatefulSet", "PersistentVolumeClaim"):
        assert "postgres" not in {
            o["metadata"]["name"].split("-")[0] for o in of_kind(stack.objects, kind)
        }
    airflow_env = stack.resource("Secret", "airflow-env")
    assert render.is_secret(airflow_env.inputs["stringData"])
    assert (
        render.reveal(airflow_env.inputs["stringData"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == url
    )
    warehouse = stack.resource("Secret", "warehouse")
    assert render.reveal(warehouse.inputs["stringData"])["url"] == (
        "postgresql://etl:s3cr3t-pw@db.example.org:5432/warehouse?sslmode=require"
    )
    assert "s3cr3t-pw" not in json.dumps([named(stack.objects, "ConfigMap", "airflow-config")])
    for obj in stack.objects:
        kubernetes_validate.validate(obj, stack.kubernetes.version, strict=True)


# --- Airflow --------------------------------------------------------------------


def test_four_deployments_one_service_account_each(stack: Stack) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(stack.objects, "ServiceAccount")}
    for component in COMPONENTS:
        spec = pod_spec(_deployment(stack, component))
        assert spec is not None
        assert spec["serviceAccountName"] == f"airflow-{component}"
        assert accounts[f"airflow-{component}"]["metadata"]["namespace"] == stack.platform
        # Only the pods that launch task pods hold an API token.
        assert spec["automountServiceAccountToken"] is (component in ("scheduler", "triggerer"))
        assert spec["imagePullSecrets"] == [{"name": "registry-pull"}]


def test_api_server_replicas_and_disruption_budget_follow_config(stack: Stack) -> None:
    replicas = stack.evaluation.config.settings.airflow.api_server.replicas
    assert _deployment(stack, "api-server")["spec"]["replicas"] == replicas
    budgets = of_kind(stack.objects, "PodDisruptionBudget")
    if replicas > 1:
        (budget,) = budgets
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == pod_labels(
            _deployment(stack, "api-server")
        )
    else:
        assert budgets == []


def test_disruption_budget_appears_when_dev_scales_out() -> None:
    stack = _evaluate("dev", airflow={"apiServer": {"replicas": 3}})
    assert _deployment(stack, "api-server")["spec"]["replicas"] == 3
    assert len(of_kind(stack.objects, "PodDisruptionBudget")) == 1


def test_commands_probes_and_resources(stack: Stack) -> None:
    airflow = stack.evaluation.config.settings.airflow
    settings = {
        "api-server": airflow.api_server,
        "scheduler": airflow.scheduler,
        "dag-processor": airflow.dag_processor,
        "triggerer": airflow.triggerer,
    }
    for component in COMPONENTS:
        container = _main_container(_deployment(stack, component))
        assert container["command"][:2] == ["airflow", component]
        amounts = {
            "cpu": settings[component].resources.cpu,
            "memory": settings[component].resources.memory,
        }
        assert container["resources"] == {"requests": amounts, "limits": amounts}
        if component == "api-server":
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {
                    "path": "/api/v2/monitor/health",
                    "port": 8080,
                }
        else:
            assert container["livenessProbe"]["exec"]["command"] == [
                "airflow-healthcheck",
                component,
            ]


def test_components_wait_for_the_migration_job(stack: Stack) -> None:
    job = stack.resource("Job", _job(stack)["metadata"]["name"])
    for component in COMPONENTS:
        deployment = _deployment(stack, component)
        spec = pod_spec(deployment)
        assert spec is not None
        (init,) = spec["initContainers"]
        assert init["command"][:3] == ["airflow", "db", "check-migrations"]
        assert init["image"] == _main_container(deployment)["image"]
        assert job.urn in stack.resource("Deployment", f"airflow-{component}").dependencies


def _job(stack: Stack) -> Mapping[str, Any]:
    (job,) = of_kind(stack.objects, "Job")
    return job


def test_migration_job_runs_init_and_is_named_after_version_and_image(stack: Stack) -> None:
    job = _job(stack)
    container = _main_container(job)
    assert container["command"] == ["etlstack-init"]
    version = stack.evaluation.config.project_root.joinpath(
        "airflow_image", "requirements.txt"
    ).read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)", version, re.M)
    assert airflow_version is not None
    assert job["metadata"]["name"].startswith(
        f"airflow-migrate-{airflow_version[1].replace('.', '-')}-"
    )
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    assert len(job["metadata"]["name"]) <= 63
    assert (
        _env(container)["ETLSTACK_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "airflow-admin"
    )
    assert container["image"] == stack.evaluation.outputs["artifacts"]["airflow"]


def test_a_new_image_gets_a_new_migration_job() -> None:
    def job_for(digit: str) -> str:
        artifacts = {
            "airflow": "registry.example.org/etlstack/airflow@sha256:" + digit * 64,
            "dags": "dags-" + digit * 12,
        }
        return _job(_evaluate("dev", artifacts=artifacts))["metadata"]["name"]

    assert job_for("1") != job_for("2")
    assert job_name("3.3.2", "x") == job_name("3.3.2", "x") != job_name("3.3.3", "x")


def test_plain_config_in_a_config_map_secrets_only_in_secrets(stack: Stack) -> None:
    config = stack.resource("ConfigMap", "airflow-config")
    assert not render.is_secret(config.inputs["data"])
    data = _config(stack)
    assert data["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    airflow_env = stack.resource("Secret", "airflow-env")
    assert render.is_secret(airflow_env.inputs["stringData"])
    assert set(render.reveal(airflow_env.inputs["stringData"])) == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    }
    for component in COMPONENTS:
        container = _main_container(_deployment(stack, component))
        assert container["envFrom"] == [
            {"configMapRef": {"name": "airflow-config"}},
            {"secretRef": {"name": "airflow-env"}},
        ]


def test_no_secret_value_in_any_config_map_or_plain_env(stack: Stack) -> None:
    secrets = stack.secret_values()
    assert secrets, "the stack holds generated secrets"
    plain: list[Any] = [o for o in stack.objects if o["kind"] == "ConfigMap"]
    for obj in stack.objects:
        spec = pod_spec(obj)
        if spec is not None:
            plain += [c.get("env", []) for c in all_containers(spec)]
    text = json.dumps(plain)
    assert not [s for s in secrets if s in text]


def test_every_password_derived_input_is_a_secret(stack: Stack) -> None:
    for resource in stack.evaluation.resources:
        if is_kubernetes_object(resource) and resource.inputs["kind"] == "Secret":
            assert render.is_secret(resource.inputs["stringData"]), resource.name
    assert render.is_secret(stack.evaluation.outputs["adminPassword"])
    for image in stack.evaluation.by_type("docker:index/image:Image"):
        assert render.is_secret(image.inputs["registry"])


def test_shared_airflow_keys_come_from_the_generated_once_component(stack: Stack) -> None:
    generated = [
        r.urn
        for r in stack.evaluation.resources
        if r.type.startswith("random:")
        and r.parent == _component_urn(stack, "etlstack:airflow:Secrets")
    ]
    assert len(generated) == 4
    airflow_env = stack.resource("Secret", "airflow-env")
    assert set(generated) - {_admin_password_urn(stack)} <= set(airflow_env.dependencies)


def _component_urn(stack: Stack, type_: str) -> str:
    (component,) = stack.evaluation.by_type(type_)
    return component.urn


def _admin_password_urn(stack: Stack) -> str:
    return next(r.urn for r in stack.evaluation.resources if r.name.endswith("admin-password"))


def test_runtime_contract_for_the_dag_factory(stack: Stack) -> None:
    runtime = json.loads(_config(stack)["ETLSTACK_RUNTIME"])
    assert runtime["target"] == "kubernetes"
    assert runtime["kubernetes"] == {
        "namespace": stack.pipelines,
        "serviceAccount": "pipeline-task",
        "imagePullSecret": "registry-pull",
        "warehouseSecret": "warehouse",
    }
    artifacts = stack.evaluation.outputs["artifacts"]
    assert runtime["pipelineImages"] == {
        k: v for k, v in artifacts.items() if k not in ("airflow", "dags")
    }
    # Everything the contract names exists where task pods look for it.
    named(stack.objects, "ServiceAccount", "pipeline-task")
    for name in ("registry-pull", "warehouse"):
        namespaces = {
            o["metadata"]["namespace"]
            for o in of_kind(stack.objects, "Secret")
            if o["metadata"]["name"] == name
        }
        assert stack.pipelines in namespaces
    warehouse = stack.resource("Secret", "warehouse")
    assert set(render.reveal(warehouse.inputs["stringData"])) == {"url"}
    assert render.reveal(warehouse.inputs["stringData"])["url"].startswith("postgresql://")


def test_execution_api_url_is_the_api_server_service(stack: Stack) -> None:
    url = urlsplit(_config(stack)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    service = named(stack.objects, "Service", "airflow-api-server")
    assert url.hostname == f"airflow-api-server.{stack.platform}.svc"
    assert url.port == service["spec"]["ports"][0]["port"] == 8080
    assert url.path == "/execution/"
    assert service["spec"]["selector"] == pod_labels(_deployment(stack, "api-server"))


def test_ingress_follows_config(stack: Stack) -> None:
    ingress = stack.kubernetes.ingress
    airflow_ingresses = [
        i
        for i in of_kind(stack.objects, "Ingress")
        if i["metadata"]["name"] == "airflow-api-server"
    ]
    if ingress.enabled:
        (found,) = airflow_ingresses
        assert found["spec"]["rules"][0]["host"] == ingress.host
        assert stack.evaluation.outputs["airflowUrl"].endswith(ingress.host)
        assert _config(stack)["AIRFLOW__API__BASE_URL"] == stack.evaluation.outputs["airflowUrl"]
    else:
        assert airflow_ingresses == []


# --- Registry -------------------------------------------------------------------


def test_registry_in_the_cluster() -> None:
    stack = _evaluate("dev")
    host = stack.evaluation.config.settings.registry.host
    deployment = named(stack.objects, "Deployment", "registry")
    env = _env(_main_container(deployment))
    assert env["REGISTRY_AUTH"]["value"] == "htpasswd"
    auth = stack.resource("Secret", "registry-auth")
    assert render.is_secret(auth.inputs["stringData"])
    htpasswd = render.reveal(auth.inputs["stringData"])["htpasswd"]
    assert re.fullmatch(r"etlstack:\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n", htpasswd)
    claim = stack.resource("PersistentVolumeClaim", "registry-data")
    assert claim.retain_on_delete
    (ingress,) = [
        i for i in of_kind(stack.objects, "Ingress") if i["metadata"]["name"] == "registry"
    ]
    assert ingress["spec"]["rules"][0]["host"] == host
    assert stack.evaluation.outputs["registry"] == host


def test_pull_secrets_in_both_namespaces_for_the_registry(stack: Stack) -> None:
    host = stack.evaluation.outputs["registry"]
    pulls = [
        s for s in of_kind(stack.objects, "Secret") if s["metadata"]["name"] == "registry-pull"
    ]
    assert {s["metadata"]["namespace"] for s in pulls} == {stack.platform, stack.pipelines}
    for secret in pulls:
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        config = json.loads(secret["stringData"][".dockerconfigjson"])
        assert set(config["auths"]) == {host}


def test_images_are_pushed_to_the_registry_once_it_serves() -> None:
    stack = _evaluate("dev")
    registry = stack.resource("Deployment", "registry")
    for image in stack.evaluation.by_type("docker:index/image:Image"):
        assert (
            render.reveal(image.inputs["registry"])["server"]
            == stack.evaluation.config.settings.registry.host
        )
        assert registry.urn in image.dependencies


def test_an_external_registry_replaces_the_deployed_one() -> None:
    with stack_file_with(
        "dev",
        {"registry": {"host": "registry.corp.example", "external": True, "username": "ci"}},
        {"registryPassword": "reg1stry-pw"},
    ):
        stack = _evaluate("dev")
    assert not [
        d for d in of_kind(stack.objects, "Deployment") if d["metadata"]["name"] == "registry"
    ]
    assert not of_kind(stack.objects, "PersistentVolumeClaim") or all(
        c["metadata"]["name"] != "registry-data"
        for c in of_kind(stack.objects, "PersistentVolumeClaim")
    )
    for secret in of_kind(stack.objects, "Secret"):
        if secret["metadata"]["name"] == "registry-pull":
            auth = json.loads(secret["stringData"][".dockerconfigjson"])["auths"][
                "registry.corp.example"
            ]
            assert (auth["username"], auth["password"]) == ("ci", "reg1stry-pw")
    assert "reg1stry-pw" in stack.secret_values()


def test_prod_pulls_from_the_registry_dev_deploys(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(
        pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message)
    )
    dev_host = _evaluate("dev").evaluation.config.settings.registry.host

    prod = _evaluate("prod", real_secrets=True)

    assert prod.evaluation.config.settings.registry.from_stack == "dev"
    assert not [
        d for d in of_kind(prod.objects, "Deployment") if d["metadata"]["name"] == "registry"
    ]
    assert prod.evaluation.outputs["registry"] == dev_host
    pulls = [s for s in prod.evaluation.resources if s.name.endswith("registry-pull")]
    assert pulls
    for pull in pulls:
        assert render.is_secret(pull.inputs["stringData"])
        auths = json.loads(render.reveal(pull.inputs["stringData"])[".dockerconfigjson"])["auths"]
        assert set(auths) == {dev_host}
        # The password is the one read from dev's outputs, never one prod made up.
        assert auths[dev_host]["password"] in prod.evaluation.generated_secrets
    # Every promoted artifact is pullable with these credentials: nothing to warn about.
    assert warnings == []


# --- Pod security ---------------------------------------------------------------


def _runs_its_registry(stack: Stack) -> bool:
    registry = stack.evaluation.config.settings.registry
    return registry.from_stack is None and not registry.external


def test_every_workload_runs_restricted(stack: Stack) -> None:
    workloads = [o for o in stack.objects if pod_spec(o) is not None]
    # postgres, migrations, four Airflow components, and the registry where this stack runs it.
    assert len(workloads) == 6 + _runs_its_registry(stack)
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        writable = {
            v["name"]
            for v in spec.get("volumes", [])
            if "emptyDir" in v or "persistentVolumeClaim" in v
        }
        for container in all_containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
            # What the process writes to is a volume, not the image.
            for mount in container.get("volumeMounts", []):
                if mount["mountPath"] in ("/tmp", "/opt/airflow/logs", "/opt/airflow/config"):
                    assert mount["name"] in writable


def test_airflow_writes_its_config_file_to_a_volume(stack: Stack) -> None:
    path = _config(stack)["AIRFLOW_CONFIG"]
    for component in COMPONENTS:
        mounts = [
            m["mountPath"] for m in _main_container(_deployment(stack, component))["volumeMounts"]
        ]
        assert any(path.startswith(mount + "/") for mount in mounts)


# --- Network policies -----------------------------------------------------------


def _pods(stack: Stack) -> dict[str, Endpoint]:
    pods = {
        o["metadata"]["name"]: Endpoint(stack.platform, pod_labels(o))
        for o in stack.objects
        if pod_spec(o) is not None and o["kind"] != "Job"
    }
    pods["migrations"] = Endpoint(stack.platform, pod_labels(_job(stack)))
    # Task pods carry whatever labels the operator gives them.
    pods["task"] = Endpoint(stack.pipelines, {"kubernetes_pod_operator": "True"})
    pods["ingress-controller"] = Endpoint(
        stack.kubernetes.ingress.controller_namespace, {"app": "ingress-nginx"}
    )
    pods["elsewhere"] = Endpoint("default", {"app": "curious"})
    return pods


def test_only_airflow_and_pipeline_pods_reach_postgres(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = _pods(stack)
    reach = {name for name, pod in pods.items() if policies.allowed(pod, pods["postgres"], 5432)}
    assert reach == {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "migrations",
        "task",
    }


def test_only_what_must_reaches_the_api_server(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = _pods(stack)
    reach = {
        n for n, pod in pods.items() if policies.allowed(pod, pods["airflow-api-server"], 8080)
    }
    expected = {"airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    if stack.kubernetes.ingress.enabled:
        expected.add("ingress-controller")
    assert reach == expected


def test_task_pods_reach_the_warehouse_and_dns_only(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = _pods(stack)
    task = pods["task"]
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"})
    assert policies.allowed(task, dns, 53, "UDP")
    assert policies.allowed(task, pods["postgres"], 5432)
    assert not policies.allowed(task, pods["postgres"], 22)
    assert not policies.allowed(task, Endpoint(ip="203.0.113.9"), 443)
    assert not policies.allowed(task, Endpoint(ip="10.96.0.1"), 443), "no Kubernetes API"
    for name in ("airflow-scheduler", "registry", "elsewhere"):
        if name in pods:
            assert not policies.allowed(task, pods[name], 8793)
    assert not any(policies.allowed(pod, task, 8080) for pod in pods.values())


def test_only_the_launchers_reach_the_kubernetes_api(stack: Stack) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = _pods(stack)
    api = Endpoint(ip="10.96.0.1")
    reach = {
        n
        for n, pod in pods.items()
        if pod.namespace in (stack.platform, stack.pipelines) and policies.allowed(pod, api, 443)
    }
    assert reach == {"airflow-scheduler", "airflow-triggerer"}


def test_the_api_server_fetches_task_logs_and_the_registry_is_behind_the_ingress(
    stack: Stack,
) -> None:
    policies = NetworkPolicies(stack.objects)
    pods = _pods(stack)
    assert policies.allowed(pods["airflow-api-server"], pods["airflow-scheduler"], 8793)
    assert policies.allowed(pods["airflow-api-server"], pods["airflow-triggerer"], 8794)
    assert not policies.allowed(pods["airflow-dag-processor"], pods["airflow-scheduler"], 8793)
    if _runs_its_registry(stack):
        reach = {n for n, pod in pods.items() if policies.allowed(pod, pods["registry"], 5000)}
        assert reach == {"ingress-controller"}


def test_pipeline_egress_networks_come_from_config() -> None:
    stack = _evaluate(
        "dev",
        kubernetes={
            "context": "dev-cluster",
            "version": "1.30",
            "pipelineEgressCidrs": ["203.0.113.0/24"],
        },
    )
    policies = NetworkPolicies(stack.objects)
    task = _pods(stack)["task"]
    assert policies.allowed(task, Endpoint(ip="203.0.113.9"), 443)
    assert not policies.allowed(task, Endpoint(ip="198.51.100.1"), 443)


def test_images_from_a_registry_without_credentials_are_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(
        pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message)
    )

    def pinned(host: str) -> dict[str, str]:
        return {"airflow": f"{host}/etlstack/airflow{DIGEST}", "dags": "dags-" + "0" * 12}

    _evaluate("dev", artifacts=pinned("registry.dev.example.org"))
    assert warnings == []
    _evaluate("dev", artifacts=pinned("registry.elsewhere.example"))
    (warning,) = warnings
    assert "registry.elsewhere.example" in warning and "registry-pull" in warning
