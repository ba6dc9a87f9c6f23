"""The Docker API proxy: HAProxy in front of the Docker socket.

It is the only container that mounts the socket, and it does so as the unprivileged
`haproxy` user through the socket's group (`docker.socketGid`), never as root. It
listens on the internal Docker-API network only, never on a published port, and
forwards the allowlist in haproxy.cfg.in: the calls that running a task container
needs, on the platform's task containers only. A container create is judged by
create_judge.lua on the body as the engine will decode it, against TaskContainerRules:
the pipelines network, a numeric non-root user, limits within the stack's maxima, no
privileges, a bounded log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from etlstack.config import Docker
from etlstack.docker.logs import ROTATED_LOGS

ALIAS = "docker-api-proxy"
PORT = 2375
URL = f"tcp://{ALIAS}:{PORT}"
CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"
JUDGE_PATH = "/usr/local/etc/haproxy/create_judge.lua"
# Where the host's socket appears inside the proxy container.
SOCKET_IN_CONTAINER = "/var/run/docker.sock"
TEMPLATE = Path(__file__).with_name("haproxy.cfg.in")
CREATE_JUDGE = Path(__file__).with_name("create_judge.lua")

# The Docker API version the platform's client speaks, the only one a create is taken
# at: the engine's defaults for absent fields change with the version. 1.41 is Docker
# 20.10's, the oldest engine the platform supports (Debian 12's docker.io); every later
# engine serves it.
TASK_API_VERSION = "1.41"
# A task's processes and threads: far above a pipeline's needs, far below what exhausts
# the host's pid space (a fork bomb stops here).
TASK_PIDS_LIMIT = 1024
# A task's container log (its output, also streamed into the task log): at most three
# files of 10 MB, where the engine's default json-file log grows without end.
TASK_LOG_MAX_BYTES = 10 * 1000**2
TASK_LOG_MAX_FILES = 3


@dataclass(frozen=True)
class TaskContainerRules:
    """What a task container may be, decided by the stack and enforced by the proxy."""

    # The network task containers must be created on; the only one the proxy allows.
    network: str
    # host[:port] of the platform's registry: the only one images are pulled from.
    registry: str
    # Task containers are named this prefix and 32 hex digits; only they are reached.
    name_prefix: str
    # The stack's task resources (airflow.taskResources): the maxima.
    max_memory: int
    max_nano_cpus: int
    api_version: str = TASK_API_VERSION
    pids_limit: int = TASK_PIDS_LIMIT
    log_max_bytes: int = TASK_LOG_MAX_BYTES
    log_max_files: int = TASK_LOG_MAX_FILES

    def launch_settings(self) -> dict[str, Any]:
        """What the platform's launch reads of them (the runtime contract's docker block)."""
        return {
            "apiVersion": self.api_version,
            "taskContainerPrefix": self.name_prefix,
            "pidsLimit": self.pids_limit,
            "logMaxBytes": self.log_max_bytes,
            "logMaxFiles": self.log_max_files,
        }

    def judge_arguments(self) -> str:
        """create_judge.lua's rules, as key=value words (haproxy.cfg hands them over)."""
        arguments = {
            "network": self.network,
            "registry": self.registry,
            "max_memory": self.max_memory,
            "max_nano_cpus": self.max_nano_cpus,
            # DockerOperator gives 1024 CPU shares per core of its `cpus`.
            "max_cpu_shares": round(self.max_nano_cpus / 1e9 * 1024),
            "max_pids": self.pids_limit,
            "max_log_bytes": self.log_max_bytes,
            "max_log_files": self.log_max_files,
        }
        return " ".join(f"{key}={value}" for key, value in arguments.items())


def render_config(
    rules: TaskContainerRules,
    *,
    listen: str = f":{PORT}",
    docker_socket: str = SOCKET_IN_CONTAINER,
    judge_path: str = JUDGE_PATH,
) -> str:
    """The proxy's haproxy.cfg. `listen`, `docker_socket` and `judge_path` change only
    in tests."""
    values = {
        "@LISTEN@": listen,
        "@DOCKER_SOCKET@": docker_socket,
        "@CREATE_JUDGE@": judge_path,
        "@CREATE_RULES@": rules.judge_arguments(),
        # Inside PCRE2 patterns in single quotes.
        "@REGISTRY@": re.escape(rules.registry),
        "@API_VERSION@": re.escape(rules.api_version),
        "@TASK_CONTAINER@": re.escape(rules.name_prefix) + "[0-9a-f]{32}",
    }
    text = TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = re.search(r"@[A-Z_]+@", text)
    assert leftover is None, f"haproxy.cfg.in has an unknown placeholder {leftover[0]}"
    return text


@dataclass(frozen=True)
class DockerApiProxyArgs:
    image: str
    docker: Docker
    prefix: str
    docker_api_network: pulumi.Input[str]
    task_rules: TaskContainerRules


class DockerApiProxy(pulumi.ComponentResource):
    container: docker.Container
    url: str

    def __init__(
        self, name: str, args: DockerApiProxyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:DockerApiProxy", name, None, opts)
        docker_settings = args.docker
        image = docker.RemoteImage(
            f"{name}-image",
            name=args.image,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = URL
        self.container = docker.Container(
            f"{name}-container",
            **ROTATED_LOGS,
            name=f"{args.prefix}-docker-api-proxy",
            image=image.name,
            command=["haproxy", "-W", "-db", "-f", CONFIG_PATH],
            # The image's unprivileged user; the socket's group is its only way in.
            user="haproxy",
            group_adds=[str(docker_settings.socket_gid)],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            uploads=[
                docker.ContainerUploadArgs(
                    file=CONFIG_PATH, content=render_config(args.task_rules)
                ),
                docker.ContainerUploadArgs(file=JUDGE_PATH, content=CREATE_JUDGE.read_text()),
            ],
            mounts=[
                # Read-only keeps the socket file from being replaced or removed; it
                # does not limit the API (connecting to a socket is not a write).
                docker.ContainerMountArgs(
                    type="bind",
                    source=docker_settings.socket_path,
                    target=SOCKET_IN_CONTAINER,
                    read_only=True,
                )
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=args.docker_api_network, aliases=[ALIAS])
            ],
            restart="unless-stopped",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.register_outputs({"container": self.container.name, "url": self.url})
