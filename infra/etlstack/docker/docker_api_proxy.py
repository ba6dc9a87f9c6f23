"""The Docker API proxy: HAProxy in front of the Docker socket.

It is the only container that mounts the socket, and it does so as the unprivileged
`haproxy` user through the socket's group (`docker.socketGid`), never as root. It
listens on the internal Docker-API network only, never on a published port, and
forwards the allowlist in haproxy.cfg.in: the calls that running a task container
needs, with container creates refused when they ask for privileged mode, host
mounts, host namespaces, added capabilities or devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from etlstack.config import Docker
from etlstack.docker.logs import ROTATED_LOGS

ALIAS = "docker-api-proxy"
PORT = 2375
URL = f"tcp://{ALIAS}:{PORT}"
CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"
# Where the host's socket appears inside the proxy container.
SOCKET_IN_CONTAINER = "/var/run/docker.sock"
TEMPLATE = Path(__file__).with_name("haproxy.cfg.in")


def render_config(
    pipelines_network: str,
    registry: str,
    *,
    listen: str = f":{PORT}",
    docker_socket: str = SOCKET_IN_CONTAINER,
) -> str:
    """The proxy's haproxy.cfg. `listen` and `docker_socket` change only in tests."""
    values = {
        "@LISTEN@": listen,
        "@DOCKER_SOCKET@": docker_socket,
        # Inside PCRE2 patterns in single quotes.
        "@PIPELINES_NETWORK@": re.escape(pipelines_network),
        "@REGISTRY@": re.escape(registry),
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
    # The network task containers must be created on; the only one the proxy allows.
    pipelines_network: str
    # host[:port] of the platform's registry: the only one images are pulled from.
    registry: str


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
                    file=CONFIG_PATH, content=render_config(args.pipelines_network, args.registry)
                )
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
