"""The Pulumi program: one platform, on the target the stack names."""

from __future__ import annotations

from typing import Protocol

import pulumi

from etlstack.artifacts import PlatformImages
from etlstack.catalog import discover
from etlstack.config import StackConfig, Target


class Platform(Protocol):
    """What every target's platform gives the stack's outputs."""

    airflow_url: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    registry_server: pulumi.Output[str]
    registry_password: pulumi.Output[str]
    images: PlatformImages


def _platform(config: StackConfig) -> Platform:
    catalog = discover(config.project_root)
    if config.target is Target.DOCKER:
        from etlstack.docker import DockerPlatform, DockerPlatformArgs

        return DockerPlatform("etlstack", DockerPlatformArgs(config=config, catalog=catalog))
    from etlstack.kubernetes import KubernetesPlatform, KubernetesPlatformArgs

    return KubernetesPlatform("etlstack", KubernetesPlatformArgs(config=config, catalog=catalog))


def build(config: StackConfig) -> None:
    platform = _platform(config)
    pulumi.export("target", config.target.value)
    pulumi.export("airflowUrl", platform.airflow_url)
    pulumi.export("adminUsername", config.settings.airflow.admin_username)
    pulumi.export("adminPassword", platform.admin_password)
    pulumi.export("registry", platform.registry_server)
    # Read by a stack that pulls from this one's registry (registry.fromStack).
    pulumi.export("registryPassword", pulumi.Output.secret(platform.registry_password))
    # What promotion copies: every deployed artifact, pinned by digest.
    pulumi.export("artifacts", platform.images.references())
