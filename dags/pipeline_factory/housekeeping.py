"""The platform's housekeeping: what would otherwise pile up in a year without an administrator.

Six jobs, each a task of the platform_housekeeping DAG (dags/platform_housekeeping.py):

- `metadata`: `airflow db clean` of Airflow's database, older than housekeeping.metadata,
  then a VACUUM so the space of the removed rows is reused;
- `task_logs`: task log files older than housekeeping.taskLogs, then the directories
  that emptied;
- `failed_task_containers`: failed task containers (docker) or pods (kubernetes) that
  finished longer ago than housekeeping.failedTaskContainers (successful ones are
  removed when they finish, see pipeline_factory/__init__.py);
- `pipeline_images` (docker only): images of the stack's registry that no deployed
  pipeline uses;
- `backups`: fails when the newest complete backup of the platform's PostgreSQL is
  older than two backup intervals (postgres.backups.every);
- `disk_usage` (docker only): reports the registry's size and Docker's disk use, the
  figures to watch against the disk (nothing is removed from the registry: every
  version stays deployable).

Each job is a plain function of paths, clients and times that returns what it removed
or found, and logs it; the `Housekeeping` operator runs one of them by name, inside the
scheduler. Whatever goes wrong raises, so it fails that job's task, visibly, and only
that one. The cluster policy (pipeline_factory/policy.py) exempts exactly this operator
from its refusal of code that runs inside Airflow: the code is the platform's, and a DAG
chooses nothing but the job's name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from pipeline_factory import PIPELINE_LABEL, TASK_LABEL
from pipeline_factory.runtime import Runtime, load

log = logging.getLogger(__name__)

# What a backup directory holds (the backup job's format): both dumps, and the manifest
# of their sizes and digests, written last, so a backup without it is not finished.
BACKUP_FILES = ("airflow.dump", "warehouse.dump")
MANIFEST = "manifest.json"
# A backup directory is named after the UTC time it was taken, e.g. 20261202T093000Z.
BACKUP_NAME = "%Y%m%dT%H%M%SZ"
# The backup job runs every interval; one missed run is tolerated, the second is not.
BACKUP_INTERVALS_TOLERATED = 2
# HTTP statuses of the Docker and Kubernetes APIs a removal may meet without failing.
NOT_FOUND = 404  # already gone: removed by someone else in the meantime
CONFLICT = 409  # the Docker daemon's refusal to remove an image a container uses


class HousekeepingError(RuntimeError):
    """A job found something wrong or could not finish; its task fails with this message."""


# ---- metadata ---------------------------------------------------------------------


def metadata_clean_command(cutoff: datetime) -> list[str]:
    """`airflow db clean` of every table's rows older than `cutoff`."""
    return [
        sys.executable,
        "-m",
        "airflow",
        "db",
        "clean",
        "--clean-before-timestamp",
        cutoff.isoformat(),
        "--yes",
        # The removed rows are not kept in archive tables, which would grow instead.
        "--skip-archive",
        # Without it a table that fails to clean is only logged, and the command succeeds.
        "--error-on-cleanup-failure",
    ]


def clean_metadata(database_url: str, cutoff: datetime) -> str:
    """Removes the metadata older than `cutoff` from the database at `database_url`
    (a SQLAlchemy URL); returns the command's output, which counts the rows per table."""
    environment = {
        name: value
        for name, value in os.environ.items()
        # The deprecated name of the same setting; it must not override the one below.
        if name != "AIRFLOW__CORE__SQL_ALCHEMY_CONN"
    }
    environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database_url
    result = subprocess.run(
        metadata_clean_command(cutoff),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        log.info("airflow db clean: %s", line)
    if result.returncode != 0:
        raise HousekeepingError(
            f"airflow db clean exited with status {result.returncode}; its output is above"
        )
    return result.stdout


def vacuum_metadata(database_url: str) -> None:
    """VACUUM (ANALYZE) of the database at `database_url`, right after its clean.

    The rows `db clean` deleted leave dead space that PostgreSQL reuses only once VACUUM
    has passed over the table; autovacuum waits until a fifth of a table is dead, so
    without this the files keep growing between its passes. Tables another VACUUM holds
    are skipped, not waited for; catalogs shared by every database, which only a
    superuser may vacuum, are skipped with a warning.
    """
    from sqlalchemy import create_engine

    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE, SKIP_LOCKED)")
    finally:
        engine.dispose()
    log.info("VACUUM (ANALYZE) of Airflow's database: its freed space is reused")


def metadata_database_url(conn_id: str) -> str:
    """Airflow's database as a SQLAlchemy URL, from the scheduler's connection `conn_id`
    (task processes cannot read Airflow's own database setting)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        url = PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url
    except AirflowNotFoundException:
        raise HousekeepingError(
            f"the scheduler has no Airflow connection {conn_id!r} "
            f"(AIRFLOW_CONN_{conn_id.upper()}): task processes cannot read Airflow's "
            "own database setting, so the platform must hand it to this job as that connection"
        ) from None
    return url.render_as_string(hide_password=False)


# ---- task_logs --------------------------------------------------------------------


@dataclass(frozen=True)
class RemovedFiles:
    files: int
    bytes: int
    directories: int


def remove_old_files(folder: Path, cutoff: datetime) -> RemovedFiles:
    """Removes the files under `folder` last modified before `cutoff`, then the
    directories that this left empty (not `folder` itself).

    Nothing outside `folder` is touched: a symbolic link is judged and removed as
    itself, never followed. A directory that was empty already is left alone: a task
    may just have created it for the log it is about to write.
    """
    if not folder.is_dir():
        raise HousekeepingError(f"the log folder {folder} does not exist")
    limit = cutoff.timestamp()
    files = size = directories = 0
    emptied: set[str] = set()
    # Bottom-up, so a directory is looked at after everything in it; a directory that
    # cannot be read fails the job (os.walk would skip it silently).
    for directory, subdirectories, names in os.walk(folder, topdown=False, onerror=_raise):
        # os.walk lists a link to a directory with the subdirectories, and does not enter it.
        links = [name for name in subdirectories if os.path.islink(os.path.join(directory, name))]
        for name in [*names, *links]:
            path = os.path.join(directory, name)
            status = os.lstat(path)
            if status.st_mtime < limit:
                os.unlink(path)
                files += 1
                size += status.st_size
                emptied.add(directory)
        if directory in emptied and directory != str(folder):
            try:
                os.rmdir(directory)
            except OSError as error:
                # Not empty: it had newer files, or a task wrote one since.
                if error.errno != errno.ENOTEMPTY:
                    raise
                continue
            directories += 1
            emptied.add(os.path.dirname(directory))
    return RemovedFiles(files=files, bytes=size, directories=directories)


def _raise(error: OSError) -> None:
    raise error


# ---- failed_task_containers ---------------------------------------------------------


def expired_containers(
    inspected: Iterable[Mapping[str, Any]], cutoff: datetime
) -> list[Mapping[str, Any]]:
    """Of the containers `inspected` (`docker inspect` documents), the exited task
    containers that finished before `cutoff`.

    The inspect document, not the list's: only it says when a container finished.
    """
    label = PIPELINE_LABEL["docker"]
    return [
        container
        for container in inspected
        if label in (container["Config"].get("Labels") or {})
        and container["State"]["Status"] == "exited"
        # RFC 3339 with nanoseconds, which the parser truncates to microseconds.
        and datetime.fromisoformat(container["State"]["FinishedAt"]) < cutoff
    ]


def remove_failed_containers(client: Any, cutoff: datetime, name_prefix: str) -> list[str]:
    """Removes the exited task containers that finished before `cutoff`, with their
    anonymous volumes; `client` is docker's APIClient. Returns their names.

    Task containers by their name (`name_prefix`), the only ones the Docker API proxy
    reaches: a labelled container named otherwise was not made by the platform's launch.
    """
    from docker.errors import NotFound

    listed = client.containers(
        all=True, filters={"label": PIPELINE_LABEL["docker"], "status": "exited"}
    )
    names = [
        name.lstrip("/")
        for container in listed
        for name in container.get("Names") or []
        if name.lstrip("/").startswith(name_prefix)
    ]
    removed = []
    for container in expired_containers((client.inspect_container(n) for n in names), cutoff):
        labels = container["Config"]["Labels"]
        name = container["Name"].lstrip("/")
        try:
            client.remove_container(name, v=True)
        except NotFound:
            log.info("Container %s is gone already", name)
            continue
        log.info(
            "Removed container %s of %s.%s (exit status %s, finished %s)",
            name,
            labels[PIPELINE_LABEL["docker"]],
            labels.get(TASK_LABEL["docker"]),
            container["State"]["ExitCode"],
            container["State"]["FinishedAt"],
        )
        removed.append(name)
    return removed


def _pod_finished_at(pod: Any) -> datetime:
    """When a failed pod stopped: its containers' last finish, or the last change of its
    conditions (a pod evicted before its containers ran has no finish), or its creation."""
    status = pod.status
    finished = [
        container.state.terminated.finished_at
        for container in (status.container_statuses or [])
        if container.state and container.state.terminated and container.state.terminated.finished_at
    ] or [c.last_transition_time for c in (status.conditions or []) if c.last_transition_time]
    return max(finished, default=pod.metadata.creation_timestamp)


def expired_pods(pods: Iterable[Any], cutoff: datetime) -> list[Any]:
    """Of `pods` (the Kubernetes client's V1Pod), the failed task pods that finished
    before `cutoff`."""
    label = PIPELINE_LABEL["kubernetes"]
    return [
        pod
        for pod in pods
        if label in (pod.metadata.labels or {})
        and pod.status.phase == "Failed"
        and _pod_finished_at(pod) < cutoff
    ]


def remove_failed_pods(core_v1: Any, namespace: str, cutoff: datetime) -> list[str]:
    """Deletes the failed task pods in `namespace` that finished before `cutoff`;
    `core_v1` is the Kubernetes client's CoreV1Api. Returns their names."""
    from kubernetes.client.exceptions import ApiException

    listed = core_v1.list_namespaced_pod(
        namespace, label_selector=PIPELINE_LABEL["kubernetes"], field_selector="status.phase=Failed"
    )
    removed = []
    for pod in expired_pods(listed.items, cutoff):
        name = pod.metadata.name
        try:
            core_v1.delete_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status != NOT_FOUND:
                raise
            log.info("Pod %s is gone already", name)
            continue
        labels = pod.metadata.labels
        log.info(
            "Deleted pod %s of %s.%s (%s, finished %s)",
            name,
            labels[PIPELINE_LABEL["kubernetes"]],
            labels.get(TASK_LABEL["kubernetes"]),
            pod.status.reason or "Failed",
            _pod_finished_at(pod).isoformat(),
        )
        removed.append(name)
    return removed


# ---- pipeline_images --------------------------------------------------------------


def _registry_host(reference: str) -> str:
    return reference.split("/", 1)[0]


def unused_registry_references(
    images: Iterable[Mapping[str, Any]], deployed: Collection[str], in_use: Collection[str]
) -> list[str]:
    """The references to remove, so that the local images of the stack's registry that
    no deployed pipeline image names and no container uses are gone.

    `images` is the Engine's image list, `deployed` the pipeline images of this stack
    (`<registry>/<repository>@sha256:<digest>`: the registry is theirs, and an image is
    deployed when one of its repository digests is one of them), `in_use` the image IDs
    of all containers, stopped ones too. An image's digest references come before its
    tags: removing a tag takes the digests of the same repository with it, and the last
    reference removed removes the image.
    """
    registries = {_registry_host(reference) for reference in deployed}
    references = []
    for image in images:
        digests = [r for r in image.get("RepoDigests") or [] if _registry_host(r) in registries]
        tags = [r for r in image.get("RepoTags") or [] if _registry_host(r) in registries]
        if not digests + tags or image["Id"] in in_use or set(digests) & set(deployed):
            continue
        references += sorted(digests) + sorted(tags)
    return references


def remove_unused_images(client: Any, deployed: Collection[str]) -> list[str]:
    """Removes the registry's images no deployed pipeline and no container uses (see
    unused_registry_references), never forcing; `client` is docker's APIClient. Returns
    the references removed."""
    from docker.errors import APIError

    in_use = {container["ImageID"] for container in client.containers(all=True)}
    removed = []
    for reference in unused_registry_references(client.images(), deployed, in_use):
        try:
            client.remove_image(reference)
        except APIError as error:
            if error.status_code not in (NOT_FOUND, CONFLICT):
                raise
            # A container created since the list, or the reference went with another.
            log.info("Kept %s: %s", reference, error.explanation)
            continue
        log.info("Removed image reference %s", reference)
        removed.append(reference)
    return removed


# ---- backups ----------------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    directory: Path
    taken_at: datetime
    bytes: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_backup(directory: Path) -> Backup:
    """The backup in `directory`, if its manifest is there and every file matches it;
    otherwise HousekeepingError says what is wrong."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise HousekeepingError(f"no {MANIFEST}: unfinished, or its backup failed")
    try:
        manifest = json.loads(manifest_path.read_text())
        taken_at = datetime.fromisoformat(manifest["taken_at"])
        if taken_at.tzinfo is None:
            raise ValueError(f"taken_at {manifest['taken_at']!r} has no time zone")
        files = {
            name: (int(entry["bytes"]), str(entry["sha256"]))
            for name, entry in manifest["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise HousekeepingError(f"{MANIFEST} is malformed ({error!r})") from None
    missing = sorted(set(BACKUP_FILES) - set(files))
    if missing:
        raise HousekeepingError(f"{MANIFEST} lists no {', '.join(missing)}")
    for name, (size, sha256) in files.items():
        path = directory / name
        # Files of this directory only: the manifest must not point elsewhere.
        if path.parent != directory or path.is_symlink() or not path.is_file():
            raise HousekeepingError(f"{name} is not a file of the backup")
        if path.stat().st_size != size:
            raise HousekeepingError(f"{name} has {path.stat().st_size} bytes, its manifest {size}")
        if _sha256(path) != sha256:
            raise HousekeepingError(f"{name} does not match its sha256 in the manifest")
    total = sum(size for size, _ in files.values())
    return Backup(directory=directory, taken_at=taken_at, bytes=total)


def _is_backup_name(name: str) -> bool:
    try:
        datetime.strptime(name, BACKUP_NAME)
    except ValueError:
        return False
    return True


def check_backups(folder: Path, *, now: datetime, every_seconds: int) -> Backup:
    """The newest complete backup in `folder`; HousekeepingError when there is none or it
    is older than BACKUP_INTERVALS_TOLERATED backup intervals.

    Backups are verified from the newest down, and only until one is complete: the
    newest may still be being written, and hashing every dump each day would cost more
    than the check is worth.
    """
    if not folder.is_dir():
        raise HousekeepingError(f"the backups directory {folder} does not exist")
    backups = sorted(
        (path for path in folder.iterdir() if path.is_dir() and _is_backup_name(path.name)),
        reverse=True,
    )
    newest = None
    for directory in backups:
        try:
            newest = verify_backup(directory)
            break
        except HousekeepingError as problem:
            log.warning("Backup %s is not complete: %s", directory, problem)
    if newest is None:
        raise HousekeepingError(
            f"there is no complete backup in {folder} ({len(backups)} backup directories); "
            f"backups are due every {timedelta(seconds=every_seconds)}"
        )
    age = now - newest.taken_at
    limit = timedelta(seconds=every_seconds * BACKUP_INTERVALS_TOLERATED)
    log.info(
        "Newest complete backup: %s, taken %s (%s ago), %d bytes; %d backups kept",
        newest.directory,
        newest.taken_at.isoformat(),
        age,
        newest.bytes,
        len(backups),
    )
    if age > limit:
        raise HousekeepingError(
            f"the newest complete backup, {newest.directory}, is {age} old; backups are due "
            f"every {timedelta(seconds=every_seconds)}, so at most {limit} is expected"
        )
    return newest


# ---- disk_usage -----------------------------------------------------------------------


@dataclass(frozen=True)
class DiskUsage:
    images: int
    images_bytes: int
    containers: int
    containers_bytes: int
    # Each volume's size; -1 where the engine did not measure it.
    volumes: dict[str, int]


# The engine makes one disk-usage report at a time and refuses another meanwhile (an
# operator's `docker system df`, say); the job waits for it rather than fail.
ENGINE_BUSY = "a disk usage operation is already running"


@retry(
    retry=retry_if_exception(lambda error: ENGINE_BUSY in str(error)),
    stop=stop_after_attempt(10),
    wait=wait_fixed(3),
    reraise=True,
)
def engine_disk_report(client: Any) -> Mapping[str, Any]:
    """The Docker Engine's disk-usage report (GET /system/df)."""
    return dict(client.df())


def disk_usage(report: Mapping[str, Any]) -> DiskUsage:
    """What the Docker Engine's disk-usage report (GET /system/df) says is on its disk."""
    containers = report.get("Containers") or []
    return DiskUsage(
        images=len(report.get("Images") or []),
        images_bytes=int(report.get("LayersSize") or 0),
        containers=len(containers),
        containers_bytes=sum(int(c.get("SizeRw") or 0) for c in containers),
        volumes={
            v["Name"]: int((v.get("UsageData") or {}).get("Size", -1))
            for v in report.get("Volumes") or []
        },
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# ---- The jobs, as the scheduler runs them ---------------------------------------------


def _metadata(runtime: Runtime, now: datetime) -> None:
    cutoff = now - timedelta(seconds=runtime.housekeeping.metadata_seconds)
    database_url = metadata_database_url(runtime.housekeeping.metadata_conn_id)
    clean_metadata(database_url, cutoff)
    vacuum_metadata(database_url)


def _task_logs(runtime: Runtime, now: datetime) -> None:
    from airflow.sdk import conf

    folder = Path(conf.get("logging", "base_log_folder"))
    removed = remove_old_files(
        folder, now - timedelta(seconds=runtime.housekeeping.task_logs_seconds)
    )
    log.info(
        "Removed %d log files (%d bytes) and %d emptied directories from %s",
        removed.files,
        removed.bytes,
        removed.directories,
        folder,
    )


def _docker_client(runtime: Runtime) -> Any:
    """docker's APIClient on the platform's Docker API proxy, as the provider makes it."""
    from airflow.providers.docker.hooks.docker import DockerHook

    assert runtime.docker is not None
    return DockerHook(docker_conn_id=None, base_url=runtime.docker.url).api_client


def _failed_task_containers(runtime: Runtime, now: datetime) -> None:
    cutoff = now - timedelta(seconds=runtime.housekeeping.failed_task_containers_seconds)
    if runtime.docker is not None:
        removed = remove_failed_containers(
            _docker_client(runtime), cutoff, runtime.docker.task_container_prefix
        )
        what = "containers"
    else:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        assert runtime.kubernetes is not None
        # The scheduler's own service account, which may list and delete pods there
        # (infra/etlstack/kubernetes/rbac.py), as for launching them.
        core_v1 = KubernetesHook(kubernetes_conn_id=None, in_cluster=True).core_v1_client
        removed = remove_failed_pods(core_v1, runtime.kubernetes.namespace, cutoff)
        what = "pods"
    log.info("Removed %d failed task %s that finished before %s", len(removed), what, cutoff)


def _pipeline_images(runtime: Runtime, now: datetime) -> None:
    if runtime.docker is None:
        log.info("Nothing to do: on Kubernetes the kubelet removes unused images itself")
        return
    removed = remove_unused_images(_docker_client(runtime), runtime.pipeline_images.values())
    log.info("Removed %d image references", len(removed))


def _backups(runtime: Runtime, now: datetime) -> None:
    settings = runtime.housekeeping
    if settings.backups_directory is None or settings.backups_every_seconds is None:
        log.info("Nothing to check: the external database keeps its own backups")
        return
    check_backups(
        Path(settings.backups_directory), now=now, every_seconds=settings.backups_every_seconds
    )


def _disk_usage(runtime: Runtime, now: datetime) -> None:
    if runtime.docker is None:
        log.info(
            "Not measured on Kubernetes: the registry's claim is registry.storageSize, and "
            "its use is for the storage provider to report"
        )
        return
    usage = disk_usage(engine_disk_report(_docker_client(runtime)))
    log.info(
        "Docker's disk: %d images, %s; %d containers, %s; %d volumes, %s",
        usage.images,
        _mib(usage.images_bytes),
        usage.containers,
        _mib(usage.containers_bytes),
        len(usage.volumes),
        _mib(sum(size for size in usage.volumes.values() if size > 0)),
    )
    registry = runtime.docker.registry_volume
    if registry is None:
        log.info("The registry is external: its size is for its operator to report")
        return
    if registry not in usage.volumes:
        raise HousekeepingError(
            f"the registry's volume {registry!r} is not on this Docker host; its images are gone"
        )
    log.info("The registry's volume %s holds %s", registry, _mib(usage.volumes[registry]))


_JOBS: dict[str, Callable[[Runtime, datetime], None]] = {
    "metadata": _metadata,
    "task_logs": _task_logs,
    "failed_task_containers": _failed_task_containers,
    "pipeline_images": _pipeline_images,
    "backups": _backups,
    "disk_usage": _disk_usage,
}
JOBS = tuple(_JOBS)


def settings_doc(runtime: Runtime) -> str:
    """What this stack keeps, in Markdown, for the DAG's documentation."""
    settings = runtime.housekeeping
    lines = [
        f"- metadata: {timedelta(seconds=settings.metadata_seconds)}",
        f"- task logs: {timedelta(seconds=settings.task_logs_seconds)}",
        f"- failed task containers: {timedelta(seconds=settings.failed_task_containers_seconds)}",
    ]
    if settings.backups_directory is None or settings.backups_every_seconds is None:
        lines.append("- backups: kept by the external database")
    else:
        lines.append(
            f"- backups: one every {timedelta(seconds=settings.backups_every_seconds)}, "
            f"in {settings.backups_directory}"
        )
    return "This stack keeps:\n\n" + "\n".join(lines) + "\n"


class Housekeeping(BaseOperator):
    """Runs one housekeeping job of JOBS, with this stack's settings (ETLSTACK_RUNTIME)."""

    def __init__(self, *, job: str, **kwargs: Any) -> None:
        if job not in _JOBS:
            raise ValueError(f"no housekeeping job {job!r}; the jobs are {', '.join(JOBS)}")
        super().__init__(**{"task_id": job, **kwargs})
        self.job = job

    def execute(self, context: Context) -> None:
        _JOBS[self.job](load(), datetime.now(UTC))
