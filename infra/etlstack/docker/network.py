"""The private networks of the single-host platform.

Three networks keep the parts apart:
- `platform`: PostgreSQL, the registry and the Airflow components.
- `docker-api`: internal (no route out); only the Docker API proxy and the
  component that launches task containers (the scheduler, where the LocalExecutor
  runs tasks) join it, so nothing else can even reach the proxy.
- `pipelines`: the network task containers are created on. PostgreSQL joins it as
  `postgres` (the warehouse); the proxy and the Airflow components never do.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class PlatformNetworksArgs:
    # Prefix of every Docker object name, e.g. "etlstack-local".
    prefix: str


class PlatformNetworks(pulumi.ComponentResource):
    platform: docker.Network
    docker_api: docker.Network
    pipelines: docker.Network
    # The plain name task containers are created on (known before deployment: the
    # proxy's allowlist and ETLSTACK_RUNTIME both need it).
    pipelines_name: str

    def __init__(
        self, name: str, args: PlatformNetworksArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:Networks", name, None, opts)
        # Fixed names: replacing one must remove the old network first.
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.platform = docker.Network(
            f"{name}-platform", name=f"{args.prefix}-platform", driver="bridge", opts=child
        )
        self.docker_api = docker.Network(
            f"{name}-docker-api",
            name=f"{args.prefix}-docker-api",
            driver="bridge",
            # No gateway: the proxy cannot reach anything but its clients.
            internal=True,
            opts=child,
        )
        self.pipelines_name = f"{args.prefix}-pipelines"
        self.pipelines = docker.Network(
            f"{name}-pipelines",
            name=self.pipelines_name,
            driver="bridge",
            # Not internal: pipelines extract from sources outside this host.
            opts=child,
        )
        self.register_outputs(
            {
                "platform": self.platform.name,
                "dockerApi": self.docker_api.name,
                "pipelines": self.pipelines.name,
            }
        )
