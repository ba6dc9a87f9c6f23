"""Stack configuration: read once, validated once, into typed objects.

Every setting a stack file may hold is declared here, with its default. The rest of
the program receives a `StackConfig` and never reads raw Pulumi config, so a wrong
setting fails here, before any resource is declared, with one message that names
the key, what is wrong and how to fix it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

NAMESPACE = "etlstack"

# Keys that hold credentials. They must be set with `pulumi config set --secret`,
# and they reach the program only as Pulumi secrets.
SECRET_KEYS = ("externalDatabaseUrl", "registryPassword")


class ConfigError(Exception):
    """A stack setting is wrong. The message names the key, the problem and the fix."""


# An image reference: [registry[:port]/]path[:tag][@sha256:<64 hex>].
_IMAGE_REF = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_DIGEST_PINNED = re.compile(r"@sha256:[a-f0-9]{64}$")


def _image_reference(value: str) -> str:
    match = _IMAGE_REF.match(value)
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError(
            f"{value!r} is not a pinned image reference; write it as "
            "'name:tag' or 'name@sha256:<64 hex digits>', e.g. 'postgres:17.12-trixie'"
        )
    return value


def _digest_pinned(value: str) -> str:
    if not _DIGEST_PINNED.search(value):
        raise ValueError(
            f"{value!r} is not pinned by digest; promoted artifacts must read "
            "'repository@sha256:<64 hex digits>'"
        )
    return _image_reference(value)


def _quantity(value: str) -> str:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?", value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write e.g. '500m' (CPU) or '512Mi' (memory)"
        )
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; write e.g. '127.0.0.1' (this machine only) "
            "or '0.0.0.0' (every interface)"
        ) from None
    return value


_DURATION = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(value: str) -> str:
    match = _DURATION.fullmatch(value)
    if not match or int(match["amount"]) == 0:
        raise ValueError(
            f"{value!r} is not a positive duration; write a whole number and one unit "
            "(s, m, h, d, w), e.g. '30d', '12h' or '90m'"
        )
    return value


def seconds(duration: str) -> int:
    """A duration setting ('30d', '12h'), already validated, in seconds."""
    match = _DURATION.fullmatch(duration)
    assert match is not None, duration
    return int(match["amount"]) * _SECONDS[match["unit"]]


ImageRef = Annotated[str, AfterValidator(_image_reference)]
Duration = Annotated[str, AfterValidator(_duration)]
Quantity = Annotated[str, AfterValidator(_quantity)]
IPAddress = Annotated[str, AfterValidator(_ip_address)]


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a network in CIDR notation, e.g. '10.0.0.0/8'"
        ) from None
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
Port = Annotated[int, Field(ge=1, le=65535)]
KubernetesName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class _Settings(BaseModel):
    """Base of every settings block: camelCase keys as in the stack files, nothing unknown."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Target(StrEnum):
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class Images(_Settings):
    """Third-party images. Point them at a mirror if Docker Hub is out of reach."""

    postgres: ImageRef = Field(
        default="postgres:17.12-trixie",
        description="PostgreSQL 17, what Debian 13 ships and what the tests run: a dump "
        "restores only into the same or a newer major.",
    )
    registry: ImageRef = Field(
        default="registry:2.8.3",
        description="The CNCF distribution registry, last 2.x release (htpasswd auth, "
        "filesystem storage).",
    )
    docker_proxy: ImageRef = Field(
        default="haproxy:3.0.5-bookworm",
        description="HAProxy 3.0 LTS: the Docker API proxy in front of the socket "
        "(docker target only).",
    )
    python_base: ImageRef = Field(
        default="python:3.11.10-slim-bookworm",
        description="The base of the Airflow and pipeline images: Debian 12 with Python 3.11, "
        "as in the tests.",
    )


MAX_CA_BUNDLE_BYTES = 120 * 1024


class Build(_Settings):
    """How images are built on a network that needs a package mirror or an extra CA."""

    pip_index_url: str | None = Field(
        default=None, description="A package-index mirror for pip in image builds; unset: PyPI."
    )
    ca_bundle_file: Path | None = Field(
        default=None,
        description="A PEM file on the machine that runs `pulumi up` with only the extra CA "
        "certificates image builds must trust (TLS-intercepting proxies); under 120 KiB.",
    )

    @model_validator(mode="after")
    def _ca_bundle_exists(self) -> Build:
        if self.ca_bundle_file is None:
            return self
        if not self.ca_bundle_file.is_file():
            raise ValueError(
                f"caBundleFile {str(self.ca_bundle_file)!r} does not exist; give the path "
                "of a PEM file on the machine that runs pulumi up"
            )
        # The bundle reaches the build as a build argument, which every RUN step sees
        # as an environment variable; Linux refuses one variable over 128 KiB.
        size = self.ca_bundle_file.stat().st_size
        if size > MAX_CA_BUNDLE_BYTES:
            raise ValueError(
                f"caBundleFile {str(self.ca_bundle_file)!r} is {size // 1024} KiB, over the "
                f"{MAX_CA_BUNDLE_BYTES // 1024} KiB a build argument can carry; give a file "
                "with only the extra CA certificates, not the whole system bundle"
            )
        return self


class Resources(_Settings):
    """CPU and memory, as Kubernetes quantities; requests equal limits."""

    cpu: Quantity = Field(description="CPU, e.g. '500m' or '1'.")
    memory: Quantity = Field(description="Memory, e.g. '512Mi' or '2Gi'.")


class Component(_Settings):
    """One Airflow component's size."""

    replicas: int = Field(
        default=1, ge=1, le=10, description="Copies; only the api-server may have more than 1."
    )
    resources: Resources = Field(
        default=Resources(cpu="500m", memory="1Gi"), description="Its CPU and memory."
    )


class Airflow(_Settings):
    """Airflow's components and the limits of the tasks it launches."""

    admin_username: KubernetesName = Field(
        default="admin", description="The admin user created at the first deploy."
    )
    admin_email: str = Field(default="admin@example.org", description="The admin user's email.")
    api_server: Component = Field(
        default=Component(resources=Resources(cpu="500m", memory="1Gi")),
        description="The api-server: UI, REST and execution API.",
    )
    scheduler: Component = Field(
        default=Component(resources=Resources(cpu="1", memory="2Gi")),
        description="The scheduler, with the LocalExecutor; one replica.",
    )
    dag_processor: Component = Field(
        default=Component(resources=Resources(cpu="500m", memory="1Gi")),
        description="The standalone dag-processor; one replica.",
    )
    triggerer: Component = Field(
        default=Component(resources=Resources(cpu="250m", memory="512Mi")),
        description="The triggerer; one replica.",
    )
    parallelism: int = Field(
        default=16,
        ge=1,
        le=512,
        description="How many task instances run at once across the platform ([core] parallelism).",
    )
    pipeline_task_slots: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Slots of the pool every pipeline task runs in: the cap that keeps a "
        "burst of tasks from overwhelming the Docker daemon or the namespace's quota.",
    )
    task_resources: Resources = Field(
        default=Resources(cpu="1", memory="512Mi"),
        description="Limits of every pipeline task container or pod.",
    )
    allow_tasks_in_airflow: bool = Field(
        default=False,
        description="Accept DAG tasks that run their own code inside an Airflow component (a "
        "PythonOperator, a BashOperator, a @task) instead of as a pipeline task. They then run "
        "in the scheduler with its credentials (the metadata database, the fernet key), "
        "outside the task limits and the pipeline pool: every DAG author becomes as trusted "
        "as the platform's administrator. Off: such a DAG fails to import, naming the rule.",
    )

    @model_validator(mode="after")
    def _replicas_make_sense(self) -> Airflow:
        for name in ("scheduler", "dag_processor", "triggerer"):
            if getattr(self, name).replicas != 1:
                raise ValueError(
                    f"{to_camel(name)}.replicas must be 1: with the LocalExecutor only the "
                    "api-server scales out; remove the setting"
                )
        return self


class Backups(_Settings):
    """Scheduled dumps of the Airflow database and the warehouse, on a volume of their own.

    The platform's PostgreSQL only: an external database keeps its own backups."""

    every: Duration = Field(default="1d", description="How often a backup is taken.")
    keep: Duration = Field(
        default="14d", description="How long a backup is kept before it is removed."
    )
    storage_size: Quantity = Field(
        default="20Gi", description="Size of the backups' volume (PVC, kubernetes target)."
    )

    @model_validator(mode="after")
    def _keeps_one(self) -> Backups:
        if seconds(self.keep) < seconds(self.every):
            raise ValueError(
                f"backups.keep ({self.keep}) is shorter than backups.every ({self.every}), "
                "so no backup would be kept; make keep at least as long as every"
            )
        return self


class Housekeeping(_Settings):
    """What the platform keeps of what every run adds, and for how long; the platform_housekeeping
    DAG removes the rest on its own."""

    task_logs: Duration = Field(
        default="30d", description="Task logs older than this are removed from the logs volume."
    )
    metadata: Duration = Field(
        default="90d",
        description="Run history older than this is removed from Airflow's database "
        "(airflow db clean).",
    )
    failed_task_containers: Duration = Field(
        default="7d",
        description="Failed task containers (docker) or pods (kubernetes) are kept this long "
        "for debugging, then removed; successful ones are removed at once.",
    )
    task_logs_storage_size: Quantity = Field(
        default="5Gi", description="Size of the task logs' volume (PVC, kubernetes target)."
    )


class Postgres(_Settings):
    """Airflow's metadata database and the warehouse."""

    external: bool = Field(
        default=False,
        description="Use an external or managed database (kubernetes target): its URL is the "
        "secret externalDatabaseUrl, and it keeps its own backups.",
    )
    storage_size: Quantity = Field(default="10Gi", description="Size of the data volume (PVC).")
    resources: Resources = Field(
        default=Resources(cpu="500m", memory="1Gi"), description="Its CPU and memory."
    )
    retain_on_destroy: bool = Field(
        default=True,
        description="Keep the data volume, the backups' volume and the task logs' volume when "
        "the stack is destroyed; set false only to really lose them.",
    )
    backups: Backups = Field(default=Backups(), description=Backups.__doc__)


class Registry(_Settings):
    """Where the platform's images are pushed and pulled."""

    host: str | None = Field(
        default=None,
        description="The registry's address. On docker the deployed registry is published at "
        "bindAddress:ports.registry and this may stay empty; required on kubernetes.",
    )
    external: bool = Field(
        default=False,
        description="Use a registry you already run at `host`; its password is the secret "
        "registryPassword.",
    )
    from_stack: KubernetesName | None = Field(
        default=None,
        description="Use the registry another stack of this project deploys, e.g. prod pulling "
        "exactly what dev pushed: its address and password are read from that stack's "
        "outputs (kubernetes target).",
    )
    username: KubernetesName = Field(default="etlstack", description="The registry's user.")
    storage_size: Quantity = Field(default="20Gi", description="Size of its storage volume.")
    tls_secret_name: KubernetesName | None = Field(
        default=None,
        description="Kubernetes: the TLS Secret of the registry's Ingress (kubelets pull over "
        "HTTPS); unset, the ingress controller's default certificate is served.",
    )


class Ports(_Settings):
    """Ports published on docker.bindAddress."""

    airflow: Port = Field(default=8080, description="Airflow's UI and REST API.")
    registry: Port = Field(default=5000, description="The registry.")
    postgres: Port | None = Field(
        default=None, description="PostgreSQL; not published unless a port is given."
    )


class Docker(_Settings):
    """The single-host target."""

    socket_path: str = Field(
        default="/var/run/docker.sock", description="The Docker Engine's socket on the host."
    )
    socket_gid: int | Literal["auto"] = Field(
        default="auto",
        description="The group that owns the socket; the proxy joins it instead of running as "
        "root. 'auto' reads it from the socket at `pulumi up`.",
    )
    bind_address: IPAddress = Field(
        default="127.0.0.1",
        description="Where ports are published: 127.0.0.1 (this machine only) or 0.0.0.0.",
    )
    ports: Ports = Field(default=Ports(), description="The published ports.")

    @model_validator(mode="after")
    def _ports_distinct(self) -> Docker:
        published = {k: v for k, v in self.ports.model_dump().items() if v is not None}
        seen: dict[int, str] = {}
        for name, port in published.items():
            if port in seen:
                raise ValueError(
                    f"ports.{name} and ports.{seen[port]} are both {port}; "
                    "give each published port its own number"
                )
            seen[port] = name
        return self


class Ingress(_Settings):
    """How the api-server and the registry are reached from outside the cluster."""

    enabled: bool = Field(default=False, description="Create the Ingress.")
    host: str | None = Field(default=None, description="Its host name; required when enabled.")
    class_name: str | None = Field(default=None, description="The IngressClass to use.")
    tls_secret_name: KubernetesName | None = Field(
        default=None, description="The TLS Secret it serves; unset: the controller's default."
    )
    controller_namespace: KubernetesName = Field(
        default="ingress-nginx",
        description="Where the ingress controller runs: the only namespace whose pods may "
        "reach the api-server and the registry from outside the platform (NetworkPolicies).",
    )

    @model_validator(mode="after")
    def _host_when_enabled(self) -> Ingress:
        if self.enabled and not self.host:
            raise ValueError("ingress.host is required when ingress.enabled is true")
        return self


SUPPORTED_KUBERNETES_VERSIONS = tuple(f"1.{minor}" for minor in range(25, 38))


class Kubernetes(_Settings):
    """The cluster target."""

    context: str = Field(description="The kubeconfig context of the cluster.")
    version: Literal[SUPPORTED_KUBERNETES_VERSIONS] = Field(  # type: ignore[valid-type]
        description="The cluster's Kubernetes version (1.25 to 1.37): objects are validated "
        "against its schemas."
    )
    namespace: KubernetesName = Field(default="etlstack", description="The platform's namespace.")
    pipelines_namespace: KubernetesName = Field(
        default="etlstack-pipelines", description="Where task pods run, apart from the platform."
    )
    storage_class: str | None = Field(
        default=None, description="The StorageClass of the volumes; unset: the cluster's default."
    )
    ingress: Ingress = Field(
        default=Ingress(), description="Ingress of the api-server and registry."
    )
    api_server_cidr: Cidr = Field(
        default="0.0.0.0/0",
        description="Where the Kubernetes API server is, for the egress NetworkPolicy of the "
        "pods that launch task pods; narrow it to the API server's address if you know it.",
    )
    pipeline_egress_cidrs: list[Cidr] = Field(
        default=[],
        description="Networks pipeline pods may reach besides the warehouse and DNS, e.g. the "
        "sources they extract from. Empty: nothing else.",
    )

    @model_validator(mode="after")
    def _namespaces_distinct(self) -> Kubernetes:
        if self.namespace == self.pipelines_namespace:
            raise ValueError(
                "namespace and pipelinesNamespace must differ: pipeline pods run apart "
                "from the platform"
            )
        return self


# Artifact names are the keys of the `artifacts` output: "airflow", "dags" and each
# pipeline's name.
ArtifactName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]


class _StackSettings(_Settings):
    """What every stack file may hold under `etlstack:`, whatever its target (secrets aside)."""

    images: Images = Field(default=Images(), description=Images.__doc__)
    build: Build = Field(default=Build(), description=Build.__doc__)
    airflow: Airflow = Field(default=Airflow(), description=Airflow.__doc__)
    postgres: Postgres = Field(default=Postgres(), description=Postgres.__doc__)
    registry: Registry = Field(default=Registry(), description=Registry.__doc__)
    housekeeping: Housekeeping = Field(default=Housekeeping(), description=Housekeeping.__doc__)
    artifacts: dict[ArtifactName, str] | None = Field(
        default=None,
        description="References pinned by `etlstack promote` from the stack that ran them: "
        "'airflow', 'dags' and each pipeline. When set, nothing is built: the stack deploys "
        "exactly these.",
    )

    @model_validator(mode="after")
    def _artifacts_pinned(self) -> _StackSettings:
        if self.artifacts is not None:
            check_artifacts(self.artifacts)
        return self


class DockerStackSettings(_StackSettings):
    """A stack on one Docker host."""

    target: Literal[Target.DOCKER] = Field(description="Where the platform runs.")
    docker: Docker = Field(default=Docker(), description=Docker.__doc__)

    @model_validator(mode="after")
    def _docker_rules(self) -> DockerStackSettings:
        if self.registry.from_stack is not None:
            raise ValueError("registry.fromStack is for the kubernetes target; remove it")
        if self.postgres.external:
            raise ValueError(
                "postgres.external is for the kubernetes target; on docker the stack runs PostgreSQL"
            )
        return self


class KubernetesStackSettings(_StackSettings):
    """A stack on a Kubernetes cluster."""

    target: Literal[Target.KUBERNETES] = Field(description="Where the platform runs.")
    kubernetes: Kubernetes = Field(description=Kubernetes.__doc__)

    @model_validator(mode="after")
    def _registry_rules(self) -> KubernetesStackSettings:
        if self.registry.from_stack is not None:
            if self.registry.host or self.registry.external:
                raise ValueError(
                    "registry.fromStack takes the registry's address and password from "
                    f"stack {self.registry.from_stack!r}; remove registry.host and "
                    "registry.external"
                )
        elif not self.registry.host:
            raise ValueError(
                "registry.host is required on kubernetes: the address the cluster pulls images from"
            )
        return self


# The target decides which block a stack file has: a docker stack cannot carry a
# kubernetes block, nor the other way round.
StackSettings = Annotated[
    DockerStackSettings | KubernetesStackSettings, Field(discriminator="target")
]
_STACK_SETTINGS: TypeAdapter[DockerStackSettings | KubernetesStackSettings] = TypeAdapter(
    StackSettings
)


def check_artifacts(artifacts: dict[str, str]) -> None:
    missing = [name for name in ("airflow", "dags") if name not in artifacts]
    if missing:
        raise ValueError(
            f"artifacts must pin {missing}; promote them from the stack that ran them "
            "with `etlstack promote <from> <to>`"
        )
    for name, reference in artifacts.items():
        if name == "dags":
            if not re.fullmatch(r"dags-[a-f0-9]{12}", reference):
                raise ValueError(
                    f"artifacts.dags {reference!r} is not a DAGs version ('dags-<12 hex>')"
                )
            continue
        try:
            _digest_pinned(reference)
        except ValueError as error:
            raise ValueError(f"artifacts.{name}: {error}") from None


@dataclass(frozen=True)
class Secrets:
    """Credentials from the stack file, as Pulumi secrets."""

    external_database_url: pulumi.Output[str] | None
    registry_password: pulumi.Output[str] | None


@dataclass(frozen=True)
class StackConfig:
    stack: str
    settings: DockerStackSettings | KubernetesStackSettings
    secrets: Secrets
    # The project root: where airflow_image/, dags/ and pipelines/ are.
    project_root: Path

    @property
    def target(self) -> Target:
        return self.settings.target

    @property
    def docker(self) -> Docker:
        assert isinstance(self.settings, DockerStackSettings), "read only on the docker target"
        return self.settings.docker

    @property
    def kubernetes(self) -> Kubernetes:
        assert isinstance(self.settings, KubernetesStackSettings), "read only on kubernetes"
        return self.settings.kubernetes


def _fix_hint(key: str) -> str:
    return f"fix it with: pulumi config set --path '{NAMESPACE}:{key}' <value>"


# What a setting that belongs to the other target means, in the user's words.
_TARGET_BLOCKS = {
    "docker": "the docker block is only read when target is docker; remove it",
    "kubernetes": "the kubernetes block is only read when target is kubernetes; remove it",
}


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        location = list(problem["loc"])
        # Errors inside one target's settings start with the target's tag.
        if location and location[0] in (Target.DOCKER.value, Target.KUBERNETES.value):
            location = location[1:]
        key = ".".join(str(part) for part in location)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_not_found":
            lines.append(f"{NAMESPACE}:target: required but not set; {_fix_hint('target')}")
        elif problem["type"] == "union_tag_invalid":
            lines.append(
                f"{NAMESPACE}:target: {problem['input'].get('target')!r} is not a target; "
                f"it must be 'docker' or 'kubernetes'; {_fix_hint('target')}"
            )
        elif problem["type"] == "extra_forbidden" and key in _TARGET_BLOCKS:
            lines.append(f"{NAMESPACE}: {_TARGET_BLOCKS[key]}")
        elif problem["type"] == "missing" and key == "kubernetes":
            lines.append(
                f"{NAMESPACE}: target kubernetes needs the kubernetes block; set at least "
                "kubernetes.context and kubernetes.version"
            )
        elif problem["type"] == "extra_forbidden":
            lines.append(
                f"{NAMESPACE}:{key}: unknown setting; remove it or check its spelling "
                f"(every setting is listed in docs/settings.md)"
            )
        elif problem["type"] == "missing":
            lines.append(f"{NAMESPACE}:{key}: required but not set; {_fix_hint(key)}")
        elif problem["type"] == "value_error":
            # The project's own checks: their messages already say how to fix it.
            lines.append(f"{NAMESPACE}:{key}: {message}" if key else f"{NAMESPACE}: {message}")
        elif key:
            given = problem.get("input")
            shown = f" (got {given!r})" if not isinstance(given, dict | list) else ""
            lines.append(f"{NAMESPACE}:{key}: {message}{shown}; {_fix_hint(key)}")
        else:
            lines.append(f"{NAMESPACE}: {message}")
    return "invalid stack configuration:\n  " + "\n  ".join(lines)


def parse_settings(raw: Mapping[str, Any]) -> DockerStackSettings | KubernetesStackSettings:
    """Validate the `etlstack:` settings of a stack (keys without the namespace)."""
    try:
        return _STACK_SETTINGS.validate_python(dict(raw))
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error)) from None


def _resolve_socket_gid(docker: Docker, offline: bool) -> Docker:
    if docker.socket_gid != "auto":
        return docker
    try:
        gid = os.stat(docker.socket_path).st_gid
    except OSError:
        if offline:
            # A review needs no engine: show what `pulumi up` will read instead.
            return docker.model_copy(
                update={"socket_gid": f"<group of {docker.socket_path}, read at pulumi up>"}
            )
        raise ConfigError(
            f"{NAMESPACE}:docker.socketGid is 'auto' but the Docker socket "
            f"{docker.socket_path!r} cannot be read; start Docker, or set "
            f"{NAMESPACE}:docker.socketPath, or give the group id with "
            f"pulumi config set --path '{NAMESPACE}:docker.socketGid' <gid>"
        ) from None
    return docker.model_copy(update={"socket_gid": gid})


def load_config(
    stack: str,
    raw: Mapping[str, Any],
    secret_keys: set[str],
    project_root: Path,
    *,
    offline: bool = False,
) -> StackConfig:
    """Build the typed configuration of `stack` from its raw `etlstack:` settings.

    `raw` maps keys without the namespace to values as Pulumi hands them over
    (strings, or objects already parsed from JSON); `secret_keys` names the keys that
    the stack file holds encrypted. `offline` (a render) reads nothing from the host
    that `pulumi up` would read there, and shows what it would read instead.
    """
    plain = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    settings = parse_settings(plain)
    if isinstance(settings, DockerStackSettings):
        settings = settings.model_copy(
            update={"docker": _resolve_socket_gid(settings.docker, offline)}
        )

    for key in SECRET_KEYS:
        if key in raw and key not in secret_keys:
            raise ConfigError(
                f"{NAMESPACE}:{key} is stored in plain text; remove it and set it again with "
                f"pulumi config set --secret {NAMESPACE}:{key} <value>"
            )

    def secret(key: str, needed: bool, why: str) -> pulumi.Output[str] | None:
        if key in raw:
            return pulumi.Output.secret(str(raw[key]))
        if needed:
            raise ConfigError(
                f"{NAMESPACE}:{key} is required {why}; set it with "
                f"pulumi config set --secret {NAMESPACE}:{key} <value>"
            )
        return None

    secrets = Secrets(
        external_database_url=secret(
            "externalDatabaseUrl", settings.postgres.external, "because postgres.external is true"
        ),
        registry_password=secret(
            "registryPassword", settings.registry.external, "because registry.external is true"
        ),
    )
    return StackConfig(stack=stack, settings=settings, secrets=secrets, project_root=project_root)


def _parse_raw_value(value: str) -> Any:
    """Pulumi hands structured settings over as JSON text and scalars as plain text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, dict | list) else value


def namespaced_settings(flat: Mapping[str, str]) -> dict[str, Any]:
    """The `etlstack:` settings of a flat config map (as the engine hands it to a program):
    keys without the namespace, structured values parsed."""
    prefix = f"{NAMESPACE}:"
    return {
        key.removeprefix(prefix): _parse_raw_value(value)
        for key, value in flat.items()
        if key.startswith(prefix)
    }


def load_from_pulumi(project_root: Path, *, offline: bool = False) -> StackConfig:
    """Read this stack's `etlstack:` settings from the running Pulumi engine."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{NAMESPACE}:"
    everything: dict[str, str] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = namespaced_settings(everything)
    secret_keys = {
        key.removeprefix(prefix)
        for key in everything
        if key.startswith(prefix) and runtime_config.is_config_secret(key)
    }
    return load_config(pulumi.get_stack(), raw, secret_keys, project_root, offline=offline)
