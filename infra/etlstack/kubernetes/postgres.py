"""PostgreSQL: Airflow's metadata database and the pipelines' `warehouse` database.

One StatefulSet replica on a PersistentVolumeClaim that Pulumi never deletes: the
claim is its own resource, protected (a `pulumi destroy` or an update that would
replace it stops with an error instead) and retained on delete (even after
`pulumi state unprotect`, deleting it from the stack leaves the claim and its data
in the cluster). A volumeClaimTemplate would survive too, but it is invisible to
Pulumi and to the policy pack, and its size could never be changed.

A `postgres-backup` Deployment of the same image dumps both databases on a schedule
(postgres_backup.py) to a claim of its own, protected and retained like the data's; the
scheduler mounts it read-only, to check that the newest backup is recent, and so follows
the backup pod onto its node (a ReadWriteOnce claim is mounted on one node at a time).

With `postgres.external` nothing is deployed: Airflow uses the secret
`externalDatabaseUrl`, and pipelines use the `warehouse` database on the same server,
which keeps its own backups.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from etlstack import postgres_backup
from etlstack.airflow_settings import database_url
from etlstack.aliases import formerly
from etlstack.config import Postgres as PostgresSettings
from etlstack.kubernetes.common import (
    POSTGRES_PORT,
    MountedVolume,
    child,
    claim_volume,
    labels,
    metadata,
    resources,
    service_dns,
    service_pod_spec,
    volume_claim,
)
from etlstack.kubernetes.namespaces import NamespaceRef

NAME = "postgres"
DATA_CLAIM = "postgres-data"
BACKUP = "postgres-backup"
BACKUPS_CLAIM = "postgres-backups"
# The uid and gid of the `postgres` user in the official Debian-based image.
POSTGRES_UID = 999
MOUNT = "/var/lib/postgresql/data"
# A subdirectory: the volume's root may hold lost+found, which initdb refuses.
PGDATA = f"{MOUNT}/pgdata"

# Runs once, on an empty data directory (the image's /docker-entrypoint-initdb.d).
# Passwords come from the environment through psql variables, never from this file.
INIT_SCRIPT = """#!/bin/bash
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \\
  -v airflow_password="$AIRFLOW_DB_PASSWORD" \\
  -v warehouse_password="$WAREHOUSE_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
CREATE ROLE warehouse LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE warehouse OWNER warehouse;
REVOKE ALL ON DATABASE warehouse FROM PUBLIC;
SQL
"""


@dataclass(frozen=True)
class PostgresArgs:
    settings: PostgresSettings
    image: str
    storage_class: str | None
    # The secret URL of an external database (postgres.external).
    external_database_url: pulumi.Output[str] | None
    namespace: NamespaceRef


def warehouse_url_from(external_url: str) -> str:
    """The warehouse database on the external server: same credentials, plain libpq URL."""
    parts = urlsplit(external_url)
    return urlunsplit(("postgresql", parts.netloc, "/warehouse", parts.query, ""))


class Postgres(pulumi.ComponentResource):
    # SQLAlchemy URL of Airflow's metadata database (secret).
    airflow_database_url: pulumi.Output[str]
    # postgresql:// URL of the warehouse, as pipelines read it (secret).
    warehouse_url: pulumi.Output[str]
    # The workload Airflow must wait for, if the database runs in the cluster.
    ready: list[pulumi.Resource]
    # The claim holding the backups, and the labels of the pod that writes them; None
    # with an external database.
    backups_claim: str | None
    backup_pod_labels: dict[str, str] | None

    def __init__(
        self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("etlstack:kubernetes:Postgres", name, None, opts)
        settings = args.settings
        if settings.external:
            external = args.external_database_url
            assert external is not None, (
                "config requires externalDatabaseUrl with postgres.external"
            )
            self.airflow_database_url = pulumi.Output.secret(external)
            self.warehouse_url = pulumi.Output.secret(external.apply(warehouse_url_from))
            self.ready = []
            self.backups_claim = None
            self.backup_pod_labels = None
            self.register_outputs(
                {
                    "airflowDatabaseUrl": self.airflow_database_url,
                    "warehouseUrl": self.warehouse_url,
                }
            )
            return

        namespace = args.namespace.output
        host = service_dns(NAME, args.namespace.name)
        passwords = {
            role: random.RandomPassword(
                f"{name}-{role}-password",
                length=32,
                special=False,
                opts=child(self, aliases=formerly(f"postgres-{role}-password")),
            ).result
            for role in ("superuser", "airflow", "warehouse")
        }
        credentials = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata=metadata("postgres-credentials", namespace, labels(NAME)),
            type="Opaque",
            string_data={f"{role}-password": value for role, value in passwords.items()},
            opts=child(self, aliases=formerly("postgres-credentials")),
        )
        init = k8s.core.v1.ConfigMap(
            f"{name}-init",
            metadata=metadata("postgres-init", namespace, labels(NAME)),
            data={"10-etlstack-databases.sh": INIT_SCRIPT},
            opts=child(self, aliases=formerly("postgres-init")),
        )
        retain = settings.retain_on_destroy

        def protected_claim(
            resource_name: str, claim: str, size: str, former_name: str
        ) -> k8s.core.v1.PersistentVolumeClaim:
            return volume_claim(
                resource_name,
                claim,
                namespace,
                labels(NAME),
                size,
                args.storage_class,
                child(self, protect=retain, retain_on_delete=retain, aliases=formerly(former_name)),
            )

        claim = protected_claim(
            f"{name}-data", DATA_CLAIM, settings.storage_size, former_name="postgres-data"
        )
        pod_labels = labels(NAME, "database")
        headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata=metadata("postgres-headless", namespace, labels(NAME)),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                selector=pod_labels,
                ports=[k8s.core.v1.ServicePortArgs(name="postgres", port=POSTGRES_PORT)],
            ),
            opts=child(self, aliases=formerly("postgres-headless")),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(NAME, namespace, labels(NAME)),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=pod_labels,
                ports=[k8s.core.v1.ServicePortArgs(name="postgres", port=POSTGRES_PORT)],
            ),
            opts=child(self, aliases=formerly("postgres-service")),
        )

        def password_env(env: str, role: str) -> k8s.core.v1.EnvVarArgs:
            return k8s.core.v1.EnvVarArgs(
                name=env,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name="postgres-credentials", key=f"{role}-password"
                    )
                ),
            )

        ready_check = k8s.core.v1.ExecActionArgs(
            command=["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT)]
        )
        statefulset = k8s.apps.v1.StatefulSet(
            name,
            metadata=metadata(NAME, namespace, labels(NAME)),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name="postgres-headless",
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                    spec=service_pod_spec(
                        name="postgres",
                        image=args.image,
                        uid=POSTGRES_UID,
                        port=k8s.core.v1.ContainerPortArgs(
                            name="postgres", container_port=POSTGRES_PORT
                        ),
                        env=[
                            k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value="postgres"),
                            k8s.core.v1.EnvVarArgs(name="PGDATA", value=PGDATA),
                            password_env("POSTGRES_PASSWORD", "superuser"),
                            password_env("AIRFLOW_DB_PASSWORD", "airflow"),
                            password_env("WAREHOUSE_DB_PASSWORD", "warehouse"),
                        ],
                        requirements=resources(settings.resources.cpu, settings.resources.memory),
                        mounted=[
                            MountedVolume(claim_volume(DATA_CLAIM), MOUNT),
                            MountedVolume(
                                k8s.core.v1.VolumeArgs(
                                    name="init",
                                    config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                        name="postgres-init", default_mode=0o555
                                    ),
                                ),
                                "/docker-entrypoint-initdb.d",
                                read_only=True,
                            ),
                        ],
                        scratch={"run": "/var/run/postgresql", "tmp": "/tmp"},
                        # A clean shutdown checkpoints; a killed one replays the WAL.
                        termination_grace_period_seconds=60,
                        readiness_probe=k8s.core.v1.ProbeArgs(
                            exec_=ready_check, period_seconds=10, timeout_seconds=5
                        ),
                        liveness_probe=k8s.core.v1.ProbeArgs(
                            exec_=ready_check,
                            initial_delay_seconds=30,
                            period_seconds=20,
                            timeout_seconds=5,
                            failure_threshold=6,
                        ),
                    ),
                ),
            ),
            opts=child(
                self,
                depends_on=[credentials, init, claim, headless],
                aliases=formerly("postgres"),
            ),
        )
        self._backup_deployment(
            name,
            namespace,
            host,
            args.image,
            settings,
            protected_claim(
                f"{name}-backups",
                BACKUPS_CLAIM,
                settings.backups.storage_size,
                former_name="postgres-backups",
            ),
            password_env("PGPASSWORD", "superuser"),
            depends_on=[credentials, statefulset],
        )
        self.backups_claim = BACKUPS_CLAIM
        self.backup_pod_labels = labels(BACKUP)
        self.airflow_database_url = database_url("airflow", passwords["airflow"], host, "airflow")
        self.warehouse_url = pulumi.Output.secret(
            pulumi.Output.concat(
                "postgresql://warehouse:",
                passwords["warehouse"],
                "@",
                host,
                f":{POSTGRES_PORT}/warehouse",
            )
        )
        self.ready = [statefulset]
        self.register_outputs(
            {"airflowDatabaseUrl": self.airflow_database_url, "warehouseUrl": self.warehouse_url}
        )

    def _backup_deployment(
        self,
        name: str,
        namespace: pulumi.Input[str],
        host: str,
        image: str,
        settings: PostgresSettings,
        claim: k8s.core.v1.PersistentVolumeClaim,
        password: k8s.core.v1.EnvVarArgs,
        depends_on: list[pulumi.Resource],
    ) -> None:
        """The backup loop: one pod of the server's image (pg_dump of its own version)."""
        script = k8s.core.v1.ConfigMap(
            f"{name}-backup-script",
            metadata=metadata(f"{BACKUP}-script", namespace, labels(BACKUP)),
            data={"postgres-backup": postgres_backup.SCRIPT.read_text()},
            opts=child(self, aliases=formerly("postgres-backup-script")),
        )
        pod_labels = labels(BACKUP)
        plain = postgres_backup.settings_environment(settings.backups, ("airflow", "warehouse"))
        spec = service_pod_spec(
            name=BACKUP,
            image=image,
            # The group the scheduler runs with (gid 0), so that it may read the backups.
            uid=POSTGRES_UID,
            gid=0,
            command=[postgres_backup.COMMAND, "loop"],
            env=[
                k8s.core.v1.EnvVarArgs(name="PGHOST", value=host),
                k8s.core.v1.EnvVarArgs(name="PGUSER", value="postgres"),
                password,
                *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in plain.items()),
            ],
            requirements=resources(settings.resources.cpu, settings.resources.memory),
            mounted=[
                MountedVolume(claim_volume(BACKUPS_CLAIM), postgres_backup.MOUNT),
                MountedVolume(
                    k8s.core.v1.VolumeArgs(
                        name="script",
                        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                            name=f"{BACKUP}-script", default_mode=0o555
                        ),
                    ),
                    postgres_backup.COMMAND,
                    read_only=True,
                    sub_path="postgres-backup",
                ),
            ],
            scratch={"tmp": "/tmp"},
        )
        k8s.apps.v1.Deployment(
            f"{name}-backup",
            metadata=metadata(BACKUP, namespace, pod_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                # One pod at a time on the claim, which is ReadWriteOnce.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels), spec=spec
                ),
            ),
            opts=child(
                self,
                depends_on=[*depends_on, claim, script],
                aliases=formerly("postgres-backup"),
            ),
        )
