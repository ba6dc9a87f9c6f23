"""Create what the program declares on a real Docker Engine.

The Pulumi engine and its providers cannot run here, so this applier stands in for
them: it takes the resources `render.evaluate` records (exactly what `pulumi up`
would receive: types, inputs with their secrets, dependency URNs) and creates them
through the Docker API in dependency order, the way pulumi-docker would. Every input
key is mapped explicitly; a key this module does not know stops the run, so the
harness can never silently drop something the program declares.

Secrets are revealed in memory only. `Redactor` removes them from anything the
harness writes down (container logs kept as artifacts).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import tarfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from graphlib import CycleError, TopologicalSorter
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import docker
import docker.errors
import docker.types
import durationpy
import tenacity

from etlstack import render

log = logging.getLogger("e2e")

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
CONTAINER = "docker:index/container:Container"
# Resources that only exist in Pulumi's state: nothing to create on the engine.
STATE_ONLY = ("random:", "pulumi:providers:")


class DeployError(Exception):
    """Creating a resource failed; the message is free of secrets."""


class UnsupportedInput(Exception):
    """The program declares something this applier does not know how to create."""


def go_duration_ns(value: str) -> int:
    """A Go duration ("1m30s", "500ms", "0s"), as the provider takes it, in nanoseconds."""
    if not value.strip():
        return 0
    try:
        duration = durationpy.from_str(value.strip())
    except durationpy.DurationError:
        raise UnsupportedInput(f"{value!r} is not a Go duration") from None
    # timedelta keeps microseconds, finer than any healthcheck interval.
    return duration // timedelta(microseconds=1) * 1000


def _placeholder(image_name: str) -> str:
    """The digest reference the mock runtime gives an Image (render.PlatformMocks)."""
    repository = image_name.rsplit(":", 1)[0]
    return f"{repository}@sha256:{hashlib.sha256(image_name.encode()).hexdigest()}"


def _replace(value: Any, substitutions: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in substitutions.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _replace(v, substitutions) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, substitutions) for v in value]
    return value


class Redactor:
    """Replaces every secret value the program declares with a placeholder."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def collect(self, value: Any, inside_secret: bool = False) -> None:
        if render.is_secret(value):
            inside_secret = True
            value = render.reveal(value)
        if isinstance(value, dict):
            for item in value.values():
                self.collect(item, inside_secret)
        elif isinstance(value, list):
            for item in value:
                self.collect(item, inside_secret)
        elif isinstance(value, str) and inside_secret:
            self.add(value)

    def add(self, text: str) -> None:
        candidates = {text, text.partition("=")[2]}
        for candidate in list(candidates):
            if "://" in candidate:
                password = urllib.parse.urlsplit(candidate).password
                if password:
                    candidates.add(urllib.parse.unquote(password))
        # Short values (ports, names) would blank out unrelated text; generated secrets
        # are long and have no spaces.
        self.values |= {c for c in candidates if len(c) >= 12 and not re.search(r"\s", c)}

    def __call__(self, text: str) -> str:
        for secret in sorted(self.values, key=len, reverse=True):
            text = text.replace(secret, "[secret]")
        return text


@dataclass
class Deployment:
    """What the applier created, by name, and what the stack outputs resolve to."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # image name -> repo@digest
    # Revealed secrets (the admin password): never in a repr.
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)


def _needs(evaluation: render.Evaluation) -> tuple[list[render.Resource], dict[str, set[str]]]:
    """The custom resources, and for each the custom resources it must wait for.

    A dependency on a component means a dependency on every custom resource under
    it, as the Pulumi engine expands it.
    """
    by_urn = {r.urn: r for r in evaluation.resources}
    children: dict[str, list[str]] = {}
    for resource in evaluation.resources:
        children.setdefault(resource.parent, []).append(resource.urn)

    def customs_under(urn: str) -> set[str]:
        found: set[str] = set()
        for child in children.get(urn, []):
            if by_urn[child].custom:
                found.add(child)
            found |= customs_under(child)
        return found

    def expand(urn: str) -> set[str]:
        resource = by_urn.get(urn)
        if resource is None:
            return set()
        return {urn} if resource.custom else customs_under(urn)

    customs = [r for r in evaluation.resources if r.custom]
    needs: dict[str, set[str]] = {}
    for resource in customs:
        wanted: set[str] = set()
        for dependency in resource.dependencies:
            wanted |= expand(dependency)
        if resource.parent in by_urn and by_urn[resource.parent].custom:
            wanted.add(resource.parent)
        wanted.discard(resource.urn)
        needs[resource.urn] = wanted
    return customs, needs


def _schedule(
    evaluation: render.Evaluation,
) -> tuple[dict[str, render.Resource], TopologicalSorter[str]]:
    """The custom resources by URN, and their dependency graph, prepared.

    A dependency cycle fails here, before anything is created.
    """
    customs, needs = _needs(evaluation)
    graph: TopologicalSorter[str] = TopologicalSorter({r.urn: needs[r.urn] for r in customs})
    by_urn = {r.urn: r for r in customs}
    try:
        graph.prepare()
    except CycleError as error:
        cycle = " -> ".join(by_urn[urn].name for urn in error.args[1])
        raise RuntimeError(f"dependency cycle: {cycle}") from None
    return by_urn, graph


def _stable(urns: Iterable[str]) -> list[str]:
    # The mock runtime records resources as their registrations complete, which is not
    # always the order the program declared them; URNs give every run the same order.
    return sorted(urns)


def order(evaluation: render.Evaluation) -> list[render.Resource]:
    """The custom resources in an order that respects every dependency.

    Each ready set after what it waits for; within one, by URN, so every run has the same order.
    """
    by_urn, graph = _schedule(evaluation)
    ordered: list[render.Resource] = []
    while graph.is_active():
        ready = _stable(graph.get_ready())
        ordered += [by_urn[urn] for urn in ready]
        graph.done(*ready)
    return ordered


class _Keys:
    """Tracks which input keys a handler used, so unknown ones fail loudly."""

    def __init__(self, where: str, inputs: dict[str, Any]) -> None:
        self.where = where
        self.inputs = inputs
        self.used: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.inputs.get(key, default)

    def accept(self, *keys: str) -> None:
        self.used.update(keys)

    def check(self) -> None:
        unknown = sorted(set(self.inputs) - self.used)
        if unknown:
            raise UnsupportedInput(
                f"{self.where}: the applier does not handle the input(s) {unknown}; "
                "map them in tests/e2e/deploy.py"
            )


def _nested(where: str, value: dict[str, Any], handled: Iterable[str]) -> dict[str, Any]:
    unknown = sorted(set(value) - set(handled))
    if unknown:
        raise UnsupportedInput(
            f"{where}: the applier does not handle {unknown}; map them in tests/e2e/deploy.py"
        )
    return value


def _num(value: Any) -> int:
    return int(float(value))


class Applier:
    def __init__(
        self,
        client: docker.DockerClient,
        evaluation: render.Evaluation,
        project_root: Path,
        progress: Callable[[str], None] = log.info,
    ) -> None:
        self.client = client
        self.evaluation = evaluation
        self.project_root = project_root
        self.progress = progress
        self.deployment = Deployment()
        self.substitutions: dict[str, str] = {}
        self.redact = Redactor()
        for resource in evaluation.resources:
            self.redact.collect(resource.inputs)
        self.redact.collect(evaluation.outputs)

    # Names the program declares: what `destroy` removes, even after a failed apply.
    def declared(self, type_: str) -> list[str]:
        return [
            str(render.reveal(r.inputs["name"]))
            for r in self.evaluation.resources
            if r.type == type_ and "name" in r.inputs
        ]

    def declared_images(self) -> list[str]:
        return [
            str(r.inputs["imageName"])
            for r in self.evaluation.by_type(IMAGE)
            if "imageName" in r.inputs
        ]

    def apply(self) -> Deployment:
        """Create everything; like the Pulumi engine, independent resources in parallel."""
        by_urn, graph = _schedule(self.evaluation)  # fails on a cycle before anything is created
        running: dict[Future[None], render.Resource] = {}
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="apply") as pool:
            while graph.is_active():
                for urn in _stable(graph.get_ready()):
                    running[pool.submit(self._create, by_urn[urn])] = by_urn[urn]
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    resource = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        # Let what already runs finish, then stop: no half-created objects.
                        wait(running)
                        self._fail(resource, error)
                    graph.done(resource.urn)
        self.deployment.outputs = _replace(
            render.reveal(self.evaluation.outputs), self.substitutions
        )
        return self.deployment

    def _fail(self, resource: render.Resource, error: BaseException) -> NoReturn:
        """Stop with a message and a traceback that hold no secret.

        The original exception is not chained: a test report prints the arguments of
        every frame, and the Docker SDK's frames hold the revealed environment.
        """
        trace = self.redact("".join(traceback.format_exception(error)))
        log.error("creating %s failed:\n%s", resource.name, trace)
        if isinstance(error, UnsupportedInput):
            raise UnsupportedInput(self.redact(str(error))) from None
        raise DeployError(
            self.redact(f"creating {resource.type} {resource.name} failed: {error}")
        ) from None

    def _create(self, resource: render.Resource) -> None:
        inputs = _replace(render.reveal(resource.inputs), self.substitutions)
        started = time.monotonic()
        if resource.type.startswith(STATE_ONLY):
            self._provider(resource, inputs)
            return
        handler = {
            NETWORK: self._network,
            VOLUME: self._volume,
            REMOTE_IMAGE: self._remote_image,
            IMAGE: self._image,
            CONTAINER: self._container,
        }.get(resource.type)
        if handler is None:
            raise UnsupportedInput(
                f"{resource.type} {resource.name!r}: the applier cannot create this type; "
                "add it to tests/e2e/deploy.py"
            )
        handler(resource, inputs)
        self.progress(
            f"created {resource.type.split(':')[-1]} {resource.name} "
            f"({time.monotonic() - started:.1f}s)"
        )

    def _provider(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        # An explicit Docker provider must point at this engine, the one the harness uses.
        if resource.type == "pulumi:providers:docker":
            host = inputs.get("host")
            if host not in (None, "", "unix:///var/run/docker.sock"):
                raise UnsupportedInput(f"docker provider {resource.name!r} points at {host!r}")

    def _network(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        keys = _Keys(f"Network {resource.name}", inputs)
        labels = {item["label"]: item["value"] for item in keys.get("labels") or []}
        name = keys.get("name")
        self.client.networks.create(
            name,
            driver=keys.get("driver") or "bridge",
            internal=bool(keys.get("internal", False)),
            attachable=bool(keys.get("attachable", False)),
            options=keys.get("options"),
            labels=labels or None,
            check_duplicate=True,
        )
        keys.check()
        self.deployment.networks.append(name)

    def _volume(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        keys = _Keys(f"Volume {resource.name}", inputs)
        labels = {item["label"]: item["value"] for item in keys.get("labels") or []}
        name = keys.get("name")
        self.client.volumes.create(
            name,
            driver=keys.get("driver") or "local",
            driver_opts=keys.get("driverOpts"),
            labels=labels or None,
        )
        keys.check()
        self.deployment.volumes.append(name)

    def _remote_image(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        keys = _Keys(f"RemoteImage {resource.name}", inputs)
        name = keys.get("name")
        # Whether the provider deletes the image on destroy; the harness keeps images.
        keys.accept("keepLocally")
        keys.check()
        try:
            self.client.images.get(name)
        except docker.errors.ImageNotFound:
            raise RuntimeError(
                f"RemoteImage {resource.name}: {name!r} is not on this engine and no registry "
                "can be reached; build its stand-in (tests/e2e/base_images.py)"
            ) from None

    def _image(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        keys = _Keys(f"Image {resource.name}", inputs)
        image_name = keys.get("imageName")
        build = _nested(
            f"Image {resource.name} build",
            keys.get("build") or {},
            (
                "context",
                "dockerfile",
                "platform",
                "builderVersion",
                "args",
                "cacheFrom",
                "target",
                "network",
                "addHosts",
            ),
        )
        registry = keys.get("registry") or {}
        skip_push = bool(keys.get("skipPush", False))
        keys.accept("buildOnPreview")
        keys.check()
        if build.get("builderVersion") not in (None, "BuilderV1"):
            raise UnsupportedInput(
                f"Image {resource.name}: builderVersion {build['builderVersion']!r}; only the "
                "classic builder (BuilderV1) exists on this engine"
            )
        context = (Path.cwd() / build.get("context", ".")).resolve()
        # As the provider reads them: paths relative to the working directory (which
        # the program shares with it), and without a Dockerfile path, the context's own.
        dockerfile = (
            Path.cwd() / build["dockerfile"] if build.get("dockerfile") else context / "Dockerfile"
        ).resolve()
        cache_from = (build.get("cacheFrom") or {}).get("images")
        hosts = {
            entry.split(":", 1)[0]: entry.split(":", 1)[1] for entry in build.get("addHosts") or []
        }
        self.progress(f"building {image_name} from {context.relative_to(self.project_root)}")
        steps = 0
        for chunk in self.client.api.build(
            path=str(context),
            # A Dockerfile outside the context is sent along with it, as the provider
            # (and the docker CLI) do; the SDK does that for an absolute path.
            dockerfile=(
                str(dockerfile.relative_to(context))
                if dockerfile.is_relative_to(context)
                else str(dockerfile)
            ),
            tag=image_name,
            buildargs=build.get("args") or {},
            platform=build.get("platform"),
            target=build.get("target"),
            network_mode=build.get("network"),
            extra_hosts=hosts or None,
            cache_from=cache_from,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise RuntimeError(
                    f"building {image_name} failed: {self.redact(str(chunk['error']))}"
                )
            line = str(chunk.get("stream", "")).strip()
            if line.startswith("Step "):
                steps += 1
                self.progress(f"  {self.redact(line)[:160]}")
        if skip_push:
            return
        self._push(resource.name, image_name, registry)

    def _push(self, name: str, image_name: str, registry: dict[str, Any]) -> None:
        _nested(f"Image {name} registry", registry, ("server", "username", "password"))
        repository, tag = image_name.rsplit(":", 1)
        auth = {"username": registry.get("username"), "password": registry.get("password")}
        digest = None
        self.progress(f"pushing {image_name}")
        for chunk in self.client.api.push(
            repository, tag=tag, auth_config=auth, stream=True, decode=True
        ):
            if "error" in chunk:
                raise RuntimeError(f"pushing {image_name} failed: {self.redact(chunk['error'])}")
            digest = (chunk.get("aux") or {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"pushing {image_name} reported no digest")
        placeholder = _placeholder(image_name)
        # The render must name this placeholder somewhere (at least in the artifacts
        # output), or the substitution below would silently replace nothing.
        if placeholder not in repr(render.reveal(self.evaluation.outputs)):
            raise RuntimeError(
                f"the render does not reference {image_name} as {placeholder}; "
                "render.PlatformMocks and tests/e2e/deploy.py disagree on placeholders"
            )
        real = f"{repository}@{digest}"
        self.substitutions[placeholder] = real
        self.deployment.images[image_name] = real
        self.progress(f"pushed {real}")

    def _container(self, resource: render.Resource, inputs: dict[str, Any]) -> None:
        where = f"Container {resource.name}"
        keys = _Keys(where, inputs)
        name = keys.get("name")
        image = keys.get("image")
        host: dict[str, Any] = {}
        create: dict[str, Any] = {}

        if (command := keys.get("command")) is not None:
            create["command"] = command
        if (entrypoint := keys.get("entrypoints")) is not None:
            create["entrypoint"] = entrypoint
        for key, target in (
            ("user", "user"),
            ("workingDir", "working_dir"),
            ("hostname", "hostname"),
            ("domainname", "domainname"),
            ("stopSignal", "stop_signal"),
        ):
            if (value := keys.get(key)) is not None:
                create[target] = value
        if (timeout := keys.get("stopTimeout")) is not None:
            create["stop_timeout"] = _num(timeout)
        create["environment"] = list(keys.get("envs") or [])
        create["labels"] = {item["label"]: item["value"] for item in keys.get("labels") or []}
        create["tty"] = bool(keys.get("tty", False))
        create["stdin_open"] = bool(keys.get("stdinOpen", False))

        ports: dict[str, Any] = {}
        for port in keys.get("ports") or []:
            port = _nested(f"{where} ports", port, ("internal", "external", "ip", "protocol"))
            key = f"{_num(port['internal'])}/{port.get('protocol', 'tcp')}"
            # The provider publishes on 0.0.0.0 unless the program names an address.
            binding = (
                port.get("ip", "0.0.0.0"),
                _num(port["external"]) if "external" in port else None,
            )
            ports.setdefault(key, []).append(binding)
        if ports:
            # (port, protocol) pairs: docker-py appends "/tcp" to a "port/proto" string.
            create["ports"] = [tuple(key.split("/")) for key in ports]
            host["port_bindings"] = ports

        binds: list[str] = []
        for volume in keys.get("volumes") or []:
            volume = _nested(
                f"{where} volumes", volume, ("volumeName", "hostPath", "containerPath", "readOnly")
            )
            source = volume.get("volumeName") or volume.get("hostPath")
            if not source:
                raise UnsupportedInput(f"{where}: a volume needs volumeName or hostPath")
            mode = "ro" if volume.get("readOnly") else "rw"
            binds.append(f"{source}:{volume['containerPath']}:{mode}")
        if binds:
            host["binds"] = binds

        mounts = []
        for mount in keys.get("mounts") or []:
            mount = _nested(
                f"{where} mounts",
                mount,
                (
                    "type",
                    "source",
                    "target",
                    "readOnly",
                    "bindOptions",
                    "volumeOptions",
                    "tmpfsOptions",
                ),
            )
            propagation = (mount.get("bindOptions") or {}).get("propagation")
            volume_options = mount.get("volumeOptions") or {}
            _nested(f"{where} mounts volumeOptions", volume_options, ("noCopy",))
            tmpfs = _nested(
                f"{where} mounts tmpfsOptions",
                mount.get("tmpfsOptions") or {},
                ("sizeBytes", "mode"),
            )
            mounts.append(
                docker.types.Mount(
                    target=mount["target"],
                    source=mount.get("source"),
                    type=mount["type"],
                    read_only=bool(mount.get("readOnly", False)),
                    propagation=propagation,
                    no_copy=bool(volume_options.get("noCopy", False)),
                    tmpfs_size=_num(tmpfs["sizeBytes"]) if "sizeBytes" in tmpfs else None,
                    tmpfs_mode=_num(tmpfs["mode"]) if "mode" in tmpfs else None,
                )
            )
        if mounts:
            host["mounts"] = mounts
        if (tmpfs_map := keys.get("tmpfs")) is not None:
            host["tmpfs"] = dict(tmpfs_map)

        if (groups := keys.get("groupAdds")) is not None:
            host["group_add"] = [str(g) for g in groups]
        if (capabilities := keys.get("capabilities")) is not None:
            capabilities = _nested(f"{where} capabilities", capabilities, ("adds", "drops"))
            host["cap_add"] = capabilities.get("adds")
            host["cap_drop"] = capabilities.get("drops")
        for key, target in (
            ("privileged", "privileged"),
            ("readOnly", "read_only"),
            ("init", "init"),
        ):
            if (value := keys.get(key)) is not None:
                host[target] = bool(value)
        for key, target in (
            ("securityOpts", "security_opt"),
            ("dns", "dns"),
            ("dnsSearches", "dns_search"),
            ("dnsOpts", "dns_opt"),
            ("logDriver", "log_driver"),
            ("logOpts", "log_config_opts"),
            ("sysctls", "sysctls"),
            ("pidMode", "pid_mode"),
            ("ipcMode", "ipc_mode"),
            ("usernsMode", "userns_mode"),
            ("runtime", "runtime"),
        ):
            if (value := keys.get(key)) is not None:
                host[target] = value
        if "log_config_opts" in host or "log_driver" in host:
            host["log_config"] = docker.types.LogConfig(
                type=host.pop("log_driver", "json-file"), config=host.pop("log_config_opts", {})
            )
        if (hosts := keys.get("hosts")) is not None:
            host["extra_hosts"] = {
                _nested(f"{where} hosts", h, ("host", "ip"))["host"]: h["ip"] for h in hosts
            }
        if (memory := keys.get("memory")) is not None:
            host["mem_limit"] = f"{_num(memory)}m"  # the provider takes MB
        if (swap := keys.get("memorySwap")) is not None:
            host["memswap_limit"] = f"{_num(swap)}m" if _num(swap) >= 0 else -1
        if (reservation := keys.get("memoryReservation")) is not None:
            host["mem_reservation"] = f"{_num(reservation)}m"
        if (shm := keys.get("shmSize")) is not None:
            host["shm_size"] = f"{_num(shm)}m"
        if (cpus := keys.get("cpus")) is not None:
            host["nano_cpus"] = int(float(cpus) * 1e9)
        if (shares := keys.get("cpuShares")) is not None:
            host["cpu_shares"] = _num(shares)
        if (cpu_set := keys.get("cpuSet")) is not None:
            host["cpuset_cpus"] = cpu_set
        if (ulimits := keys.get("ulimits")) is not None:
            host["ulimits"] = [
                docker.types.Ulimit(
                    name=_nested(f"{where} ulimits", u, ("name", "soft", "hard"))["name"],
                    soft=_num(u["soft"]),
                    hard=_num(u["hard"]),
                )
                for u in ulimits
            ]

        restart = keys.get("restart", "no")
        if restart and restart != "no":
            policy: dict[str, Any] = {"Name": restart}
            if restart == "on-failure":
                policy["MaximumRetryCount"] = _num(keys.get("maxRetryCount", 0))
            host["restart_policy"] = policy
        else:
            keys.accept("maxRetryCount")
        auto_remove = bool(keys.get("rm", False))
        host["auto_remove"] = auto_remove

        if (check := keys.get("healthcheck")) is not None:
            check = _nested(
                f"{where} healthcheck",
                check,
                ("tests", "interval", "timeout", "startPeriod", "startInterval", "retries"),
            )
            if "startInterval" in check and go_duration_ns(check["startInterval"]):
                raise UnsupportedInput(f"{where}: healthcheck startInterval needs API 1.44")
            create["healthcheck"] = docker.types.Healthcheck(
                test=check["tests"],
                interval=go_duration_ns(check.get("interval", "0s")),
                timeout=go_duration_ns(check.get("timeout", "0s")),
                start_period=go_duration_ns(check.get("startPeriod", "0s")),
                retries=_num(check.get("retries", 0)),
            )

        networks = [
            _nested(
                f"{where} networksAdvanced",
                n,
                ("name", "aliases", "ipv4Address", "ipv6Address"),
            )
            for n in keys.get("networksAdvanced") or []
        ]
        network_mode = keys.get("networkMode")
        if networks and network_mode not in (None, networks[0]["name"]):
            raise UnsupportedInput(f"{where}: networkMode {network_mode!r} with networksAdvanced")
        if networks:
            host["network_mode"] = networks[0]["name"]
        elif network_mode:
            host["network_mode"] = network_mode

        uploads = [
            _nested(
                f"{where} uploads",
                u,
                (
                    "file",
                    "content",
                    "contentBase64",
                    "executable",
                    "permissions",
                    "owner",
                    "group",
                    "source",
                    "sourceHash",
                ),
            )
            for u in keys.get("uploads") or []
        ]
        must_run = bool(keys.get("mustRun", True))
        attach = bool(keys.get("attach", False))
        logs = bool(keys.get("logs", False))
        wait = bool(keys.get("wait", False))
        wait_timeout = _num(keys.get("waitTimeout", 60))
        start = bool(keys.get("start", True))
        # Read on destroy only: how long `docker stop` waits, and whether anonymous
        # volumes go with the container.
        keys.accept("destroyGraceSeconds", "removeVolumes")
        keys.check()

        api = self.client.api
        networking = None
        if networks:
            first = networks[0]
            networking = api.create_networking_config(
                {
                    first["name"]: api.create_endpoint_config(
                        aliases=first.get("aliases"),
                        ipv4_address=first.get("ipv4Address"),
                        ipv6_address=first.get("ipv6Address"),
                    )
                }
            )
        created = api.create_container(
            image,
            name=name,
            host_config=api.create_host_config(**host),
            networking_config=networking,
            **create,
        )
        self.deployment.containers.append(name)
        container_id = created["Id"]
        for extra in networks[1:]:
            api.connect_container_to_network(
                container_id,
                extra["name"],
                aliases=extra.get("aliases"),
                ipv4_address=extra.get("ipv4Address"),
                ipv6_address=extra.get("ipv6Address"),
            )
        for upload in uploads:
            self._upload(container_id, where, upload)
        if not start:
            return
        api.start(container_id)
        if attach:
            self._run_to_completion(container_id, name, logs, auto_remove)
            return
        if must_run:
            time.sleep(0.5)
            state = api.inspect_container(container_id)["State"]
            if not state["Running"] and state.get("ExitCode", 0) != 0:
                raise RuntimeError(
                    f"container {name} exited with {state['ExitCode']} right after start:\n"
                    + self.redact(api.logs(container_id, tail=40).decode(errors="replace"))
                )
        if wait:
            self.wait_healthy(name, wait_timeout)

    def _upload(self, container_id: str, where: str, upload: dict[str, Any]) -> None:
        if "content" in upload:
            data = str(upload["content"]).encode()
        elif "contentBase64" in upload:
            data = base64.b64decode(upload["contentBase64"])
        elif "source" in upload:
            data = (self.project_root / upload["source"]).read_bytes()
        else:
            raise UnsupportedInput(f"{where}: an upload needs content, contentBase64 or source")
        path = PurePosixPath(upload["file"])
        # As the provider does: one archive entry named by the full path, extracted at
        # "/", so missing parent directories are created.
        info = tarfile.TarInfo(str(path.relative_to("/")) if path.is_absolute() else str(path))
        info.size = len(data)
        # As the provider: 0644, or 0744 when executable, unless permissions are given.
        info.mode = (
            int(upload["permissions"], 8)
            if "permissions" in upload
            else (0o744 if upload.get("executable") else 0o644)
        )
        info.uid = _num(upload.get("owner", 0))
        info.gid = _num(upload.get("group", 0))
        info.mtime = int(time.time())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.addfile(info, io.BytesIO(data))
        if not self.client.api.put_archive(container_id, "/", buffer.getvalue()):
            raise RuntimeError(f"{where}: uploading {path} failed")

    def _run_to_completion(self, container_id: str, name: str, logs: bool, removed: bool) -> None:
        self.progress(f"waiting for one-shot container {name}")
        output = []
        for chunk in self.client.api.logs(container_id, stream=True, follow=True):
            line = self.redact(chunk.decode(errors="replace"))
            output.append(line)
            if logs:
                self.progress(f"  [{name}] {line.rstrip()}")
        status = self.client.api.wait(container_id)
        if status.get("StatusCode", 1) != 0:
            raise RuntimeError(
                f"one-shot container {name} exited with {status.get('StatusCode')}:\n"
                + "".join(output)[-4000:]
            )

    def wait_healthy(self, name: str, timeout: float) -> None:
        """Return once `name` runs and is healthy; fail as soon as it stops, or at `timeout`."""

        def state() -> dict[str, Any]:
            current: dict[str, Any] = self.client.api.inspect_container(name)["State"]
            health = (current.get("Health") or {}).get("Status")
            if (
                not current["Running"]
                and current.get("Restarting") is False
                and health != "starting"
            ):
                raise RuntimeError(
                    f"container {name} stopped (exit {current.get('ExitCode')}):\n"
                    + self.redact(self.client.api.logs(name, tail=40).decode(errors="replace"))
                )
            return current

        def unhealthy(current: dict[str, Any]) -> bool:
            health = (current.get("Health") or {}).get("Status")
            return not (health in (None, "healthy") and current["Running"])

        try:
            # Only an unhealthy state is polled again; a stopped container's error is not.
            tenacity.Retrying(
                retry=tenacity.retry_if_result(unhealthy),
                stop=tenacity.stop_after_delay(timeout),
                wait=tenacity.wait_fixed(2),
            )(state)
        except tenacity.RetryError as gave_up:
            last = gave_up.last_attempt.result()
            health = (last.get("Health") or {}).get("Status")
            probes = (last.get("Health") or {}).get("Log") or []
            output = self.redact(str(probes[-1].get("Output", ""))[-800:]) if probes else ""
            raise RuntimeError(
                f"container {name} not healthy after {timeout:.0f}s (health {health}); "
                f"last probe: {output}"
            ) from None

    def destroy(self, *, volumes: bool = True) -> None:
        """Remove every container, network and (unless `volumes` is False) volume the
        program declares, if present.

        Task containers the platform itself started on the stack's networks go too: the
        test started them, through Airflow.
        """
        networks = self.declared(NETWORK)
        containers = set(self.declared(CONTAINER))
        for network_name in networks:
            try:
                network = self.client.networks.get(network_name)
            except docker.errors.NotFound:
                continue
            containers |= {c.name for c in network.containers if c.name}
        for container_name in sorted(containers):
            try:
                self.client.containers.get(container_name).remove(force=True)
                log.info("removed container %s", container_name)
            except docker.errors.NotFound:
                pass
        for network_name in networks:
            try:
                self.client.networks.get(network_name).remove()
                log.info("removed network %s", network_name)
            except docker.errors.NotFound:
                pass
        for volume_name in self.declared(VOLUME) if volumes else []:
            try:
                self.client.volumes.get(volume_name).remove(force=True)
                log.info("removed volume %s", volume_name)
            except docker.errors.NotFound:
                pass
