"""The platform's housekeeping (pipeline_factory/housekeeping.py): each job on real files,
a real `airflow db clean`, or the documents the Docker Engine and the Kubernetes API
return, and the DAG that runs them, as every stack that builds from this repository
parses it. The Docker API proxy lets the jobs' calls through: test_docker_api_proxy.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from kubernetes.client import models as k8s
from pipeline_testing.postgres import throwaway_server
from sqlalchemy.engine import make_url
from tenacity import wait_none

from etlstack import render
from pipeline_factory import PIPELINE_LABEL, TASK_LABEL
from pipeline_factory.contract import Runtime
from pipeline_factory.housekeeping import (
    BACKUP_FILES,
    BACKUP_NAME,
    ENGINE_BUSY,
    MANIFEST,
    DiskUsage,
    Housekeeping,
    HousekeepingError,
    check_backups,
    clean_metadata,
    disk_usage,
    engine_disk_report,
    expired_containers,
    expired_pods,
    metadata_clean_command,
    metadata_database_url,
    remove_old_files,
    unused_registry_references,
    vacuum_metadata,
)
from tests.support.stacks import evaluate
from tests.unit.dag_helpers import BUILDING_STACKS, DAGS, RUNTIME_ENV, parse, stack_runtime
from tests.unit.docker.containers import CONTAINER

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)

# ---- task_logs ------------------------------------------------------------------------

KEEP_LOGS = 30 * DAY
# (path under the log folder, size, age): what Airflow leaves there over time.
LOG_FILES = [
    ("dag_id=weather/run_id=old/task_id=extract/attempt=1.log", 100, 40 * DAY),
    ("dag_id=weather/run_id=old/task_id=load/attempt=1.log", 50, 31 * DAY),
    ("dag_id=weather/run_id=new/task_id=extract/attempt=1.log", 70, DAY),
    ("dag_id=weather/run_id=retried/task_id=load/attempt=1.log", 30, 35 * DAY),
    ("dag_id=weather/run_id=retried/task_id=load/attempt=2.log", 20, 29 * DAY),
    ("dag_id=removed_dag/run_id=r/task_id=t/attempt=1.log", 10, 60 * DAY),
    ("dag_processor/2026-10-01/weather.py.log", 5, 62 * DAY),
]


def _age(path: Path, age: timedelta) -> None:
    """Sets `path`'s own modification time (a link's, not its target's) to `age` ago."""
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _tree(root: Path) -> set[str]:
    """Every path under `root`, relative, without entering links."""
    found = set()
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def test_task_logs_older_than_the_retention_go_with_the_directories_they_emptied(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "logs"
    for relative, size, age in LOG_FILES:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        _age(path, age)
    # Made just now by a task about to write its log there: not emptied by the job.
    (folder / "dag_id=weather/run_id=starting/task_id=extract").mkdir(parents=True)
    directories_before = {p for p in _tree(folder) if (folder / p).is_dir()}

    removed = remove_old_files(folder, NOW - KEEP_LOGS)

    old = [(relative, size) for relative, size, age in LOG_FILES if age > KEEP_LOGS]
    assert removed.files == len(old)
    assert removed.bytes == sum(size for _, size in old)
    young = [Path(relative) for relative, _, age in LOG_FILES if age <= KEEP_LOGS]
    kept = {str(p) for p in young} | {str(parent) for p in young for parent in p.parents}
    kept |= {"dag_id=weather/run_id=starting", "dag_id=weather/run_id=starting/task_id=extract"}
    assert _tree(folder) == kept - {"."}
    assert removed.directories == len(directories_before - kept)
    assert folder.is_dir()


def test_task_logs_never_reach_outside_the_folder_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "directory").mkdir(parents=True)
    targets = [outside / "secret.log", outside / "directory" / "old.log"]
    for target in targets:
        target.write_text("not a task log")
        _age(target, 100 * DAY)
    folder = tmp_path / "logs"
    (folder / "dag_id=weather").mkdir(parents=True)
    old_links = [folder / "dag_id=weather" / "file-link", folder / "directory-link"]
    old_links[0].symlink_to(targets[0])
    old_links[1].symlink_to(outside / "directory")
    young_link = folder / "young-link"
    young_link.symlink_to(targets[0])
    for link in old_links:
        _age(link, 100 * DAY)

    removed = remove_old_files(folder, NOW - KEEP_LOGS)

    assert all(target.read_text() == "not a task log" for target in targets)
    # The links themselves are old entries of the folder, and go; what they point at stays.
    assert not any(os.path.lexists(link) for link in old_links)
    assert young_link.is_symlink()
    assert removed.files == len(old_links)


def test_a_missing_log_folder_fails_the_job(tmp_path: Path) -> None:
    with pytest.raises(HousekeepingError, match="does not exist"):
        remove_old_files(tmp_path / "logs", NOW)


# ---- backups --------------------------------------------------------------------------

EVERY = DAY


def _backup(folder: Path, taken_at: datetime) -> Path:
    """A backup as the backup job writes it."""
    directory = folder / taken_at.strftime(BACKUP_NAME)
    directory.mkdir(parents=True)
    files = {}
    for name in BACKUP_FILES:
        content = f"{name} of {taken_at.isoformat()}".encode()
        (directory / name).write_bytes(content)
        files[name] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    document = {"taken_at": taken_at.isoformat().replace("+00:00", "Z"), "files": files}
    (directory / MANIFEST).write_text(json.dumps(document))
    return directory


def _unfinished(directory: Path) -> None:
    (directory / MANIFEST).unlink()


def _sha_mismatch(directory: Path) -> None:
    dump = directory / BACKUP_FILES[0]
    dump.write_bytes(bytes(reversed(dump.read_bytes())))  # same size, other bytes


def _size_mismatch(directory: Path) -> None:
    with (directory / BACKUP_FILES[1]).open("ab") as dump:
        dump.write(b"\0")


def _dump_missing(directory: Path) -> None:
    (directory / BACKUP_FILES[1]).unlink()


def _manifest_edit(change: Any) -> Any:
    def edit(directory: Path) -> None:
        path = directory / MANIFEST
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def _points_outside(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    return manifest


BROKEN = {
    "unfinished: no manifest": _unfinished,
    "a dump does not match its sha256": _sha_mismatch,
    "a dump does not have its size": _size_mismatch,
    "a dump is missing": _dump_missing,
    "the manifest lists one dump only": _manifest_edit(
        lambda m: m | {"files": {BACKUP_FILES[0]: m["files"][BACKUP_FILES[0]]}}
    ),
    "the manifest names a file outside the backup": _manifest_edit(_points_outside),
    "the manifest is not JSON": lambda d: (d / MANIFEST).write_text("{"),
    "taken_at has no time zone": _manifest_edit(lambda m: m | {"taken_at": "2026-12-02T09:00:00"}),
}


def test_the_newest_complete_backup_is_found_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _backup(tmp_path, NOW - 2 * DAY)
    newest = _backup(tmp_path, NOW - timedelta(hours=6))
    (tmp_path / "lost+found").mkdir()  # not a backup: not counted
    caplog.set_level(logging.INFO)

    backup = check_backups(tmp_path, now=NOW, every_seconds=int(EVERY.total_seconds()))

    assert backup.directory == newest
    assert backup.taken_at == NOW - timedelta(hours=6)
    assert backup.bytes == sum((newest / name).stat().st_size for name in BACKUP_FILES)
    assert f"Newest complete backup: {newest}" in caplog.text
    assert f"{backup.bytes} bytes; 2 backups kept" in caplog.text


@pytest.mark.parametrize("breakage", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_newest_backup_is_passed_over_for_the_one_before(
    breakage: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older = _backup(tmp_path, NOW - timedelta(hours=36))
    newest = _backup(tmp_path, NOW - timedelta(hours=1))
    breakage(newest)

    backup = check_backups(tmp_path, now=NOW, every_seconds=int(EVERY.total_seconds()))

    assert backup.directory == older
    assert f"Backup {newest} is not complete" in caplog.text


@pytest.mark.parametrize("breakage", BROKEN.values(), ids=BROKEN.keys())
def test_without_a_complete_backup_the_job_fails(breakage: Any, tmp_path: Path) -> None:
    breakage(_backup(tmp_path, NOW - timedelta(hours=1)))
    with pytest.raises(HousekeepingError, match=f"no complete backup in {tmp_path}"):
        check_backups(tmp_path, now=NOW, every_seconds=int(EVERY.total_seconds()))


def test_a_backup_older_than_two_intervals_fails_the_job_naming_it_and_its_age(
    tmp_path: Path,
) -> None:
    every = int(EVERY.total_seconds())
    newest = _backup(tmp_path, NOW - 2 * EVERY)
    assert check_backups(tmp_path, now=NOW, every_seconds=every).directory == newest
    later = NOW + timedelta(minutes=1)
    with pytest.raises(HousekeepingError) as stale:
        check_backups(tmp_path, now=later, every_seconds=every)
    assert str(newest) in str(stale.value)
    assert f"is {later - (NOW - 2 * EVERY)} old" in str(stale.value)


def test_no_backups_at_all_fail_the_job(tmp_path: Path) -> None:
    with pytest.raises(HousekeepingError, match="no complete backup"):
        check_backups(tmp_path, now=NOW, every_seconds=3600)
    with pytest.raises(HousekeepingError, match="does not exist"):
        check_backups(tmp_path / "absent", now=NOW, every_seconds=3600)


# ---- failed_task_containers -------------------------------------------------------------

KEEP_FAILED = 7 * DAY


def _container(
    name: str, *, finished: timedelta, status: str = "exited", labelled: bool = True
) -> dict[str, Any]:
    """A `docker inspect` document, trimmed to what the selection reads."""
    labels = {PIPELINE_LABEL["docker"]: "weather", TASK_LABEL["docker"]: "load"}
    return {
        "Id": name,
        "Name": f"/{name}",
        "Config": {"Labels": labels if labelled else {"maintainer": "someone"}},
        "State": {
            "Status": status,
            "ExitCode": 1,
            # As the Engine writes it: nanoseconds, Z.
            "FinishedAt": (NOW - finished).strftime("%Y-%m-%dT%H:%M:%S.%f123Z"),
        },
    }


def test_only_task_containers_that_exited_before_the_retention_are_selected() -> None:
    containers = [
        _container("failed-long-ago", finished=8 * DAY),
        _container("failed-recently", finished=6 * DAY),
        _container("not-a-task", finished=30 * DAY, labelled=False),
        _container("running-again", finished=30 * DAY, status="running"),
        _container("being-removed", finished=30 * DAY, status="removing"),
    ]
    selected = expired_containers(containers, NOW - KEEP_FAILED)
    assert [c["Id"] for c in selected] == ["failed-long-ago"]


def _pod(
    name: str,
    *,
    phase: str = "Failed",
    finished: timedelta | None = None,
    changed: timedelta | None = None,
    created: timedelta = 60 * DAY,
    labelled: bool = True,
) -> k8s.V1Pod:
    """A pod as the Kubernetes client reads it; `finished`, `changed` and `created` are how
    long ago its container finished, its conditions last changed and it was created."""
    terminated = [
        k8s.V1ContainerStatus(
            name="base",
            image="weather",
            image_id="",
            ready=False,
            restart_count=0,
            state=k8s.V1ContainerState(
                terminated=k8s.V1ContainerStateTerminated(exit_code=1, finished_at=NOW - age)
            ),
        )
        for age in ([finished] if finished is not None else [])
    ]
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            name=name,
            creation_timestamp=NOW - created,
            labels={PIPELINE_LABEL["kubernetes"]: "weather"} if labelled else {"app": "other"},
        ),
        status=k8s.V1PodStatus(
            phase=phase,
            container_statuses=terminated,
            conditions=[
                k8s.V1PodCondition(type="Ready", status="False", last_transition_time=NOW - changed)
            ]
            if changed is not None
            else None,
        ),
    )


def test_only_task_pods_that_failed_before_the_retention_are_selected() -> None:
    pods = [
        _pod("failed-long-ago", finished=8 * DAY, changed=8 * DAY),
        _pod("failed-recently", finished=6 * DAY, changed=6 * DAY),
        # Evicted before its container ran: the last change of its conditions counts.
        _pod("evicted-long-ago", changed=8 * DAY),
        _pod("evicted-recently", changed=DAY, created=30 * DAY),
        _pod("succeeded", phase="Succeeded", finished=30 * DAY),
        _pod("not-a-task", finished=30 * DAY, labelled=False),
        # No time but its creation: that counts.
        _pod("failed-without-times", created=30 * DAY),
    ]
    selected = expired_pods(pods, NOW - KEEP_FAILED)
    assert [p.metadata.name for p in selected] == [
        "failed-long-ago",
        "evicted-long-ago",
        "failed-without-times",
    ]


# ---- pipeline_images ------------------------------------------------------------------

REGISTRY = "127.0.0.1:5000"
WEATHER = f"{REGISTRY}/etlstack/pipelines/weather"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _image(seed: str, *, digests: Sequence[str] = (), tags: Sequence[str] = ()) -> dict[str, Any]:
    """An entry of the Engine's image list (GET /images/json)."""
    return {"Id": _digest(seed), "RepoDigests": list(digests), "RepoTags": list(tags)}


DEPLOYED = [
    f"{WEATHER}@{_digest('weather v3')}",
    f"{REGISTRY}/etlstack/pipelines/smoke@{_digest('smoke')}",
]


def test_only_registry_images_no_deployed_pipeline_and_no_container_uses_are_removed() -> None:
    images = [
        _image("deployed", digests=[DEPLOYED[0]], tags=[f"{WEATHER}:v3"]),
        # An earlier release, pulled by digest and also tagged when it was built.
        _image("v2", digests=[f"{WEATHER}@{_digest('weather v2')}"], tags=[f"{WEATHER}:v2"]),
        # Built and tagged, never pushed.
        _image("v1", tags=[f"{WEATHER}:v1"]),
        # An earlier release a stopped container still uses.
        _image("in use", digests=[f"{WEATHER}@{_digest('in use')}"]),
        # Also tagged outside the registry: only the registry's references are removed.
        _image("dev", digests=[f"{WEATHER}@{_digest('dev')}"], tags=["weather:dev"]),
        _image("postgres", digests=[f"postgres@{_digest('postgres')}"], tags=["postgres:16"]),
        _image("look-alike", tags=[f"{REGISTRY}.evil.example/x:1", "127.0.0.1:50001/x:1"]),
        _image("dangling", digests=["<none>@<none>"], tags=["<none>:<none>"]),
    ]
    removed = unused_registry_references(images, DEPLOYED, in_use={_digest("in use")})
    assert removed == [
        f"{WEATHER}@{_digest('weather v2')}",
        f"{WEATHER}:v2",
        f"{WEATHER}:v1",
        f"{WEATHER}@{_digest('dev')}",
    ]


def test_no_image_list_yields_a_reference_of_a_deployed_or_used_image() -> None:
    # Whatever else an image has, one deployed digest or one container keeps it whole.
    deployed = _image(
        "d", digests=[f"{WEATHER}@{_digest('x')}", DEPLOYED[1]], tags=[f"{WEATHER}:x"]
    )
    used = _image("u", digests=[f"{WEATHER}@{_digest('u')}"], tags=[f"{WEATHER}:u"])
    assert unused_registry_references([deployed, used], DEPLOYED, in_use={used["Id"]}) == []
    assert unused_registry_references([used], DEPLOYED, in_use=set()) == [
        f"{WEATHER}@{_digest('u')}",
        f"{WEATHER}:u",
    ]


# ---- disk_usage -----------------------------------------------------------------------


def test_disk_usage_reads_the_engines_report() -> None:
    # Trimmed from a real GET /system/df of the end-to-end platform.
    report = {
        "LayersSize": 3 * 2**30,
        "Images": [{"Id": "sha256:1"}, {"Id": "sha256:2"}],
        "Containers": [{"Id": "a", "SizeRw": 4096}, {"Id": "b", "SizeRw": None}],
        "Volumes": [
            {"Name": "etlstack-local-registry-data", "UsageData": {"Size": 5 * 2**20}},
            {"Name": "unmeasured", "UsageData": None},
        ],
    }
    assert disk_usage(report) == DiskUsage(
        images=2,
        images_bytes=3 * 2**30,
        containers=2,
        containers_bytes=4096,
        volumes={"etlstack-local-registry-data": 5 * 2**20, "unmeasured": -1},
    )


def test_the_disk_report_waits_while_the_engine_makes_another() -> None:
    busy = RuntimeError(f"500 Server Error: Internal Server Error ({ENGINE_BUSY})")
    answers: list[Any] = [busy, busy, {"LayersSize": 1}]

    class Engine:
        def df(self) -> Any:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    assert engine_disk_report.retry_with(wait=wait_none())(Engine()) == {"LayersSize": 1}

    class Broken:
        def df(self) -> Any:
            raise RuntimeError("500 Server Error: something else")

    with pytest.raises(RuntimeError, match="something else"):
        engine_disk_report.retry_with(wait=wait_none())(Broken())


# ---- metadata -------------------------------------------------------------------------


def test_the_clean_command_is_one_the_installed_airflow_accepts() -> None:
    from airflow.cli.cli_parser import get_parser

    cutoff = NOW - 90 * DAY
    command = metadata_clean_command(cutoff)
    assert command[:3] == [sys.executable, "-m", "airflow"]
    arguments = get_parser().parse_args(command[3:])
    assert arguments.clean_before_timestamp == cutoff
    assert arguments.yes
    assert arguments.skip_archive
    assert arguments.error_on_cleanup_failure
    assert not arguments.dry_run


@pytest.fixture(scope="module")
def metadata_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite Airflow database at the installed Airflow's schema; its URL."""
    home = tmp_path_factory.mktemp("airflow")
    url = f"sqlite:///{home / 'airflow.db'}"
    environment = {**os.environ, "AIRFLOW_HOME": str(home)}
    environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
    migrate = [sys.executable, "-m", "airflow", "db", "migrate"]
    done = subprocess.run(migrate, env=environment, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return url


def test_metadata_older_than_the_cutoff_is_removed_and_the_rest_kept(
    metadata_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    cutoff = NOW - 90 * DAY
    path = metadata_database.removeprefix("sqlite:///")
    with sqlite3.connect(path) as database:
        for event, when in [("old", cutoff - DAY), ("recent", cutoff + DAY)]:
            database.execute(
                "INSERT INTO log (dttm, event) VALUES (?, ?)",
                (when.strftime("%Y-%m-%d %H:%M:%S.%f"), event),
            )

    output = clean_metadata(metadata_database, cutoff)

    with sqlite3.connect(path) as database:
        events = {row[0] for row in database.execute("SELECT event FROM log")}
    assert "old" not in events
    assert "recent" in events
    assert "Checking table log" in output


def test_a_failing_clean_fails_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    unreachable = "postgresql://airflow:secret@127.0.0.1:1/airflow"
    with pytest.raises(HousekeepingError, match="airflow db clean exited with status"):
        clean_metadata(unreachable, NOW)


def test_after_the_clean_the_space_of_the_removed_rows_is_reused() -> None:
    """As the platform has it: Airflow's database owned by a role that is no superuser.
    Autovacuum is off for the table, so only the job's VACUUM can free its space."""
    with throwaway_server(prefix="vacuum-pg-") as server:
        with closing(server.admin()) as admin, admin.cursor() as cursor:
            cursor.execute("CREATE ROLE airflow LOGIN")
            cursor.execute("CREATE DATABASE airflow OWNER airflow")
        url = f"postgresql://airflow@/airflow?host={server.directory}&port={server.port}"
        with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
            connection.autocommit = True
            cursor.execute(
                "CREATE TABLE log (id serial, event text) WITH (autovacuum_enabled = off)"
            )
            fill = "INSERT INTO log (event) SELECT repeat('x', 200) FROM generate_series(1, 5000)"
            cursor.execute(fill)
            cursor.execute("SELECT pg_relation_size('log')")
            (full,) = cursor.fetchone()
            cursor.execute("DELETE FROM log WHERE id <= 4500")

            vacuum_metadata(url)

            cursor.execute(fill.replace("5000", "4500"))
            cursor.execute("SELECT pg_relation_size('log')")
            (refilled,) = cursor.fetchone()
    # Without the VACUUM the new rows would go after the dead ones: almost twice the size.
    assert refilled <= full * 1.1, (full, refilled)


def test_the_database_comes_from_the_connection_the_stack_gives_the_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (scheduler,) = [
        r for r in evaluate("local").by_type(CONTAINER) if r.name.endswith("-scheduler")
    ]
    env = dict(str(pair).split("=", 1) for pair in render.reveal(scheduler.inputs["envs"]))
    conn_id = Runtime.model_validate_json(env[RUNTIME_ENV]).housekeeping.metadata_conn_id
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    monkeypatch.setenv(variable, env[variable])
    url = make_url(metadata_database_url(conn_id))
    database = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.username, url.password, url.host, url.port, url.database) == (
        database.username,
        database.password,
        database.host,
        database.port,
        database.database,
    )
    monkeypatch.delenv(variable)
    with pytest.raises(HousekeepingError, match=variable):
        metadata_database_url(conn_id)


# ---- The operator, with a stack's runtime ------------------------------------------------


def _runtime(monkeypatch: pytest.MonkeyPatch, stack: str, **housekeeping: Any) -> None:
    value = json.loads(stack_runtime(stack))
    value["housekeeping"] = {
        key: item
        for key, item in (value["housekeeping"] | housekeeping).items()
        if item is not None
    }
    monkeypatch.setenv(RUNTIME_ENV, json.dumps(value))


def test_an_unknown_job_is_refused() -> None:
    with pytest.raises(ValueError, match="no housekeeping job 'vacuum'"):
        Housekeeping(job="vacuum")


def test_the_task_logs_job_cleans_airflows_log_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _runtime(monkeypatch, "local")
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path))
    old = tmp_path / "dag_id=weather" / "attempt=1.log"
    old.parent.mkdir()
    old.write_text("done")
    _age(old, timedelta(days=365))
    caplog.set_level(logging.INFO)
    Housekeeping(job="task_logs").execute(context={})
    assert not old.parent.exists()
    assert f"Removed 1 log files (4 bytes) and 1 emptied directories from {tmp_path}" in caplog.text


def test_the_backups_job_checks_the_stacks_backups_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runtime(monkeypatch, "local", backupsDirectory=str(tmp_path))
    job = Housekeeping(job="backups")
    with pytest.raises(HousekeepingError, match=f"no complete backup in {tmp_path}"):
        job.execute(context={})
    _backup(tmp_path, datetime.now(UTC) - timedelta(minutes=1))
    job.execute(context={})


@pytest.mark.parametrize(
    ("job", "stack", "says"),
    [
        ("backups", "local", "the external database keeps its own backups"),
        ("pipeline_images", "dev", "the kubelet removes unused images itself"),
        ("disk_usage", "dev", "Not measured on Kubernetes"),
    ],
)
def test_a_job_with_nothing_to_do_on_a_stack_says_so(
    job: str,
    stack: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _runtime(monkeypatch, stack, backupsDirectory=None, backupsEverySeconds=None)
    caplog.set_level(logging.INFO)
    Housekeeping(job=job).execute(context={})
    assert says in caplog.text


# ---- The DAG --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", BUILDING_STACKS)
def test_the_dag_runs_each_job_daily_on_its_own(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNTIME_ENV, stack_runtime(stack))
    bag = parse(DAGS)
    assert bag.import_errors == {}
    dag = bag.dags["platform_housekeeping"]
    assert sorted(task.task_id for task in dag.tasks) == sorted(
        [
            "metadata",
            "task_logs",
            "failed_task_containers",
            "pipeline_images",
            "backups",
            "disk_usage",
        ]
    )
    for task in dag.tasks:
        assert type(task) is Housekeeping
        assert task.job == task.task_id
        # Independent: one failing does not stop the others.
        assert not task.upstream_task_ids
        assert not task.downstream_task_ids
    assert dag.schedule == "@daily"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is False
    assert set(dag.tags) == {"platform"}
    settings = json.loads(stack_runtime(stack))["housekeeping"]
    assert f"task logs: {timedelta(seconds=settings['taskLogsSeconds'])}" in (dag.doc_md or "")
