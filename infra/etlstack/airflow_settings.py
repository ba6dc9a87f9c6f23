"""What every Airflow component must share, on either target.

The fernet key, the API secret key and the JWT secret are generated once and kept
in the stack's state, so they are identical in every component and stable across
updates: a scheduler and an api-server with different JWT secrets fail every task
with "Signature verification failed". The environment contract (executor, execution
API URL, auth manager, the platform's runtime settings for the DAG factory) is
built here once and handed to each target.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pulumi_random as random

from etlstack.aliases import formerly
from etlstack.config import StackConfig, seconds

AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# The pool every pipeline task runs in; its size is airflow.pipelineTaskSlots.
PIPELINE_POOL = "pipeline_tasks"
API_SERVER_PORT = 8080
SCHEDULER_HEALTH_PORT = 8974
ORPHANED_TASKS_CHECK_SECONDS = 60
DAG_FOLDER_SCAN_SECONDS = 30
SCHEDULER_IDLE_SLEEP_SECONDS = 0.25
# Where Airflow writes task logs (its default base_log_folder), on a volume of its own,
# and where the scheduler sees the backups of the platform's PostgreSQL, read-only.
TASK_LOGS_DIRECTORY = "/opt/airflow/logs"
BACKUPS_DIRECTORY = "/opt/etlstack/backups"
# The scheduler's Airflow connection to Airflow's own database, for housekeeping's
# `airflow db clean` (task processes do not see the database setting itself).
METADATA_CONN_ID = "airflow_metadata"
METADATA_CONN_ENV = f"AIRFLOW_CONN_{METADATA_CONN_ID.upper()}"


class AirflowSecrets(pulumi.ComponentResource):
    """The generated keys and the admin password, kept secret in state and outputs."""

    fernet_key: pulumi.Output[str]
    api_secret_key: pulumi.Output[str]
    jwt_secret: pulumi.Output[str]
    admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        opts: pulumi.ResourceOptions | None = None,
        *,
        former_name: str | None = None,
    ) -> None:
        """`former_name`: the name deployed stacks know this component by, if it had
        another; they know its children by names derived from that one."""
        super().__init__(
            "etlstack:airflow:Secrets",
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(aliases=formerly(former_name) if former_name else [])
            ),
        )

        def child(suffix: str, **options: Any) -> pulumi.ResourceOptions:
            """The options of the child named f"{name}-{suffix}"."""
            aliases = formerly(f"{former_name}-{suffix}") if former_name else []
            return pulumi.ResourceOptions(parent=self, aliases=aliases, **options)

        # A Fernet key is 32 random bytes in URL-safe base64 with its padding.
        fernet = random.RandomId(
            f"{name}-fernet-key",
            byte_length=32,
            opts=child("fernet-key", additional_secret_outputs=["b64Url", "b64Std", "hex"]),
        )
        self.fernet_key = pulumi.Output.secret(fernet.b64_url.apply(lambda key: key + "="))
        self.api_secret_key = random.RandomPassword(
            f"{name}-api-secret-key", length=32, special=False, opts=child("api-secret-key")
        ).result
        self.jwt_secret = random.RandomPassword(
            f"{name}-jwt-secret", length=64, special=False, opts=child("jwt-secret")
        ).result
        self.admin_password = random.RandomPassword(
            f"{name}-admin-password", length=24, special=False, opts=child("admin-password")
        ).result
        self.register_outputs({})


@dataclass(frozen=True)
class AirflowEnvironment:
    """Environment variables for the Airflow components: plain ones and secret ones."""

    plain: dict[str, pulumi.Input[str]]
    secret: dict[str, pulumi.Output[str]]

    def merged(
        self, extra_secret: dict[str, pulumi.Output[str]] | None = None
    ) -> pulumi.Output[list[str]]:
        """All of it as NAME=value strings (a secret Output, as any secret part makes it)."""
        secret = {**self.secret, **(extra_secret or {})}
        pairs = [pulumi.Output.concat(k, "=", v) for k, v in sorted(self.plain.items())]
        pairs += [pulumi.Output.concat(k, "=", v) for k, v in sorted(secret.items())]
        return pulumi.Output.all(*pairs).apply(list)


def database_url(
    user: str, password: pulumi.Input[str], host: str, database: str
) -> pulumi.Output[str]:
    return pulumi.Output.secret(
        pulumi.Output.concat(
            "postgresql+psycopg2://", user, ":", password, "@", host, ":5432/", database
        )
    )


def airflow_environment(
    config: StackConfig,
    *,
    secrets: AirflowSecrets,
    metadata_database_url: pulumi.Output[str],
    api_server_host: str,
    public_url: str,
    runtime: pulumi.Output[dict[str, Any]],
) -> AirflowEnvironment:
    """The settings that tie the scheduler, api-server and task processes together."""
    airflow = config.settings.airflow
    plain: dict[str, pulumi.Input[str]] = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        # Task processes reach the execution API through the api-server's service
        # name; the default (derived from base_url) is localhost, which inside a
        # container is the container itself.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_server_host}:{API_SERVER_PORT}/execution/",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PARALLELISM": str(airflow.parallelism),
        "AIRFLOW__API__BASE_URL": public_url,
        "AIRFLOW__API_AUTH__JWT_ISSUER": f"etlstack-{config.stack}",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        # Intervals measured in BENCHMARKS.md (docs/benchmarks.md says what each costs).
        # After a scheduler crash its running tasks are reset and run again at the next
        # orphan check; at Airflow's 300 s the tasks' own heartbeat timeout (also 300 s)
        # fails them first. Every 60 s it costs two small queries.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_SECONDS),
        # DAGs are baked into the image, so new files appear in a running container only
        # when copied in by hand; a scan of the folder every 30 s is a directory listing.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(DAG_FOLDER_SCAN_SECONDS),
        # A triggered run waits for the scheduler's next loop to start, and a finished
        # task for the next one to close its run: at Airflow's 1 s sleep between idle
        # loops a lone task waited 0.8 s more than at 0.25 s, for 3 CPU-seconds and
        # about 1,600 read-only queries more per idle minute.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": str(SCHEDULER_IDLE_SLEEP_SECONDS),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(SCHEDULER_HEALTH_PORT),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Read by the DAG factory (dags/pipeline_factory): how tasks are launched here
        # and which pipeline images this stack deploys. Nothing secret goes in it.
        "ETLSTACK_RUNTIME": runtime.apply(lambda value: json.dumps(value, sort_keys=True)),
    }
    secret = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_database_url,
        "AIRFLOW__CORE__FERNET_KEY": secrets.fernet_key,
        "AIRFLOW__API__SECRET_KEY": secrets.api_secret_key,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.jwt_secret,
    }
    return AirflowEnvironment(plain=plain, secret=secret)


@functools.cache
def runtime_contract(project_root: Path) -> ModuleType:
    """dags/pipeline_factory/contract.py, the model of ETLSTACK_RUNTIME.

    It lives with the DAGs because the Airflow image has only dags/ on sys.path, and is
    loaded here by its path: importing the pipeline_factory package would import Airflow.
    """
    spec = importlib.util.spec_from_file_location(
        "etlstack_runtime_contract", project_root / "dags" / "pipeline_factory" / "contract.py"
    )
    assert spec is not None and spec.loader is not None
    contract = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = contract  # pydantic resolves the models' types through it
    spec.loader.exec_module(contract)
    return contract


def runtime_settings(
    config: StackConfig,
    pipeline_images: dict[str, pulumi.Output[str]],
    target_settings: dict[str, Any],
) -> pulumi.Output[dict[str, Any]]:
    """The platform facts the DAG factory needs at parse and run time (ETLSTACK_RUNTIME),
    built with the model its reader uses."""
    contract = runtime_contract(config.project_root)
    settings = config.settings
    airflow = settings.airflow
    housekeeping = settings.housekeeping
    target = config.target.value
    resolved = pulumi.Output.from_input({"images": pipeline_images, "settings": target_settings})
    return resolved.apply(
        lambda value: contract.Runtime(
            target=target,
            pipeline_images=value["images"],
            promoted=config.settings.artifacts is not None,
            pool=PIPELINE_POOL,
            allow_tasks_in_airflow=airflow.allow_tasks_in_airflow,
            task_resources=contract.TaskResources(
                cpu=airflow.task_resources.cpu, memory=airflow.task_resources.memory
            ),
            housekeeping=contract.Housekeeping(
                task_logs_seconds=seconds(housekeeping.task_logs),
                metadata_seconds=seconds(housekeeping.metadata),
                metadata_conn_id=METADATA_CONN_ID,
                failed_task_containers_seconds=seconds(housekeeping.failed_task_containers),
                **(
                    {}
                    if settings.postgres.external
                    else {
                        "backups_every_seconds": seconds(settings.postgres.backups.every),
                        "backups_directory": BACKUPS_DIRECTORY,
                    }
                ),
            ),
            **{target: value["settings"]},
        ).dump()
    )
