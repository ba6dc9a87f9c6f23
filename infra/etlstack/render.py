"""Run the program under Pulumi's mock runtime and see what `pulumi up` would create.

No Pulumi engine or provider runs here: the program is evaluated in-process, every
resource it declares is recorded with its inputs and dependencies, and the stack
outputs are captured. `etlstack render`, the tests and the end-to-end harness all
go through `evaluate()`, so they look at exactly what the program declares.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets as token_source
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from etlstack.config import NAMESPACE, ConfigError, StackConfig, load_from_pulumi

SECRET_PLACEHOLDER = "[secret]"
PROJECT = "etlstack"


@dataclass
class Resource:
    """One resource the program declares, as the engine would receive it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    parent: str
    dependencies: list[str]
    provider: str
    custom: bool
    # Resource options the engine acts on when it updates or deletes.
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    # What a deployed stack may know this resource as (its aliases), each as (name, type)
    # in the same parent: the engine adopts a former resource of that name and type.
    aliases: list[tuple[str, str]] = field(default_factory=list)

    def alias_urns(self) -> list[str]:
        """The URN each alias stands for: this one with the former name and type."""
        # urn:pulumi:<stack>::<project>::<parent types>$<type>::<name>
        head, qualified_type, _ = self.urn.rsplit("::", 2)
        parent_types, _, _ = qualified_type.rpartition("$")
        prefix = f"{parent_types}$" if parent_types else ""
        return [f"{head}::{prefix}{type_}::{name}" for name, type_ in self.aliases]


@dataclass
class Evaluation:
    stack: str
    config: StackConfig
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Every password, key and hash the mock providers generated during the evaluation.
    generated_secrets: set[str] = field(default_factory=set)

    def by_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Resource:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(found) != 1:
            known = sorted(r.name for r in self.by_type(type_))
            raise KeyError(f"{len(found)} {type_} named {name!r}; there are {known}")
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)


def _placeholder_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


class PlatformMocks(pulumi.runtime.Mocks):
    """Stands in for the providers: returns what each would compute.

    With `real_secrets`, generated passwords and keys are real random values (the
    end-to-end harness deploys with them); otherwise they are fixed placeholders so
    renders are reproducible. With a `secret_seed` too, each resource's values are
    derived from the seed and its name, so a platform created again from the same seed
    opens the data its previous self left (as secrets kept in a stack's state would).
    """

    def __init__(
        self,
        real_secrets: bool,
        project_root: Path,
        secret_seed: bytes | None = None,
        referenced: Mapping[str, Evaluation] | None = None,
    ) -> None:
        self.real_secrets = real_secrets
        self.project_root = project_root
        self.secret_seed = secret_seed
        # The stacks this one reads outputs of, evaluated before it (see evaluate()).
        self.referenced = dict(referenced or {})
        self.generated: set[str] = set()

    def _random_bytes(self, count: int, label: str) -> bytes:
        if self.secret_seed is None:
            return token_source.token_bytes(count)
        stream = b""
        while len(stream) < count:
            block = f"{label}:{len(stream)}".encode()
            stream += hmac.new(self.secret_seed, block, hashlib.sha256).digest()
        return stream[:count]

    def _referenced_stack_outputs(self, stack: str) -> tuple[dict[str, Any], list[str]]:
        """What another stack of this project exports: the outputs its own program
        exported when it was evaluated, and which of them are secret."""
        evaluation = self.referenced.get(stack)
        if evaluation is None:
            raise ConfigError(
                f"the program references stack {stack!r}, which the stack's settings do not "
                "name (registry.fromStack), so it was not evaluated first"
            )
        self.generated |= evaluation.generated_secrets
        secret = sorted(name for name, value in evaluation.outputs.items() if is_secret(value))
        return reveal(evaluation.outputs), secret

    def _random_text(self, length: int, label: str) -> str:
        if not self.real_secrets:
            return "p" * length
        alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        # Bytes past the last whole multiple of the alphabet are dropped: no bias.
        usable = 256 - 256 % len(alphabet)
        text = ""
        while len(text) < length:
            chunk = self._random_bytes(length * 2, f"{label}:{len(text)}")
            text += "".join(alphabet[b % len(alphabet)] for b in chunk if b < usable)
        return text[:length]

    def _bcrypt(self, password: str) -> str:
        if self.real_secrets:
            import bcrypt

            return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
        return "$2y$10$" + "b" * 53

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            # Arrives as a read of the stack named `organization/project/stack`.
            stack = str(args.inputs.get("name") or args.resource_id).rsplit("/", 1)[-1]
            outputs, secret_names = self._referenced_stack_outputs(stack)
            state = {
                "name": args.inputs.get("name") or args.resource_id,
                "outputs": outputs,
                "secretOutputNames": secret_names,
            }
        elif args.typ == "random:index/randomPassword:RandomPassword":
            result = self._random_text(int(args.inputs["length"]), args.name)
            bcrypt_hash = self._bcrypt(result)
            self.generated |= {result, bcrypt_hash}
            state["result"] = rpc.wrap_rpc_secret(result)
            state["bcryptHash"] = rpc.wrap_rpc_secret(bcrypt_hash)
        elif args.typ == "random:index/randomId:RandomId":
            count = int(args.inputs["byteLength"])
            raw = self._random_bytes(count, args.name) if self.real_secrets else bytes(count)
            import base64

            state["b64Url"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            state["b64Std"] = base64.b64encode(raw).decode()
            state["hex"] = raw.hex()
            self.generated |= {state["b64Url"], state["b64Std"], state["hex"]}
        elif args.typ == "docker:index/image:Image":
            name = args.inputs["imageName"]
            state["repoDigest"] = f"{name.rsplit(':', 1)[0]}@{_placeholder_digest(name)}"
            state["imageName"] = name
        elif args.typ.startswith("kubernetes:") and "apiVersion" in state:
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault(
                "name", f"{args.name}-{hashlib.sha1(args.name.encode()).hexdigest()[:8]}"
            )
            state["metadata"] = metadata
        return f"{args.name}-id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        # The program calls no provider functions; an empty answer makes any new one visible.
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping what the real engine would use to order work."""

    def __init__(self, mocks: PlatformMocks) -> None:
        super().__init__(mocks)
        self.lock = threading.Lock()
        self.registrations: list[tuple[Any, str]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            with self.lock:
                self.registrations.append((request, response.urn))
        return response


async def _stack_outputs(evaluation: Evaluation) -> None:
    """Resolve the exported outputs, keeping which of them are secret."""
    root = pulumi.runtime.settings.get_root_resource()
    for name, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        resolved = await output.future()
        evaluation.outputs[name] = (
            rpc.wrap_rpc_secret(resolved) if await output.is_secret() else resolved
        )


def stack_file_config(project_root: Path, stack: str) -> tuple[dict[str, str], list[str]]:
    """Turn `Pulumi.<stack>.yaml` into the flat string map the engine hands a program."""
    path = project_root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in project_root.glob("Pulumi.*.yaml"))
        raise ConfigError(f"no stack file {path.name}; the stacks here are {known}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path.name} is not valid YAML: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise ConfigError(
            f"{path.name} must be a mapping with a `config:` mapping of settings "
            "(`etlstack:target: docker`, ...); see docs/settings.md"
        )
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if ":" not in key:
            key = f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Encrypted values need the Pulumi CLI to decrypt; a render stands in for them.
            config[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, bool):
            config[key] = "true" if value else "false"
        elif isinstance(value, dict | list):
            config[key] = json.dumps(value)
        else:
            config[key] = str(value)
    return config, secret_keys


def _referenced_stacks(config: Mapping[str, str]) -> list[str]:
    """The stacks whose outputs this one reads (registry.fromStack), from its flat config."""
    registry = json.loads(config.get(f"{NAMESPACE}:registry", "{}"))
    return [registry["fromStack"]] if registry.get("fromStack") else []


def evaluate(
    stack: str,
    project_root: Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    real_secrets: bool = False,
    program: Callable[[StackConfig], Any] | None = None,
    as_stack: str | None = None,
    secret_seed: bytes | None = None,
    offline: bool = True,
) -> Evaluation:
    """Evaluate the program for `stack` under the mock runtime.

    `overrides` replaces top-level `etlstack:` settings (values as they would be
    written in the stack file) without touching the file. `as_stack` evaluates that
    stack file under another stack name (whose resource names it then gets), as a
    second stack with the same settings would be. With `secret_seed`, the real secrets
    are the same at every evaluation with that seed (see PlatformMocks). `offline`
    (a review) reads nothing from this machine that `pulumi up` reads, such as the
    Docker socket's group; an evaluation that will be deployed passes False.
    """
    from etlstack.program import build

    config, secret_keys = stack_file_config(project_root, stack)
    for key, value in (overrides or {}).items():
        full_key = f"{NAMESPACE}:{key}"
        config[full_key] = json.dumps(value) if isinstance(value, dict | list) else str(value)

    # A stack reference answers with the referenced stack's real outputs: that stack is
    # evaluated first, from its own file (the runtime settings are global, so not during).
    referenced = {
        name: evaluate(name, project_root, real_secrets=real_secrets, secret_seed=secret_seed)
        for name in _referenced_stacks(config)
    }
    mocks = PlatformMocks(real_secrets, project_root, secret_seed, referenced)
    # A fresh root stack per evaluation, so outputs of an earlier one never leak in.
    pulumi.runtime.settings.ROOT.set(None)
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=as_stack or stack, preview=False, monitor=monitor
    )
    pulumi.runtime.set_all_config(config, secret_keys)

    # The configuration is validated before any resource exists, exactly as in `pulumi up`.
    stack_config = load_from_pulumi(project_root, offline=offline)
    evaluation = Evaluation(stack=as_stack or stack, config=stack_config)

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        (program or build)(stack_config)
        return pulumi.Output.from_input(asyncio.ensure_future(_stack_outputs(evaluation)))

    run()
    evaluation.generated_secrets = set(mocks.generated)
    seen: set[tuple[str, str, str]] = set()
    for request, urn in monitor.registrations:
        identity = (request.type, request.name, request.parent)
        if identity in seen:
            raise AssertionError(f"resource declared twice: {request.type} {request.name!r}")
        seen.add(identity)
        evaluation.resources.append(
            Resource(
                type=request.type,
                name=request.name,
                urn=urn,
                inputs=rpc.deserialize_properties(request.object),
                parent=request.parent,
                dependencies=sorted(set(request.dependencies)),
                provider=request.provider,
                custom=bool(request.custom),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                aliases=[_former_identity(alias, request) for alias in request.aliases],
            )
        )
    return evaluation


def _former_identity(alias: Any, request: Any) -> tuple[str, str]:
    """The (name, type) an alias spec names, its own where the spec leaves one out.

    The program's aliases only rename or retype a resource in place; an alias by URN, or
    to another parent, stack or project, would stand for a URN this record cannot tell.
    """
    spec = alias.spec
    if alias.urn or spec.parentUrn or spec.noParent or spec.stack or spec.project:
        raise AssertionError(f"{request.type} {request.name!r}: an alias to elsewhere: {alias}")
    return (spec.name or request.name, spec.type or request.type)


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed (for the harness, never for files)."""
    if rpc.is_rpc_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def mask(value: Any) -> Any:
    """The value with every secret replaced by a placeholder: safe to write down."""
    if rpc.is_rpc_secret(value):
        hidden = rpc.unwrap_rpc_secret(value)
        # A secret mapping (a Secret's data) keeps its keys, so the file still shows
        # which values exist and still validates.
        if isinstance(hidden, dict):
            return {k: SECRET_PLACEHOLDER for k in hidden}
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def kubernetes_manifest(resource: Resource, evaluation: Evaluation) -> dict[str, Any]:
    """The object a Kubernetes resource would send to the API server, secrets masked."""
    manifest = mask(resource.inputs)
    provider_urn = resource.provider.rsplit("::", 1)[0] if resource.provider else ""
    provider_namespace = next(
        (r.inputs.get("namespace") for r in evaluation.resources if r.urn == provider_urn), None
    )
    metadata = manifest.setdefault("metadata", {})
    if provider_namespace and "namespace" not in metadata and _is_namespaced(manifest["kind"]):
        metadata["namespace"] = provider_namespace
    return manifest


_CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
}


def _is_namespaced(kind: str) -> bool:
    return kind not in _CLUSTER_SCOPED


def _file_name(resource: Resource) -> str:
    kind = resource.type.split(":")[-1]
    return f"{kind}-{resource.name}".replace("/", "_")


def write(evaluation: Evaluation, out: Path) -> list[Path]:
    """Write a render to `out`, replacing what was there; secrets are masked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    written: list[Path] = []
    try:
        for resource in evaluation.resources:
            if resource.type.startswith("kubernetes:") and "apiVersion" in resource.inputs:
                path = staging / "kubernetes" / f"{_file_name(resource)}.yaml"
                body = yaml.safe_dump(kubernetes_manifest(resource, evaluation), sort_keys=False)
            elif resource.type.startswith("docker:") and resource.custom:
                path = staging / "docker" / f"{_file_name(resource)}.json"
                body = json.dumps(
                    {"type": resource.type, "name": resource.name, "inputs": mask(resource.inputs)},
                    indent=2,
                    sort_keys=True,
                )
            else:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body + "\n")
            written.append(out / path.relative_to(staging))
        (staging / "outputs.json").write_text(
            json.dumps(mask(evaluation.outputs), indent=2, sort_keys=True) + "\n"
        )
        written.append(out / "outputs.json")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
