"""Airflow 3 on one Docker host: a migration one-shot, then four long-running components.

`etlstack-init` (database migration, admin user, pipeline pool) runs to completion
before anything else starts. Then the api-server (UI, REST and execution API), the
scheduler (LocalExecutor: tasks run from here), the dag-processor and the triggerer
run as separate containers with restart policies and healthchecks. They share one
set of generated keys (AirflowSecrets), so tokens signed by one are accepted by all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from etlstack.airflow_settings import (
    API_SERVER_PORT,
    BACKUPS_DIRECTORY,
    METADATA_CONN_ENV,
    TASK_LOGS_DIRECTORY,
    AirflowSecrets,
    airflow_environment,
    database_url,
    runtime_settings,
)
from etlstack.config import StackConfig
from etlstack.docker import postgres
from etlstack.docker.docker_api_proxy import TaskContainerRules
from etlstack.docker.logs import ROTATED_LOGS

API_SERVER = "airflow-api-server"
SCHEDULER = "airflow-scheduler"
DAG_PROCESSOR = "airflow-dag-processor"
TRIGGERER = "airflow-triggerer"
# The connection the DAG factory hands to task containers as WAREHOUSE_URL.
WAREHOUSE_CONN_ID = "warehouse"
# Airflow runs as an ordinary user (uid 50000) and needs no capability. DAG code
# runs in these containers, so they keep nothing it could use.
CONFINEMENT: dict[str, Any] = {
    "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
    "security_opts": ["no-new-privileges:true"],
}


@dataclass(frozen=True)
class AirflowArgs:
    config: StackConfig
    prefix: str
    image: pulumi.Input[str]
    pipeline_images: dict[str, pulumi.Output[str]]
    platform_network: pulumi.Input[str]
    docker_api_network: pulumi.Input[str]
    pipelines_network: str
    docker_api_url: str
    # What the proxy takes of a task container; the platform's launch follows it.
    task_rules: TaskContainerRules
    postgres: postgres.Postgres
    docker_api_proxy: pulumi.Resource
    public_url: str
    # The storage of the registry the stack runs; None with an external registry.
    registry_volume: pulumi.Output[str] | None


class Airflow(pulumi.ComponentResource):
    secrets: AirflowSecrets
    task_logs: docker.Volume
    migration: docker.Container
    api_server: docker.Container
    scheduler: docker.Container
    dag_processor: docker.Container
    triggerer: docker.Container

    def __init__(
        self, name: str, args: AirflowArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:Airflow", name, None, opts)
        config = args.config
        self.secrets = AirflowSecrets(f"{name}-secrets", opts=pulumi.ResourceOptions(parent=self))
        runtime = runtime_settings(
            config,
            args.pipeline_images,
            {
                "url": args.docker_api_url,
                "network": args.pipelines_network,
                "warehouseConnId": WAREHOUSE_CONN_ID,
                **args.task_rules.launch_settings(),
                # Housekeeping reports its size.
                **({"registryVolume": args.registry_volume} if args.registry_volume else {}),
            },
        )
        metadata_database_url = database_url(
            postgres.AIRFLOW_DATABASE,
            args.postgres.airflow_password,
            postgres.HOST,
            postgres.AIRFLOW_DATABASE,
        )
        environment = airflow_environment(
            config,
            secrets=self.secrets,
            metadata_database_url=metadata_database_url,
            api_server_host=API_SERVER,
            public_url=args.public_url,
            runtime=runtime,
        )
        airflow_settings = config.settings.airflow
        # Task logs outlive the containers (every deploy replaces them), as the database
        # does; platform_housekeeping removes those past housekeeping.taskLogs.
        self.task_logs = docker.Volume(
            f"{name}-task-logs",
            name=f"{args.prefix}-airflow-logs",
            opts=pulumi.ResourceOptions(
                parent=self, retain_on_delete=config.settings.postgres.retain_on_destroy
            ),
        )
        task_logs = docker.ContainerVolumeArgs(
            volume_name=self.task_logs.name, container_path=TASK_LOGS_DIRECTORY
        )

        def networks(alias: str, *, docker_api: bool = False) -> list[Any]:
            attached = [
                docker.ContainerNetworksAdvancedArgs(name=args.platform_network, aliases=[alias])
            ]
            if docker_api:
                attached.append(docker.ContainerNetworksAdvancedArgs(name=args.docker_api_network))
            return attached

        self.migration = docker.Container(
            f"{name}-migration",
            **ROTATED_LOGS,
            name=f"{args.prefix}-airflow-init",
            image=args.image,
            command=["etlstack-init"],
            envs=environment.merged({"ETLSTACK_ADMIN_PASSWORD": self.secrets.admin_password}).apply(
                lambda env: [
                    *env,
                    f"ETLSTACK_ADMIN_USERNAME={airflow_settings.admin_username}",
                    f"ETLSTACK_ADMIN_EMAIL={airflow_settings.admin_email}",
                    f"ETLSTACK_PIPELINE_SLOTS={airflow_settings.pipeline_task_slots}",
                ]
            ),
            networks_advanced=networks("airflow-init"),
            # Runs once per change of its inputs (a new image: a new Airflow version
            # or new DAGs); `pulumi up` waits for it to exit before it starts the rest.
            must_run=False,
            attach=True,
            restart="no",
            **CONFINEMENT,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[args.postgres.container], delete_before_replace=True
            ),
        )

        def component(
            key: str,
            alias: str,
            command: list[str],
            healthcheck: str,
            *,
            extra_secret: dict[str, pulumi.Output[str]] | None = None,
            docker_api: bool = False,
            extra_volumes: list[docker.ContainerVolumeArgs] | None = None,
            ports: list[docker.ContainerPortArgs] | None = None,
            depends_on: list[pulumi.Resource] | None = None,
        ) -> docker.Container:
            return docker.Container(
                f"{name}-{key}",
                **ROTATED_LOGS,
                name=f"{args.prefix}-{alias}",
                image=args.image,
                command=command,
                # The hostname is the alias: task logs are served by the component
                # that ran the task, at the hostname Airflow records for it.
                hostname=alias,
                envs=environment.merged(extra_secret),
                networks_advanced=networks(alias, docker_api=docker_api),
                volumes=[task_logs, *(extra_volumes or [])],
                ports=ports or [],
                healthcheck=docker.ContainerHealthcheckArgs(
                    tests=["CMD", "airflow-healthcheck", healthcheck],
                    interval="30s",
                    timeout="30s",
                    retries=5,
                    start_period="60s",
                ),
                restart="unless-stopped",
                **CONFINEMENT,
                # `pulumi up` succeeds only when the component reports healthy.
                wait=True,
                wait_timeout=600,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.migration, *(depends_on or [])],
                    delete_before_replace=True,
                ),
            )

        docker_settings = config.docker
        self.api_server = component(
            "api-server",
            API_SERVER,
            ["airflow", "api-server"],
            "api-server",
            ports=[
                docker.ContainerPortArgs(
                    internal=API_SERVER_PORT,
                    external=docker_settings.ports.airflow,
                    ip=docker_settings.bind_address,
                )
            ],
        )
        # The LocalExecutor runs tasks in the scheduler, so it alone reaches the
        # Docker API proxy and holds the warehouse connection.
        warehouse_url: pulumi.Input[str] = pulumi.Output.concat(
            "postgresql://",
            postgres.WAREHOUSE_DATABASE,
            ":",
            args.postgres.warehouse_password,
            f"@{postgres.HOST}:{postgres.PORT}/{postgres.WAREHOUSE_DATABASE}",
        )
        warehouse: pulumi.Output[str] = pulumi.Output.secret(warehouse_url)
        self.scheduler = component(
            "scheduler",
            SCHEDULER,
            ["airflow", "scheduler"],
            "scheduler",
            extra_secret={
                f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": warehouse,
                METADATA_CONN_ENV: metadata_database_url,
            },
            docker_api=True,
            # platform_housekeeping checks from here that the newest backup is recent.
            extra_volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=args.postgres.backups_volume.name,
                    container_path=BACKUPS_DIRECTORY,
                    read_only=True,
                )
            ],
            depends_on=[args.docker_api_proxy],
        )
        self.dag_processor = component(
            "dag-processor", DAG_PROCESSOR, ["airflow", "dag-processor"], "dag-processor"
        )
        self.triggerer = component("triggerer", TRIGGERER, ["airflow", "triggerer"], "triggerer")
        self.register_outputs(
            {
                "taskLogs": self.task_logs.name,
                "migration": self.migration.name,
                "apiServer": self.api_server.name,
                "scheduler": self.scheduler.name,
                "dagProcessor": self.dag_processor.name,
                "triggerer": self.triggerer.name,
            }
        )
