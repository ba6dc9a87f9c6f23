"""The single-host platform: everything on one Docker Engine, as one component."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from etlstack.airflow_settings import runtime_contract
from etlstack.artifacts import PlatformImages, PlatformImagesArgs
from etlstack.catalog import Catalog
from etlstack.config import StackConfig
from etlstack.docker.airflow import Airflow, AirflowArgs
from etlstack.docker.docker_api_proxy import (
    DockerApiProxy,
    DockerApiProxyArgs,
    TaskContainerRules,
)
from etlstack.docker.network import PlatformNetworks, PlatformNetworksArgs
from etlstack.docker.postgres import Postgres, PostgresArgs
from etlstack.docker.registry import Registry, RegistryArgs, published_host, registry_host


@dataclass(frozen=True)
class DockerPlatformArgs:
    config: StackConfig
    catalog: Catalog


class DockerPlatform(pulumi.ComponentResource):
    airflow_url: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    registry_server: pulumi.Output[str]
    registry_password: pulumi.Output[str]
    images: PlatformImages

    def __init__(
        self, name: str, args: DockerPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:Platform", name, None, opts)
        config = args.config
        settings = config.settings
        docker_settings = config.docker
        # Every Docker object is named after the stack, so two stacks can share a host.
        prefix = f"etlstack-{config.stack}"

        registry_auth = (
            [
                docker.ProviderRegistryAuthArgs(
                    address=settings.registry.host,
                    username=settings.registry.username,
                    password=config.secrets.registry_password,
                )
            ]
            if settings.registry.external and settings.registry.host
            else None
        )
        # An explicit provider: the socket the stack names, not whatever DOCKER_HOST
        # the shell running `pulumi up` happens to have.
        provider = docker.Provider(
            f"{name}-docker",
            host=f"unix://{docker_settings.socket_path}",
            registry_auth=registry_auth,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, providers=[provider])

        networks = PlatformNetworks(
            f"{name}-networks", PlatformNetworksArgs(prefix=prefix), opts=child
        )
        database = Postgres(
            f"{name}-postgres",
            PostgresArgs(
                settings=settings.postgres,
                image=settings.images.postgres,
                docker=docker_settings,
                prefix=prefix,
                platform_network=networks.platform.name,
                pipelines_network=networks.pipelines.name,
            ),
            opts=child,
        )
        registry = Registry(
            f"{name}-registry",
            RegistryArgs(
                settings=settings.registry,
                image=settings.images.registry,
                docker=docker_settings,
                external_password=config.secrets.registry_password,
                prefix=prefix,
                platform_network=networks.platform.name,
            ),
            opts=child,
        )
        self.images = PlatformImages(
            f"{name}-images",
            PlatformImagesArgs(config=config, catalog=args.catalog, registry=registry.access),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[registry.container] if registry.container else []
                ),
            ),
        )
        contract = runtime_contract(config.project_root)
        task_resources = settings.airflow.task_resources
        task_rules = TaskContainerRules(
            network=networks.pipelines_name,
            registry=registry_host(settings.registry, docker_settings),
            name_prefix=f"{prefix}-task-",
            max_memory=contract.memory_bytes(task_resources.memory),
            max_nano_cpus=contract.nano_cpus(task_resources.cpu),
        )
        proxy = DockerApiProxy(
            f"{name}-docker-api-proxy",
            DockerApiProxyArgs(
                image=settings.images.docker_proxy,
                docker=docker_settings,
                prefix=prefix,
                docker_api_network=networks.docker_api.name,
                task_rules=task_rules,
            ),
            opts=child,
        )
        public_url = (
            f"http://{published_host(docker_settings.bind_address)}:{docker_settings.ports.airflow}"
        )
        airflow = Airflow(
            f"{name}-airflow",
            AirflowArgs(
                config=config,
                prefix=prefix,
                image=self.images.airflow,
                pipeline_images=self.images.pipelines,
                platform_network=networks.platform.name,
                docker_api_network=networks.docker_api.name,
                pipelines_network=networks.pipelines_name,
                docker_api_url=proxy.url,
                task_rules=task_rules,
                postgres=database,
                docker_api_proxy=proxy.container,
                public_url=public_url,
                registry_volume=registry.volume_name,
            ),
            opts=child,
        )
        self.airflow_url = pulumi.Output.from_input(public_url)
        self.admin_password = airflow.secrets.admin_password
        self.registry_server = pulumi.Output.from_input(registry.access.server)
        self.registry_password = registry.access.password
        self.register_outputs(
            {
                "airflowUrl": self.airflow_url,
                "adminPassword": self.admin_password,
                "registryServer": self.registry_server,
            }
        )
