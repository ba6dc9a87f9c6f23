"""PostgreSQL: Airflow's metadata database and the pipelines' warehouse, and their backups.

One server, two databases with their own roles and generated passwords. The data
lives on a named volume that survives container replacement and, unless the stack
opts out (`postgres.retainOnDestroy: false`), `pulumi destroy` too. A second container
of the same image dumps both databases on a schedule to a volume of its own
(postgres_backup.py), from which `etlstack restore` brings them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from etlstack import postgres_backup
from etlstack.config import Docker
from etlstack.config import Postgres as PostgresSettings
from etlstack.docker.logs import ROTATED_LOGS

HOST = "postgres"
PORT = 5432
SUPERUSER = "postgres"
AIRFLOW_DATABASE = "airflow"
WAREHOUSE_DATABASE = "warehouse"
DATA_DIRECTORY = "/var/lib/postgresql/data"
INIT_SCRIPT = Path(__file__).with_name("postgres-init.sh")


@dataclass(frozen=True)
class PostgresArgs:
    settings: PostgresSettings
    image: str
    docker: Docker
    prefix: str
    platform_network: pulumi.Input[str]
    pipelines_network: pulumi.Input[str]


class Postgres(pulumi.ComponentResource):
    container: docker.Container
    volume: docker.Volume
    backup: docker.Container
    backups_volume: docker.Volume
    airflow_password: pulumi.Output[str]
    warehouse_password: pulumi.Output[str]

    def __init__(
        self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:docker:Postgres", name, None, opts)
        settings = args.settings
        docker_settings = args.docker
        child = pulumi.ResourceOptions(parent=self)

        def password(role: str) -> pulumi.Output[str]:
            # Letters and digits only: the passwords go into connection URLs as they are.
            return random.RandomPassword(
                f"{name}-{role}-password", length=32, special=False, opts=child
            ).result

        superuser_password = password(SUPERUSER)
        self.airflow_password = password(AIRFLOW_DATABASE)
        self.warehouse_password = password(WAREHOUSE_DATABASE)

        image = docker.RemoteImage(f"{name}-image", name=args.image, keep_locally=True, opts=child)
        # retain_on_delete rather than protect: `pulumi destroy` must still finish (the
        # data has to outlive a destroy, not prevent one), and protect would also block
        # the replacements an update may need. The volume is then left on the host,
        # outside the stack, until the user removes it.
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=settings.retain_on_destroy)
        self.volume = docker.Volume(
            f"{name}-data", name=f"{args.prefix}-postgres-data", opts=retained
        )
        self.backups_volume = docker.Volume(
            f"{name}-backups", name=f"{args.prefix}-postgres-backups", opts=retained
        )
        env: pulumi.Input[list[str]] = pulumi.Output.all(
            superuser_password, self.airflow_password, self.warehouse_password
        ).apply(
            lambda passwords: [
                f"POSTGRES_USER={SUPERUSER}",
                f"PGDATA={DATA_DIRECTORY}",
                f"POSTGRES_PASSWORD={passwords[0]}",
                f"AIRFLOW_DB_PASSWORD={passwords[1]}",
                f"WAREHOUSE_DB_PASSWORD={passwords[2]}",
            ]
        )
        ports = (
            [
                docker.ContainerPortArgs(
                    internal=PORT,
                    external=docker_settings.ports.postgres,
                    ip=docker_settings.bind_address,
                )
            ]
            if docker_settings.ports.postgres is not None
            else []
        )
        self.container = docker.Container(
            f"{name}-container",
            **ROTATED_LOGS,
            name=f"{args.prefix}-postgres",
            image=image.name,
            envs=pulumi.Output.secret(env),
            uploads=[
                docker.ContainerUploadArgs(
                    file="/docker-entrypoint-initdb.d/10-etlstack-databases.sh",
                    content=INIT_SCRIPT.read_text(),
                    executable=True,
                )
            ],
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=self.volume.name, container_path=DATA_DIRECTORY
                )
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=args.platform_network, aliases=[HOST]),
                # The warehouse, for task containers; Airflow's database is closed to
                # the warehouse role by the init script.
                docker.ContainerNetworksAdvancedArgs(name=args.pipelines_network, aliases=[HOST]),
            ],
            ports=ports,
            healthcheck=docker.ContainerHealthcheckArgs(
                # Over TCP: while the entrypoint runs the init scripts, the server
                # listens on its Unix socket only, and is not ready for clients yet.
                tests=["CMD", "pg_isready", "-U", SUPERUSER, "-h", "127.0.0.1", "-p", str(PORT)],
                interval="5s",
                timeout="5s",
                retries=10,
                start_period="30s",
            ),
            restart="unless-stopped",
            # `pulumi up` continues (with the migration) only once the server accepts clients.
            wait=True,
            wait_timeout=300,
            # A fixed name and port: the old container must go before the new one starts.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        backup_env: pulumi.Input[list[str]] = superuser_password.apply(
            lambda password: [
                f"PGHOST={HOST}",
                f"PGUSER={SUPERUSER}",
                f"PGPASSWORD={password}",
                *(
                    f"{key}={value}"
                    for key, value in postgres_backup.settings_environment(
                        settings.backups, (AIRFLOW_DATABASE, WAREHOUSE_DATABASE)
                    ).items()
                ),
            ]
        )
        self.backup = docker.Container(
            f"{name}-backup",
            **ROTATED_LOGS,
            name=f"{args.prefix}-postgres-backup",
            image=image.name,
            entrypoints=[postgres_backup.COMMAND],
            command=["loop"],
            envs=pulumi.Output.secret(backup_env),
            uploads=[
                docker.ContainerUploadArgs(
                    file=postgres_backup.COMMAND,
                    content=postgres_backup.SCRIPT.read_text(),
                    executable=True,
                )
            ],
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=self.backups_volume.name, container_path=postgres_backup.MOUNT
                )
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.platform_network)],
            # The image's root user, to write to the new volume (root's), with no
            # capability: it owns its files, it cannot read anyone else's.
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            restart="unless-stopped",
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.container], delete_before_replace=True
            ),
        )
        self.register_outputs(
            {
                "container": self.container.name,
                "volume": self.volume.name,
                "backup": self.backup.name,
                "backupsVolume": self.backups_volume.name,
                "airflowPassword": self.airflow_password,
                "warehousePassword": self.warehouse_password,
            }
        )
