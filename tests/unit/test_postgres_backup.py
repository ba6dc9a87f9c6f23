"""postgres-backup.sh against a real PostgreSQL: what it takes is what it restores.

The script runs with the local server's binaries, as it runs with the deployed image's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
from pipeline_testing.postgres import Server, throwaway_server

from etlstack import postgres_backup
from etlstack.config import ConfigError

DATABASES = ("airflow", "warehouse")


@pytest.fixture
def server() -> Iterator[Server]:
    with throwaway_server(prefix="backup-pg-") as server:
        with closing(server.admin()) as admin, admin.cursor() as cursor:
            for database in DATABASES:
                cursor.execute(f"CREATE ROLE {database} LOGIN")
                cursor.execute(f"CREATE DATABASE {database} OWNER {database}")
                # As the platform's init script has it: only the owner may connect.
                cursor.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        with closing(_connect(server, "warehouse")) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TABLE runs (id int PRIMARY KEY, city text)")
            cursor.execute("INSERT INTO runs VALUES (1, 'Bern'), (2, 'Genf')")
        yield server


def _connect(server: Server, database: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(
        host=str(server.directory), port=server.port, user="postgres", dbname=database
    )
    conn.autocommit = True
    return conn


def _backups(server: Server) -> Path:
    return server.directory / "backups"


def _as_server(server: Server, *paths: Path) -> None:
    """Hand files made by the test to the server's user, as the script's own would be."""
    owner = server.directory.stat()
    for path in paths:
        os.chown(path, owner.st_uid, owner.st_gid)


def _run(
    server: Server, *args: str, keep: int = 3600, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    backups = _backups(server)
    backups.mkdir(exist_ok=True)
    _as_server(server, backups)
    return subprocess.run(
        ["bash", str(postgres_backup.SCRIPT), *args],
        user=server.run_as,
        env={
            **os.environ,
            "PATH": f"{server.bin_dir}:{os.environ['PATH']}",
            "PGHOST": str(server.directory),
            "PGPORT": str(server.port),
            "PGUSER": "postgres",
            "BACKUPS_DIR": str(backups),
            "DATABASES": " ".join(DATABASES),
            "KEEP_SECONDS": str(keep),
            **(extra or {}),
        },
        capture_output=True,
        text=True,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rows(server: Server) -> list[tuple[int, str]]:
    with closing(_connect(server, "warehouse")) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT id, city FROM runs ORDER BY id")
        return list(cursor.fetchall())


def _complete(server: Server) -> list[str]:
    return _ok(_run(server, "list")).split()


def test_a_backup_is_a_dump_of_each_database_with_a_manifest_of_sizes_and_hashes(
    server: Server,
) -> None:
    _ok(_run(server, "now"))
    [name] = _complete(server)
    directory = _backups(server) / name
    manifest = json.loads((directory / "manifest.json").read_text())
    taken = datetime.fromisoformat(manifest["taken_at"])
    assert abs(datetime.now(UTC) - taken) < timedelta(minutes=5)
    assert set(manifest["files"]) == {f"{db}.dump" for db in DATABASES}
    for file, facts in manifest["files"].items():
        content = (directory / file).read_bytes()
        assert content.startswith(b"PGDMP")  # pg_dump's custom format
        assert facts == {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    # Owner and group only: the dumps hold the warehouse.
    assert (directory / "warehouse.dump").stat().st_mode & 0o007 == 0


def test_restore_brings_each_database_back_exactly_as_it_was(server: Server) -> None:
    _ok(_run(server, "now"))
    [name] = _complete(server)
    before = _rows(server)
    with closing(_connect(server, "warehouse")) as conn, conn.cursor() as cursor:
        cursor.execute("UPDATE runs SET city = 'Basel' WHERE id = 1")
        cursor.execute("INSERT INTO runs VALUES (3, 'Chur')")
        cursor.execute("CREATE TABLE added_after (x int)")
    # A client still connected does not stop the restore.
    with closing(_connect(server, "warehouse")):
        _ok(_run(server, "restore", name))
    assert _rows(server) == before
    with closing(_connect(server, "warehouse")) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('added_after') IS NULL")
        assert cursor.fetchone() == (True,)
        cursor.execute(
            "SELECT pg_get_userbyid(datdba), has_database_privilege('public', datname, 'CONNECT')"
            " FROM pg_database WHERE datname = 'warehouse'"
        )
        assert cursor.fetchone() == ("warehouse", False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "warehouse.dump").write_bytes(b"PGDMP not a dump"), "does not match"),
        (lambda d: (d / "warehouse.dump").unlink(), "is missing"),
        (lambda d: (d / "manifest.json").unlink(), "is incomplete"),
    ],
    ids=["corrupt", "file-missing", "unfinished"],
)
def test_a_damaged_backup_is_refused_before_anything_changes(
    server: Server, damage: object, message: str
) -> None:
    _ok(_run(server, "now"))
    [name] = _complete(server)
    with closing(_connect(server, "warehouse")) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO runs VALUES (3, 'Chur')")
    current = _rows(server)
    damage(_backups(server) / name)  # type: ignore[operator]
    result = _run(server, "restore", name)
    assert result.returncode != 0
    assert message in result.stderr and name in result.stderr
    assert _rows(server) == current


def test_a_backup_that_does_not_exist_is_refused_naming_the_ones_that_do(server: Server) -> None:
    _ok(_run(server, "now"))
    [name] = _complete(server)
    result = _run(server, "restore", "20200101T000000Z")
    assert result.returncode != 0
    assert "20200101T000000Z does not exist" in result.stderr and name in result.stderr


def _fake_backup(server: Server, age: timedelta, *, complete: bool = True) -> str:
    name = (datetime.now(UTC) - age).strftime("%Y%m%dT%H%M%SZ")
    directory = _backups(server) / name
    directory.mkdir(parents=True)
    _as_server(server, directory.parent, directory)
    if complete:
        (directory / "manifest.json").write_text("{}")
        _as_server(server, directory / "manifest.json")
    return name


def test_backups_past_keep_and_unfinished_work_are_removed(server: Server) -> None:
    expired = _fake_backup(server, timedelta(days=20))
    kept = _fake_backup(server, timedelta(days=2))
    stale_work = _backups(server) / ".incomplete-20200101T000000Z"
    stale_work.mkdir()
    _as_server(server, stale_work)
    hour_ago = time.time() - 2 * 3600
    os.utime(stale_work, (hour_ago, hour_ago))
    _ok(_run(server, "now", keep=7 * 86400))
    remaining = _complete(server)
    assert expired not in remaining and kept in remaining and len(remaining) == 2
    assert not stale_work.exists()


def test_a_backup_that_fails_takes_no_old_one_with_it(server: Server) -> None:
    old = _fake_backup(server, timedelta(days=20))
    result = _run(server, "now", keep=86400, extra={"PGPORT": "1"})
    assert result.returncode != 0
    assert _complete(server) == [old]


def test_an_unfinished_backup_is_never_listed(server: Server) -> None:
    unfinished = _fake_backup(server, timedelta(hours=1), complete=False)
    assert unfinished not in _ok(_run(server, "list")).split()


class _Recorder:
    """Runs nothing: records each command, and fails the ones given."""

    def __init__(self, failing: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.failing = failing

    def __call__(
        self, command: list[str], environment: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        failed = self.failing is not None and self.failing in command
        return subprocess.CompletedProcess(
            command, 1 if failed else 0, stdout="", stderr="boom" if failed else ""
        )


DOCKER = postgres_backup.DockerPlatform(stack="local", socket_path="/var/run/docker.sock")


def _containers_of(command: list[str]) -> list[str]:
    return [word for word in command if word.startswith("etlstack-local-")]


def test_restore_checks_the_backup_then_stops_airflow_restores_and_migrates_before_starting() -> (
    None
):
    recorder = _Recorder()
    postgres_backup.BackupCommands(DOCKER, recorder).restore("20261202T093000Z")
    backup = postgres_backup.COMMAND
    verify, stop, restore, migrate, start = recorder.commands
    assert verify[-3:] == [backup, "verify", "20261202T093000Z"]
    assert stop[:2] == ["docker", "stop"]
    stopped = set(_containers_of(stop))
    assert stopped == {f"etlstack-local-{c}" for c in postgres_backup.AIRFLOW_COMPONENTS}
    assert restore[-3:] == [backup, "restore", "20261202T093000Z"]
    assert migrate == ["docker", "start", "--attach", "etlstack-local-airflow-init"]
    assert set(_containers_of(start)) == stopped


def test_a_backup_that_fails_its_check_changes_nothing() -> None:
    recorder = _Recorder(failing="verify")
    with pytest.raises(postgres_backup.BackupError, match=r"checking backup 2026.*boom"):
        postgres_backup.BackupCommands(DOCKER, recorder).restore("20261202T093000Z")
    assert len(recorder.commands) == 1


def test_a_failed_restore_leaves_airflow_stopped_and_says_so() -> None:
    recorder = _Recorder(failing="restore")
    with pytest.raises(postgres_backup.BackupError, match="Airflow is left stopped"):
        postgres_backup.BackupCommands(DOCKER, recorder).restore("20261202T093000Z")
    assert not any(command[1] == "start" for command in recorder.commands)


def test_on_kubernetes_restore_runs_in_the_backup_deployment_and_scales_airflow_back() -> None:
    platform = postgres_backup.KubernetesPlatform(
        context="dev-cluster", namespace="etlstack", api_server_replicas=2
    )
    recorder = _Recorder()
    postgres_backup.BackupCommands(platform, recorder).restore("20261202T093000Z")
    kubectl = ["kubectl", "--context", "dev-cluster", "--namespace", "etlstack"]
    assert all(command[:5] == kubectl for command in recorder.commands)
    verify, scale_down, _wait_for_pods, restore, *scale_up = recorder.commands
    assert verify[5:8] == ["exec", "deployment/postgres-backup", "--"]
    assert "--replicas=0" in scale_down
    assert restore[-2:] == ["restore", "20261202T093000Z"]
    assert [c[-1] for c in scale_up] == [
        "--replicas=2",
        "--replicas=1",
        "--replicas=1",
        "--replicas=1",
    ]


def test_the_platform_is_read_from_the_stack_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.local.yaml").write_text("config:\n  etlstack:target: docker\n")
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  etlstack:target: kubernetes\n"
        "  etlstack:kubernetes: {context: c1, version: '1.30', namespace: data}\n"
        "  etlstack:registry: {host: r.example.org}\n"
    )
    (tmp_path / "Pulumi.ext.yaml").write_text(
        "config:\n  etlstack:target: kubernetes\n"
        "  etlstack:kubernetes: {context: c1, version: '1.30'}\n"
        "  etlstack:registry: {host: r.example.org}\n"
        "  etlstack:postgres: {external: true}\n"
        "  etlstack:externalDatabaseUrl: {secure: v1:abc}\n"
    )
    assert postgres_backup.platform_of(tmp_path, "local") == DOCKER
    dev = postgres_backup.platform_of(tmp_path, "dev")
    assert isinstance(dev, postgres_backup.KubernetesPlatform)
    assert (dev.context, dev.namespace) == ("c1", "data")
    with pytest.raises(ConfigError, match=r"external database .* keeps its own backups"):
        postgres_backup.platform_of(tmp_path, "ext")
    with pytest.raises(ConfigError, match=r"no stack file Pulumi\.nope\.yaml"):
        postgres_backup.platform_of(tmp_path, "nope")
