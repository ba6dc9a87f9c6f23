"""The container registry the platform's images are pushed to and pulled from.

The distribution registry, with htpasswd authentication (a generated password,
stored only as a bcrypt hash inside the container) and a named volume, published
on the stack's bind address only. A stack may use a registry it already runs
instead (`registry.external`), with the secret `registryPassword`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from etlstack.artifacts import RegistryAccess
from etlstack.config import Docker
from etlstack.config import Registry as RegistrySettings
from etlstack.docker.logs import ROTATED_LOGS

PORT = 5000
HTPASSWD_PATH = "/auth/htpasswd"
STORAGE = "/var/lib/registry"
CONFIG_FILE = "/etc/docker/registry/config.yml"


@dataclass(frozen=True)
class RegistryArgs:
    settings: RegistrySettings
    image: str
    docker: Docker
    # The secret password of an external registry (registry.external).
    external_password: pulumi.Output[str] | None
    prefix: str
    platform_network: pulumi.Input[str]


def published_host(bind_address: str) -> str:
    """The address the Docker daemon on this host reaches a published port at."""
    return "127.0.0.1" if bind_address in ("0.0.0.0", "::") else bind_address


def registry_host(settings: RegistrySettings, docker: Docker) -> str:
    """host[:port] the Docker daemon pushes to and pulls from: an external registry's
    host, or the deployed one's published port."""
    return settings.host or f"{published_host(docker.bind_address)}:{docker.ports.registry}"


class Registry(pulumi.ComponentResource):
    # Where images go, and the credentials the builder and the Docker daemon use.
    access: RegistryAccess
    # The registry container and its storage volume, when the stack runs its own.
    container: docker.Container | None
    volume_name: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:Registry", name, None, opts)
        settings = args.settings
        docker_settings = args.docker
        username = settings.username

        if settings.external:
            assert settings.host and args.external_password
            self.container = None
            self.volume_name = None
            self.access = RegistryAccess(
                server=settings.host,
                username=username,
                password=args.external_password,
            )
            self.register_outputs({"server": self.access.server})
            return

        child = pulumi.ResourceOptions(parent=self)
        generated = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        htpasswd_line: pulumi.Input[str] = generated.bcrypt_hash.apply(
            lambda digest: f"{username}:{digest}\n"
        )
        htpasswd: pulumi.Output[str] = pulumi.Output.secret(htpasswd_line)
        image = docker.RemoteImage(f"{name}-image", name=args.image, keep_locally=True, opts=child)
        # Every pushed image is kept, as on Kubernetes: an earlier release can be deployed
        # again without rebuilding it, and a destroy takes nobody's images with it.
        volume = docker.Volume(
            f"{name}-data",
            name=f"{args.prefix}-registry-data",
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        self.volume_name = volume.name
        self.container = docker.Container(
            f"{name}-container",
            **ROTATED_LOGS,
            name=f"{args.prefix}-registry",
            image=image.name,
            command=["registry", "serve", CONFIG_FILE],
            envs=[
                "REGISTRY_AUTH=htpasswd",
                "REGISTRY_AUTH_HTPASSWD_REALM=etlstack registry",
                f"REGISTRY_AUTH_HTPASSWD_PATH={HTPASSWD_PATH}",
                f"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={STORAGE}",
            ],
            uploads=[docker.ContainerUploadArgs(file=HTPASSWD_PATH, content=htpasswd)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=STORAGE)],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=args.platform_network, aliases=["registry"]
                )
            ],
            ports=[
                docker.ContainerPortArgs(
                    internal=PORT,
                    external=docker_settings.ports.registry,
                    ip=docker_settings.bind_address,
                )
            ],
            restart="unless-stopped",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        # The Docker daemon pushes and pulls through the published port. Deriving the
        # address from the container makes every image build and push wait for it.
        server = registry_host(settings, docker_settings)
        self.access = RegistryAccess(
            server=self.container.name.apply(lambda _: server),
            username=username,
            password=generated.result,
        )
        self.register_outputs({"server": self.access.server, "container": self.container.name})
