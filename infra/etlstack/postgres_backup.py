"""Backups of the platform's PostgreSQL, taken and restored by postgres-backup.sh.

The script runs in a container of the PostgreSQL image itself (pg_dump and pg_restore of
the server's own version): a long-running container on the docker target, a CronJob on
the kubernetes target. Both write to a volume of their own, apart from the database's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from etlstack.config import (
    SECRET_KEYS,
    Backups,
    ConfigError,
    DockerStackSettings,
    namespaced_settings,
    parse_settings,
    seconds,
)

SCRIPT = Path(__file__).with_name("postgres-backup.sh")
# Where the script is installed in the container, and where the backups are mounted.
COMMAND = "/usr/local/bin/postgres-backup"
MOUNT = "/backups"


def settings_environment(backups: Backups, databases: tuple[str, ...]) -> dict[str, str]:
    """The script's plain settings; the superuser's password is added as a secret."""
    return {
        "BACKUPS_DIR": MOUNT,
        "DATABASES": " ".join(databases),
        "EVERY_SECONDS": str(seconds(backups.every)),
        "KEEP_SECONDS": str(seconds(backups.keep)),
    }


# The Airflow components stopped while a database is replaced, so that none of them
# writes to it half-way; the docker target names its containers etlstack-<stack>-<name>.
AIRFLOW_COMPONENTS = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
Command = list[str]


class BackupError(Exception):
    """A backup command failed; the message says what happened to the running platform."""


@dataclass(frozen=True)
class DockerPlatform:
    """The stack's containers on its Docker host, driven with the docker CLI."""

    stack: str
    socket_path: str

    @property
    def environment(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket_path}"}

    def _container(self, name: str) -> str:
        return f"etlstack-{self.stack}-{name}"

    def backup_command(self, *args: str) -> Command:
        return ["docker", "exec", self._container("postgres-backup"), COMMAND, *args]

    def stop_airflow(self) -> list[Command]:
        return [["docker", "stop", *(self._container(c) for c in AIRFLOW_COMPONENTS)]]

    def start_airflow(self) -> list[Command]:
        # The migration first (a backup from an older Airflow is brought up to this one),
        # then the components; `start -a` waits for the one-shot to finish and fails with it.
        return [
            ["docker", "start", "--attach", self._container("airflow-init")],
            ["docker", "start", *(self._container(c) for c in AIRFLOW_COMPONENTS)],
        ]


@dataclass(frozen=True)
class KubernetesPlatform:
    """The stack's Deployments in its namespace, driven with kubectl."""

    context: str
    namespace: str
    api_server_replicas: int

    environment: dict[str, str] = field(default_factory=dict)

    def _kubectl(self, *args: str) -> Command:
        return ["kubectl", "--context", self.context, "--namespace", self.namespace, *args]

    def backup_command(self, *args: str) -> Command:
        return self._kubectl("exec", "deployment/postgres-backup", "--", COMMAND, *args)

    def stop_airflow(self) -> list[Command]:
        return [
            self._kubectl("scale", "deployment", *AIRFLOW_COMPONENTS, "--replicas=0"),
            self._kubectl(
                "wait", "--for=delete", "pod", "--selector=app.kubernetes.io/name=airflow",
                "--timeout=300s",
            ),
        ]  # fmt: skip

    def start_airflow(self) -> list[Command]:
        # The pods wait for the migrations of their Airflow version before they start;
        # a backup from an older version needs the migration Job again: `pulumi up`.
        return [
            self._kubectl("scale", f"deployment/{component}", f"--replicas={replicas}")
            for component, replicas in (
                ("airflow-api-server", self.api_server_replicas),
                ("airflow-scheduler", 1),
                ("airflow-dag-processor", 1),
                ("airflow-triggerer", 1),
            )
        ]


Platform = DockerPlatform | KubernetesPlatform
Runner = Callable[[Command, dict[str, str]], subprocess.CompletedProcess[str]]


def run_command(command: Command, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=False,
    )


def platform_of(project_root: Path, stack: str) -> Platform:
    """Where `stack` runs, from its stack file; an external database has no backups here."""
    from etlstack.render import stack_file_config

    config, _ = stack_file_config(project_root, stack)
    raw = namespaced_settings(config)
    settings = parse_settings({k: v for k, v in raw.items() if k not in SECRET_KEYS})
    if isinstance(settings, DockerStackSettings):
        return DockerPlatform(stack=stack, socket_path=settings.docker.socket_path)
    if settings.postgres.external:
        raise ConfigError(
            f"stack {stack!r} uses an external database (postgres.external), which keeps its "
            "own backups: restore it with its provider's tools"
        )
    return KubernetesPlatform(
        context=settings.kubernetes.context,
        namespace=settings.kubernetes.namespace,
        api_server_replicas=settings.airflow.api_server.replicas,
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


class BackupCommands:
    """`etlstack backups|backup|restore`: the backup commands of one stack's platform."""

    def __init__(self, platform: Platform, runner: Runner = run_command) -> None:
        self.platform = platform
        self.runner = runner

    def _run(self, command: Command) -> subprocess.CompletedProcess[str]:
        return self.runner(command, self.platform.environment)

    def list(self) -> list[str]:
        return _check(
            self._run(self.platform.backup_command("list")), "listing the backups"
        ).split()

    def take(self) -> str:
        return _check(self._run(self.platform.backup_command("now")), "the backup")

    def restore(self, name: str) -> None:
        """Verify `name` (nothing changes if it is missing or damaged), stop Airflow,
        replace both databases with the backup, start Airflow again."""
        _check(self._run(self.platform.backup_command("verify", name)), f"checking backup {name}")
        for command in self.platform.stop_airflow():
            _check(self._run(command), "stopping Airflow before the restore")
        result = self._run(self.platform.backup_command("restore", name))
        if result.returncode != 0:
            raise BackupError(
                f"restoring backup {name} failed, and Airflow is left stopped: "
                f"{result.stderr.strip()}; fix the cause and run the restore again"
            )
        for command in self.platform.start_airflow():
            _check(self._run(command), f"starting Airflow after restoring {name}")
