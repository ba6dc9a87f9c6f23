"""PostgreSQL on the docker target (postgres.py): its volume, health, passwords and init script,
the script also run against a real server."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
from pipeline_testing.postgres import throwaway_server

from etlstack import postgres_backup, render
from etlstack.config import seconds
from tests.support.stacks import evaluate
from tests.unit.docker.containers import (
    PREFIX,
    VOLUME,
    container,
    env,
)


def test_postgres_keeps_its_data_on_a_named_volume(local: render.Evaluation) -> None:
    (volume,) = [v for v in local.by_type(VOLUME) if v.inputs["name"].endswith("postgres-data")]
    assert volume.inputs["name"] == f"{PREFIX}-postgres-data"
    postgres = container(local, "postgres")
    assert postgres.inputs["volumes"] == [
        {"volumeName": f"{PREFIX}-postgres-data", "containerPath": "/var/lib/postgresql/data"}
    ]
    assert volume.urn in postgres.dependencies


@pytest.mark.parametrize("volume_name", ["postgres-data", "postgres-backups"])
def test_the_data_and_its_backups_survive_destroy_unless_the_stack_opts_out(
    volume_name: str,
) -> None:
    def volume(**overrides: Any) -> render.Resource:
        return evaluate("local", **overrides).one(VOLUME, f"etlstack-{volume_name}")

    assert volume().retain_on_delete is True
    assert volume(postgres={"retainOnDestroy": False}).retain_on_delete is False


def test_backups_are_taken_by_the_servers_own_image_onto_their_own_volume(
    revealed: render.Evaluation,
) -> None:
    server = container(revealed, "postgres")
    backup = container(revealed, "postgres-backup")
    inputs = backup.inputs
    # pg_dump of the server's own version, from its own image.
    assert inputs["image"] == server.inputs["image"]
    assert inputs["entrypoints"] == [postgres_backup.COMMAND] and inputs["command"] == ["loop"]
    (upload,) = inputs["uploads"]
    assert upload["file"] == postgres_backup.COMMAND
    assert render.reveal(upload["content"]) == postgres_backup.SCRIPT.read_text()
    assert inputs["volumes"] == [
        {"volumeName": f"{PREFIX}-postgres-backups", "containerPath": postgres_backup.MOUNT}
    ]
    variables = env(backup)
    assert variables["PGPASSWORD"] == env(server)["POSTGRES_PASSWORD"]
    assert render.is_secret(inputs["envs"])
    settings = revealed.config.settings.postgres.backups
    assert variables["EVERY_SECONDS"] == str(seconds(settings.every))
    assert variables["KEEP_SECONDS"] == str(seconds(settings.keep))
    assert variables["DATABASES"].split() == ["airflow", "warehouse"]
    assert inputs["capabilities"] == {"drops": ["ALL"]}
    assert not inputs.get("ports")
    assert [n["name"] for n in inputs["networksAdvanced"]] == [f"{PREFIX}-platform"]
    assert server.urn in backup.dependencies


def test_backup_settings_reach_the_backup_container() -> None:
    variables = env(
        container(
            evaluate("local", postgres={"backups": {"every": "6h", "keep": "3d"}}),
            "postgres-backup",
        )
    )
    assert (variables["EVERY_SECONDS"], variables["KEEP_SECONDS"]) == ("21600", "259200")


def test_postgres_health_and_restart(local: render.Evaluation) -> None:
    postgres = container(local, "postgres").inputs
    assert postgres["healthcheck"]["tests"][:4] == ["CMD", "pg_isready", "-U", "postgres"]
    assert postgres["restart"] == "unless-stopped"
    assert postgres["wait"] is True


def test_the_init_script_creates_both_databases_and_holds_no_password(
    revealed: render.Evaluation,
) -> None:
    postgres = container(revealed, "postgres")
    (upload,) = postgres.inputs["uploads"]
    assert upload["file"].startswith("/docker-entrypoint-initdb.d/")
    script = render.reveal(upload["content"])
    for statement in [
        "CREATE ROLE airflow LOGIN",
        "CREATE DATABASE airflow OWNER airflow",
        "CREATE ROLE warehouse LOGIN",
        "CREATE DATABASE warehouse OWNER warehouse",
        "REVOKE CONNECT, TEMPORARY ON DATABASE airflow FROM PUBLIC",
    ]:
        assert statement in script
    variables = env(postgres)
    for name in ("AIRFLOW_DB_PASSWORD", "WAREHOUSE_DB_PASSWORD"):
        assert name in script
        assert variables[name] not in script
    assert not any(s in script for s in revealed.generated_secrets if len(s) >= 12)


def test_the_database_passwords_are_the_ones_airflow_and_the_warehouse_use(
    revealed: render.Evaluation,
) -> None:
    database = env(container(revealed, "postgres"))
    scheduler = env(container(revealed, "airflow-scheduler"))
    assert len({database[k] for k in database if k.endswith("PASSWORD")}) == 3
    assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:{database['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow"
    )
    assert scheduler["AIRFLOW_CONN_WAREHOUSE"] == (
        f"postgresql://warehouse:{database['WAREHOUSE_DB_PASSWORD']}@postgres:5432/warehouse"
    )


def test_the_init_script_gives_each_role_its_own_database_only(
    revealed: render.Evaluation,
) -> None:
    postgres = container(revealed, "postgres")
    (upload,) = render.reveal(postgres.inputs["uploads"])
    variables = env(postgres)
    with throwaway_server(prefix="etlstack-init-script-") as server:
        script = server.directory / "init.sh"
        script.write_text(upload["content"])
        script.chmod(0o755)
        server.run(
            str(script),
            extra_env={
                "PGHOST": str(server.directory),
                "PGPORT": str(server.port),
                "POSTGRES_USER": variables["POSTGRES_USER"],
                "AIRFLOW_DB_PASSWORD": variables["AIRFLOW_DB_PASSWORD"],
                "WAREHOUSE_DB_PASSWORD": variables["WAREHOUSE_DB_PASSWORD"],
            },
        )

        def connect(role: str, database: str) -> None:
            password = variables[f"{role.upper()}_DB_PASSWORD"]
            psycopg2.connect(
                host="127.0.0.1", port=server.port, user=role, password=password, dbname=database
            ).close()

        connect("airflow", "airflow")
        connect("warehouse", "warehouse")
        for role, database in [("warehouse", "airflow"), ("airflow", "warehouse")]:
            with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
                connect(role, database)
        assert variables["AIRFLOW_DB_PASSWORD"] not in server.log.read_text()
