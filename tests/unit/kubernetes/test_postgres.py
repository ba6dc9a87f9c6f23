"""PostgreSQL on Kubernetes (postgres.py): its claim, credentials and init script, or an external database."""

from __future__ import annotations

import json

import kubernetes_validate

from etlstack import postgres_backup, render
from etlstack.config import seconds
from tests.support.stacks import stack_file_with
from tests.unit.kubernetes.stack import (
    Stack,
    container_env,
    evaluate_stack,
    main_container,
)
from tests.unit.kubernetes_helpers import (
    claims,
    named,
    of_kind,
    pod_spec,
)


def test_postgres_statefulset_on_a_claim_no_update_or_destroy_deletes(stack: Stack) -> None:
    statefulset = named(stack.objects, "StatefulSet", "postgres")
    spec = pod_spec(statefulset)
    assert spec is not None
    assert list(claims(spec).values()) == ["postgres-data"]
    claim = stack.resource("PersistentVolumeClaim", "postgres-data")
    assert claim.protect and claim.retain_on_delete
    assert stack.resource("StatefulSet", "postgres").dependencies.count(claim.urn) == 1
    assert named(stack.objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    assert named(stack.objects, "Service", "postgres-headless")["spec"]["clusterIP"] == "None"


def test_postgres_passwords_are_generated_secrets_read_from_a_secret(stack: Stack) -> None:
    credentials = stack.resource("Secret", "postgres-credentials")
    assert render.is_secret(credentials.inputs["stringData"])
    container = main_container(named(stack.objects, "StatefulSet", "postgres"))
    env = container_env(container)
    for name in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "WAREHOUSE_DB_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "postgres-credentials"
        assert "value" not in env[name]


def test_postgres_init_creates_both_databases_and_roles_without_a_password(stack: Stack) -> None:
    init = named(stack.objects, "ConfigMap", "postgres-init")
    (script,) = init["data"].values()
    for database in ("airflow", "warehouse"):
        assert f"CREATE ROLE {database} LOGIN PASSWORD :'{database}_password'" in script
        assert f"CREATE DATABASE {database} OWNER {database}" in script
    mounts = {
        m["mountPath"]: m
        for m in main_container(named(stack.objects, "StatefulSet", "postgres"))["volumeMounts"]
    }
    assert mounts["/docker-entrypoint-initdb.d"]["name"] == "init"


def test_backups_are_taken_by_the_servers_own_image_onto_a_protected_claim(
    stack: Stack,
) -> None:
    backup = named(stack.objects, "Deployment", "postgres-backup")
    assert backup["spec"]["replicas"] == 1
    assert backup["spec"]["strategy"] == {"type": "Recreate"}
    container = main_container(backup)
    server = main_container(named(stack.objects, "StatefulSet", "postgres"))
    assert container["image"] == server["image"]
    assert container["command"] == [postgres_backup.COMMAND, "loop"]
    env = container_env(container)
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "postgres-credentials",
        "key": "superuser-password",
    }
    assert env["PGHOST"]["value"].startswith("postgres.")
    backups = stack.evaluation.config.settings.postgres.backups
    assert env["KEEP_SECONDS"]["value"] == str(seconds(backups.keep))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[postgres_backup.COMMAND]["subPath"] == "postgres-backup"
    script = named(stack.objects, "ConfigMap", "postgres-backup-script")
    assert script["data"]["postgres-backup"] == postgres_backup.SCRIPT.read_text()
    spec = pod_spec(backup)
    assert spec is not None
    assert claims(spec)[mounts[postgres_backup.MOUNT]["name"]] == "postgres-backups"
    # The scheduler (gid 0) reads them; nobody else.
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["fsGroup"]) == (999, 0)
    assert spec["automountServiceAccountToken"] is False
    claim = stack.resource("PersistentVolumeClaim", "postgres-backups")
    assert claim.protect and claim.retain_on_delete
    assert render.reveal(claim.inputs["spec"])["resources"]["requests"] == {
        "storage": backups.storage_size
    }


def test_an_external_database_replaces_the_statefulset() -> None:
    url = "postgresql+psycopg2://etl:s3cr3t-pw@db.example.org:5432/airflow?sslmode=require"
    with stack_file_with("dev", {"postgres": {"external": True}}, {"externalDatabaseUrl": url}):
        stack = evaluate_stack("dev")
    for kind in ("StatefulSet", "PersistentVolumeClaim", "Deployment"):
        assert "postgres" not in {
            o["metadata"]["name"].split("-")[0] for o in of_kind(stack.objects, kind)
        }
    # It keeps its own backups: the scheduler has nothing to check, nor a node to follow.
    scheduler = pod_spec(named(stack.objects, "Deployment", "airflow-scheduler"))
    assert scheduler is not None and "affinity" not in scheduler
    assert list(claims(scheduler).values()) == ["airflow-task-logs"]
    airflow_env = stack.resource("Secret", "airflow-env")
    assert render.is_secret(airflow_env.inputs["stringData"])
    assert (
        render.reveal(airflow_env.inputs["stringData"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == url
    )
    warehouse = stack.resource("Secret", "warehouse")
    assert render.reveal(warehouse.inputs["stringData"])["url"] == (
        "postgresql://etl:s3cr3t-pw@db.example.org:5432/warehouse?sslmode=require"
    )
    assert "s3cr3t-pw" not in json.dumps([named(stack.objects, "ConfigMap", "airflow-config")])
    for obj in stack.objects:
        kubernetes_validate.validate(obj, stack.kubernetes.version, strict=True)
