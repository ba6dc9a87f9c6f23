"""The Pulumi program: one platform, on the target the stack names."""

from __future__ import annotations

import pulumi

from etlstack.catalog import discover
from etlstack.config import StackConfig, Target


def build(config: StackConfig) -> None:
    catalog = discover(config.project_root)
    if config.target is Target.DOCKER:
        from etlstack.docker import DockerPlatform, DockerPlatformArgs

        platform = DockerPlatform("etlstack", DockerPlatformArgs(config=config, catalog=catalog))
    else:
        from etlstack.kubernetes import KubernetesPlatform, KubernetesPlatformArgs

        platform = KubernetesPlatform(  # type: ignore[assignment]
            "etlstack", KubernetesPlatformArgs(config=config, catalog=catalog)
        )

    pulumi.export("target", config.target.value)
    pulumi.export("airflowUrl", platform.airflow_url)
    pulumi.export("adminUsername", config.settings.airflow.admin_username)
    pulumi.export("adminPassword", platform.admin_password)
    pulumi.export("registry", platform.registry_server)
    # Read by a stack that pulls from this one's registry (registry.fromStack).
    pulumi.export("registryPassword", pulumi.Output.secret(platform.registry_password))
    # What promotion copies: every deployed artifact, pinned by digest.
    pulumi.export("artifacts", platform.images.references())
