"""The talk's own way of running a task, beside the platform, for the benchmarks to compare.

The talk's Airflow reaches the Docker socket directly: no API proxy, no DAG factory, no
cluster policy. Two ways of launching a container from it are measured:

- `raw socket`: a PythonOperator that starts the container with the Docker SDK, waits
  for it, prints its output and removes it;
- `DockerOperator`: a plain DockerOperator on the socket.

The peer Airflow is the platform's own, started again beside it: the same image and the
same settings (executor, parallelism, intervals, the pipeline pool and its slots, read
from the platform's containers), with its own metadata database on the same PostgreSQL.
What differs is only what the talk does differently: the socket is mounted into the
scheduler, the cluster policy is not loaded, and the DAGs are the two above. Its tasks
start the same container as the platform's task (image, command, user, limits, network,
warehouse), so what is compared is what each way adds around it.

While one side is measured the other side's Airflow containers are paused, so neither
pays for the other's idle polling.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from harness import AirflowAPI, Platform
from sqlalchemy.engine import make_url

from tests.bench import platform_bench as bench
from tests.support.polling import until
from tests.support.ports import free_port

DATABASE = "bench_peer"
DAGS = "/opt/peer/dags"
SOCKET = "/var/run/docker.sock"
LABEL = "org.etlstack.bench-peer"
# What a platform's Airflow component is called, and the command the peer runs it with.
COMPONENTS = {
    "airflow-api-server": ["airflow", "api-server"],
    "airflow-scheduler": ["airflow", "scheduler"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
}

PLATFORM = "platform"
RAW_SOCKET = "raw socket"
DOCKER_OPERATOR = "DockerOperator"
DOCKER_RUN = "docker run"

_HEADER = '''"""Benchmark peer ({way}): {tasks} runs of {pipeline}'s {task} task, as the talk runs them."""

import os
from datetime import UTC, datetime

from airflow.sdk import DAG
'''

_RAW_SOCKET = """
from airflow.providers.standard.operators.python import PythonOperator

LAUNCH = {launch!r}


def run_container() -> None:
    import docker

    client = docker.DockerClient(base_url="unix://{socket}")
    container = client.containers.run(
        detach=True, environment={{"WAREHOUSE_URL": os.environ["AIRFLOW_CONN_WAREHOUSE"]}}, **LAUNCH
    )
    try:
        status = container.wait()["StatusCode"]
        print(container.logs().decode(errors="replace"))
    finally:
        container.remove()
    if status != 0:
        raise RuntimeError(f"the container exited with {{status}}")


with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), catchup=False):
    for index in range({tasks}):
        PythonOperator(task_id=f"{task}_{{index:02d}}", python_callable=run_container, pool={pool!r})
"""

_DOCKER_OPERATOR = """
from airflow.providers.docker.operators.docker import DockerOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), catchup=False):
    for index in range({tasks}):
        DockerOperator(
            task_id=f"{task}_{{index:02d}}",
            # A command ending in .sh would be read as a Jinja template file; the Docker
            # SDK splits the string, so the trailing space reaches no one.
            docker_url="unix://{socket}",
            image={image!r},
            command={command!r},
            network_mode={network!r},
            user={user!r},
            mem_limit={memory!r},
            cpus={cpus!r},
            private_environment={{"WAREHOUSE_URL": os.environ.get("AIRFLOW_CONN_WAREHOUSE", "")}},
            mount_tmp_dir=False,
            auto_remove="success",
            do_xcom_push=False,
            pool={pool!r},
        )
"""


@dataclass(frozen=True)
class PeerDag:
    """A DAG of the peer: `tasks` independent runs of the platform's task, launched `way`."""

    way: str
    tasks: int

    @property
    def dag_id(self) -> str:
        return f"bench_peer_{self.way.lower().replace(' ', '_')}_{self.tasks}"

    @property
    def task_ids(self) -> set[str]:
        return {f"{bench.TASK}_{index:02d}" for index in range(self.tasks)}


def dag_source(dag: PeerDag, task: bench.RawTask) -> str:
    way, tasks = dag.way, dag.tasks
    common = {
        "dag_id": dag.dag_id,
        "tasks": tasks,
        "task": bench.TASK,
        "pool": bench.POOL,
        "socket": SOCKET,
    }
    header = _HEADER.format(way=way, tasks=tasks, pipeline=bench.PIPELINE, task=bench.TASK)
    if way == RAW_SOCKET:
        launch = {
            "image": task.image,
            "command": [f"run_{bench.TASK}.sh"],
            "network": task.network,
            "user": task.user,
            "mem_limit": task.memory,
            "nano_cpus": round(float(task.cpus) * 1e9),
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        }
        return header + _RAW_SOCKET.format(launch=launch, **common)
    return header + _DOCKER_OPERATOR.format(
        image=task.image,
        command=f"run_{bench.TASK}.sh ",
        network=task.network,
        user=task.user,
        memory=task.memory,
        cpus=float(task.cpus),
        **common,
    )


@contextlib.contextmanager
def paused(containers: list[Any]) -> Iterator[None]:
    """`containers` paused for the block: an Airflow that is not being measured costs the
    one that is nothing."""
    for container in containers:
        container.pause()
    try:
        yield
    finally:
        for container in containers:
            container.unpause()


def platform_paused(platform: Platform) -> contextlib.AbstractContextManager[None]:
    """The platform's Airflow paused, for a way of running tasks that does not use it."""
    return paused([platform.container(name) for name in bench.PLATFORM_AIRFLOW])


@dataclass
class Peer:
    """The talk's Airflow, running beside the platform, paused until `measured()`."""

    platform: Platform
    airflow: AirflowAPI
    containers: list[Any]

    @contextlib.contextmanager
    def measured(self) -> Iterator[None]:
        """The peer runs while the platform's Airflow is paused."""
        with platform_paused(self.platform):
            for container in self.containers:
                container.unpause()
            try:
                yield
            finally:
                for container in self.containers:
                    container.pause()


@dataclass(frozen=True)
class Way:
    """One way of running the benchmark's task: `run` does it once; `airflow` are the
    containers whose CPU is the orchestration's; `context` pauses the others meanwhile."""

    run: Callable[[], Any]
    airflow: list[Any]
    context: contextlib.AbstractContextManager[None]


def ways(
    platform: Platform,
    peer: Peer,
    *,
    docker_run: Callable[[], Any],
    through: Callable[[AirflowAPI, str], Callable[[], Any]],
    platform_dag: str,
    tasks: int,
) -> dict[str, Way]:
    """The four ways, each measured alone: `docker run`, the platform's `platform_dag`,
    and the peer's DAG of `tasks` tasks launched each of its two ways; `through(airflow,
    dag_id)` runs a DAG once."""
    measured = {
        DOCKER_RUN: Way(docker_run, [], platform_paused(platform)),
        PLATFORM: Way(
            through(platform.airflow, platform_dag),
            bench.platform_airflow(platform),
            contextlib.nullcontext(),
        ),
    }
    for way in (RAW_SOCKET, DOCKER_OPERATOR):
        dag = PeerDag(way, tasks)
        measured[way] = Way(through(peer.airflow, dag.dag_id), peer.containers, peer.measured())
    return measured


def _environment(container: Any, replace: dict[str, str], drop: tuple[str, ...]) -> list[str]:
    kept = [
        pair
        for pair in container.attrs["Config"]["Env"]
        if pair.split("=", 1)[0] not in {*replace, *drop}
    ]
    return kept + [f"{name}={value}" for name, value in replace.items()]


def _platform_network(platform: Platform) -> str:
    """The network the scheduler reaches PostgreSQL on."""
    scheduler = set(platform.container("airflow-scheduler").attrs["NetworkSettings"]["Networks"])
    postgres = set(platform.container("postgres").attrs["NetworkSettings"]["Networks"])
    (shared,) = scheduler & postgres
    return shared


def _maintain(platform: Platform, *statements: str) -> None:
    """Run `statements` as PostgreSQL's superuser, each in a transaction of its own."""
    with contextlib.closing(platform.metadata_database()) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


DROP_DATABASE = f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"


def _remove_peers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        container.remove(force=True)


@contextlib.contextmanager
def peer_airflow(platform: Platform, dags: list[PeerDag]) -> Iterator[Peer]:
    """The talk's Airflow with `dags` in its DAG folder, every one parsed, the pool in
    place; paused until `Peer.measured()`. Removed afterwards, with its database."""
    client = platform.client
    scheduler = platform.container("airflow-scheduler")
    database_url = make_url(
        dict(pair.split("=", 1) for pair in scheduler.attrs["Config"]["Env"])[
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        ]
    )
    prefix = scheduler.name.removesuffix("-airflow-scheduler")
    api_server = f"{prefix}-peer-api-server"
    port = free_port()
    replace = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url.set(database=DATABASE).render_as_string(
            hide_password=False
        ),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_server}:8080/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS,
        # The platform's cluster policy is on this path; the talk's Airflow has none.
        "PYTHONPATH": "",
    }
    # Only the platform's housekeeping reads Airflow's database as a connection.
    drop = ("AIRFLOW_CONN_AIRFLOW_METADATA",)
    network = _platform_network(platform)
    folder = Path(tempfile.mkdtemp(prefix="bench-peer-dags-"))
    folder.chmod(0o755)
    task = bench.raw_task(platform)
    for dag in dags:
        path = folder / f"{dag.dag_id}.py"
        path.write_text(dag_source(dag, task))
        path.chmod(0o644)
    mounts = {str(folder): {"bind": DAGS, "mode": "ro"}}
    socket_group = os.stat(SOCKET).st_gid

    _remove_peers(client)
    _maintain(platform, DROP_DATABASE, f"CREATE DATABASE {DATABASE} OWNER {database_url.username}")
    containers: list[Any] = []
    try:
        init = client.containers.run(
            scheduler.image,
            ["etlstack-init"],
            environment=_environment(
                client.containers.get(f"{prefix}-airflow-init"), replace, drop
            ),
            network=network,
            labels={LABEL: "init"},
            detach=True,
        )
        status = init.wait(timeout=600)["StatusCode"]
        assert status == 0, init.logs().decode(errors="replace")[-3000:]
        for component, command in COMPONENTS.items():
            source = platform.container(component)
            name = f"{prefix}-peer-{component.removeprefix('airflow-')}"
            options: dict[str, Any] = {}
            if component == "airflow-api-server":
                options["ports"] = {"8080/tcp": ("127.0.0.1", port)}
            if component == "airflow-scheduler":
                options["volumes"] = {**mounts, SOCKET: {"bind": SOCKET, "mode": "rw"}}
                options["group_add"] = [str(socket_group)]
            else:
                options["volumes"] = mounts
            containers.append(
                client.containers.run(
                    source.image,
                    command,
                    name=name,
                    hostname=name,
                    environment=_environment(source, replace, drop),
                    network=network,
                    labels={LABEL: component},
                    detach=True,
                    **options,
                )
            )
        admin = platform.airflow
        airflow = AirflowAPI(f"http://127.0.0.1:{port}", admin.username, admin.password)
        until(
            lambda: airflow.get("/api/v2/monitor/health"),
            timeout=300,
            interval=3,
            what="the peer Airflow's api-server answers",
            retry_on=(Exception,),
        )
        for dag in dags:
            bench.wait_for_dag(airflow, dag.dag_id, dag.task_ids, timeout=600)
        for container in containers:
            container.pause()
        yield Peer(platform, airflow, containers)
    finally:
        for container in containers:
            with contextlib.suppress(docker.errors.APIError):
                container.reload()
                if container.status == "paused":
                    container.unpause()
        _remove_peers(client)
        _maintain(platform, DROP_DATABASE)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
