"""The local platform, deployed on a real Docker Engine, used as a user would.

The session fixture (conftest.py) has created exactly what the program declares and
waited for every healthcheck. These tests go through the ports published on
127.0.0.1 only: Airflow's REST API as the admin user, the registry's API, and
PostgreSQL's published port; plus `docker exec` where a user would do the same to
check what a component can reach.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import pytest
from harness import PROJECT_ROOT, Platform, http_status, log

from etlstack import render
from pipeline_factory.contract import cpu_cores, memory_bytes
from tests.support.polling import until

pytestmark = pytest.mark.e2e

WEATHER_SRC = PROJECT_ROOT / "pipelines" / "weather" / "src"
BROKEN_DAG = "e2e_broken_dag.py"


def _registry_credentials(platform: Platform) -> dict[str, str]:
    image = platform.evaluation.by_type("docker:index/image:Image")[0]
    registry = render.reveal(image.inputs["registry"])
    return {"username": registry["username"], "password": registry["password"]}


def _registry(platform: Platform) -> str:
    return str(platform.outputs["registry"])


def _status_as_user(platform: Platform, url: str, headers: dict[str, str] | None = None) -> int:
    """The status of a GET with the registry's credentials (kept out of assertion output)."""
    return http_status(url, {**(headers or {}), **_basic(_registry_credentials(platform))})


def _basic(credentials: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(
        f"{credentials['username']}:{credentials['password']}".encode()
    ).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def _anonymous_docker() -> Iterator[docker.APIClient]:
    """A Docker client with no stored registry credentials at all."""
    previous = os.environ.get("DOCKER_CONFIG")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["DOCKER_CONFIG"] = empty
        try:
            client = docker.APIClient(version="auto")
        finally:
            if previous is None:
                os.environ.pop("DOCKER_CONFIG")
            else:
                os.environ["DOCKER_CONFIG"] = previous
        try:
            yield client
        finally:
            client.close()


def _warehouse_rows(platform: Platform) -> tuple[set[str], set[tuple[str, str, int]]]:
    with platform.warehouse() as conn, conn.cursor() as cur:
        cur.execute("SELECT station_id FROM weather.stations")
        stations = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT station_id, day::text, readings FROM weather.daily_summary")
        days = {(row[0], row[1], int(row[2])) for row in cur.fetchall()}
    conn.close()
    return stations, days


def _expected_rows() -> tuple[set[str], set[tuple[str, str, int]]]:
    """What the weather pipeline's own logic makes of the data it ships."""
    sys.path.insert(0, str(WEATHER_SRC))
    try:
        extract = importlib.import_module("weather.extract")
        transform = importlib.import_module("weather.transform")
    finally:
        sys.path.remove(str(WEATHER_SRC))
    stations = transform.parse_stations(extract.read_feed("stations.csv", extract.STATION_COLUMNS))
    readings, _ = transform.clean_observations(
        extract.read_feed("observations.csv", extract.OBSERVATION_COLUMNS),
        {s.station_id for s in stations},
    )
    summaries = transform.daily_summaries(readings)
    return (
        {s.station_id for s in stations},
        {(s.station_id, s.day.isoformat(), s.readings) for s in summaries},
    )


def _exec_python(container: Any, code: str) -> tuple[int, str]:
    result = container.exec_run(["python3", "-c", code])
    return int(result.exit_code), bytes(result.output).decode(errors="replace")


PROXY_CALL = """
import json, sys, urllib.request, urllib.error
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(
    "http://docker-api-proxy:2375" + path, data=body.encode() or None, method=method,
    headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.read()[:1000].decode(errors="replace").replace("\\n", " "))
    print(error.code)
"""


def _proxy_answer(platform: Platform, method: str, path: str, body: str = "") -> tuple[int, str]:
    """The status of a Docker API call made from the scheduler, and the error's body."""
    scheduler = platform.container("airflow-scheduler")
    result = scheduler.exec_run(["python3", "-c", PROXY_CALL, method, path, body])
    output = bytes(result.output).decode(errors="replace").strip()
    assert result.exit_code == 0, f"calling the proxy from the scheduler failed: {output}"
    *text, status = output.splitlines()
    return int(status), " ".join(text)


def _proxy_status(platform: Platform, method: str, path: str, body: str = "") -> int:
    return _proxy_answer(platform, method, path, body)[0]


def _put_file(container: Any, directory: str, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(info, io.BytesIO(data))
    assert container.put_archive(directory, buffer.getvalue())


# ---- the deployment itself ------------------------------------------------------------


def test_every_published_port_is_on_loopback(platform: Platform) -> None:
    declared = set()
    for name in platform.long_running():
        suffix = name.split("-", 2)[-1]
        for port in platform.container_inputs(suffix).get("ports") or []:
            declared.add(
                (name, f"{int(port['internal'])}/tcp", port.get("ip"), int(port["external"]))
            )
    published = set()
    for name in platform.long_running():
        ports = platform.client.containers.get(name).attrs["NetworkSettings"]["Ports"] or {}
        for key, bindings in ports.items():
            for binding in bindings or []:
                published.add((name, key, binding["HostIp"], int(binding["HostPort"])))
    assert declared, "the platform publishes nothing"
    # What the program declares is what the engine publishes, and all of it on loopback.
    assert published == declared
    assert {ip for _, _, ip, _ in published} == {"127.0.0.1"}, published


def test_every_component_is_healthy(platform: Platform) -> None:
    for name in platform.long_running():
        state = platform.client.containers.get(name).attrs["State"]
        assert state["Running"], f"{name} is not running"
        if "Health" in state:
            assert state["Health"]["Status"] == "healthy", f"{name}: {state['Health']['Status']}"
    health = platform.airflow.get("/api/v2/monitor/health")
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"


def test_every_platform_container_rotates_its_log(platform: Platform) -> None:
    for name in platform.long_running():
        config = platform.client.containers.get(name).attrs["HostConfig"]["LogConfig"]
        assert config == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}, name


def test_images_are_in_the_registry_pinned_by_digest(platform: Platform) -> None:
    artifacts = platform.outputs["artifacts"]
    for name, reference in artifacts.items():
        if name == "dags":
            continue
        assert reference in platform.deployment.images.values(), (name, reference)
        repository, digest = reference.split("@")
        path = repository.split("/", 1)[1]
        url = f"http://{_registry(platform)}/v2/{path}/manifests/{digest}"
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        assert _status_as_user(platform, url, accept) == 200, f"{reference} is not in the registry"


def test_registry_refuses_anonymous_push_and_pull(platform: Platform) -> None:
    registry = _registry(platform)
    assert http_status(f"http://{registry}/v2/") == 401
    assert http_status(f"http://{registry}/v2/_catalog") == 401
    wrong = {"username": _registry_credentials(platform)["username"], "password": "not-it-x"}
    assert http_status(f"http://{registry}/v2/", _basic(wrong)) == 401
    assert _status_as_user(platform, f"http://{registry}/v2/") == 200

    # By tag: the engine must ask the registry what the tag points at (a digest this
    # engine already holds might be answered from its own store).
    airflow_tag = next(name for name in platform.deployment.images if "/etlstack/airflow:" in name)
    with _anonymous_docker() as anonymous:
        with pytest.raises(docker.errors.APIError) as pull:
            anonymous.pull(airflow_tag)
        log.info("anonymous pull refused: %s", pull.value.explanation)
        assert "auth" in str(pull.value.explanation).lower()

        target = f"{registry}/e2e/anonymous"
        anonymous.tag(platform.overrides["images"]["pythonBase"], target, "1")
        try:
            output = [chunk for chunk in anonymous.push(target, tag="1", stream=True, decode=True)]
        finally:
            anonymous.remove_image(f"{target}:1")
        errors = [str(chunk.get("error", "")) for chunk in output if "error" in chunk]
        log.info("anonymous push refused: %s", errors)
        assert errors and "auth" in errors[-1].lower(), output[-3:]
    assert "e2e/anonymous" not in _catalog(platform)


def _catalog(platform: Platform) -> list[str]:
    request = urllib.request.Request(
        f"http://{_registry(platform)}/v2/_catalog", headers=_basic(_registry_credentials(platform))
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["repositories"])


# ---- Airflow, as the admin user ----------------------------------------------------------


def test_example_pipeline_runs_and_loads_the_warehouse(
    platform: Platform, example_dag: str, example_run: tuple[str, dict[str, Any]]
) -> None:
    run_id, run = example_run
    platform.assert_succeeded(example_dag, run_id, run)
    tasks = platform.airflow.task_instances(example_dag, run_id)
    assert len(tasks) >= 4, [t["task_id"] for t in tasks]
    stations, days = _warehouse_rows(platform)
    expected_stations, expected_days = _expected_rows()
    assert expected_days, "the pipeline's shipped data gives no daily summaries"
    assert stations == expected_stations
    assert days == expected_days


def test_smoke_dag_refusal_is_refused_by_the_proxy(platform: Platform, smoke_dag: str) -> None:
    run_id = platform.airflow.trigger(smoke_dag)
    run = platform.airflow.wait_run(smoke_dag, run_id)
    tasks = platform.airflow.task_instances(smoke_dag, run_id)
    logs = {
        t["task_id"]: platform.airflow.task_log(smoke_dag, run_id, t["task_id"], t["try_number"])
        for t in tasks
        if t["try_number"]
    }
    probes = sorted(t["task_id"] for t in tasks if t["task_id"].endswith("_refused"))
    # Every launch the platform must refuse was refused by the proxy, not one of them.
    assert probes == ["host_mount_refused", "privileged_container_refused"], probes
    # Each refused for its own escape, by the rule that names it, not for something else.
    rules = {
        "host_mount_refused": "HostConfig.Mounts[0]",
        "privileged_container_refused": "HostConfig.Privileged must be absent",
    }
    for probe in probes:
        assert "403" in logs[probe] and rules[probe] in logs[probe], (
            f"{probe}: {logs[probe][-2000:]}"
        )
    # A probe succeeds only when refused, and the allowed task must run: all green.
    platform.assert_succeeded(smoke_dag, run_id, run)
    log.info("smoke run %s: %s; refused: %s", run_id, run["state"], probes)


PROXY_REFUSAL = "refused by the Docker API proxy: "
# Containers an end-to-end create through the proxy makes carry this label.
E2E_LABEL = "org.etlstack.e2e"


def _task_body(runtime: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A create body as the platform's launch makes it, from the stack's runtime settings,
    with HostConfig fields changed."""
    launch = runtime["docker"]
    resources = runtime["taskResources"]
    return {
        "Image": runtime["pipelineImages"]["platform-smoke"],
        "Cmd": ["true"],
        "User": "10001:10001",
        "Labels": {E2E_LABEL: "proxy"},
        "HostConfig": {
            "NetworkMode": launch["network"],
            "Memory": memory_bytes(resources["memory"]),
            "NanoCpus": round(cpu_cores(resources["cpu"]) * 1e9),
            "PidsLimit": launch["pidsLimit"],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "CgroupnsMode": "private",
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": str(launch["logMaxBytes"]),
                    "max-file": str(launch["logMaxFiles"]),
                },
            },
            **changes,
        },
    }


def _e2e_containers(platform: Platform) -> list[Any]:
    return list(platform.client.containers.list(all=True, filters={"label": E2E_LABEL}))


def test_proxy_refuses_calls_outside_its_allowlist(platform: Platform) -> None:
    # The proxy answers (so a 403 below is its decision, not an outage).
    assert _proxy_status(platform, "GET", "/v1.41/_ping") == 200
    own_id = platform.container("airflow-scheduler").id
    status, answer = _proxy_answer(
        platform, "POST", f"/v1.41/containers/{own_id}/exec", json.dumps({"Cmd": ["id"]})
    )
    assert (status, PROXY_REFUSAL in answer) == (403, True), answer
    status, answer = _proxy_answer(
        platform, "POST", "/v1.41/networks/create", json.dumps({"Name": "e2e-should-not-exist"})
    )
    assert (status, "not one running a pipeline task needs" in answer) == (403, True), answer
    assert not platform.client.networks.list(names=["e2e-should-not-exist"])
    # Pulls: from the platform's registry they reach the engine (which then asks the
    # registry); from anywhere else, the host's loopback included, the proxy says no.
    registry = str(platform.outputs["registry"])
    status, answer = _proxy_answer(
        platform, "POST", f"/v1.41/images/create?fromImage={registry}/x&tag=1"
    )
    assert PROXY_REFUSAL not in answer, (status, answer)
    engine_port = platform.overrides["docker"]["ports"]["airflow"]
    for elsewhere in (f"127.0.0.1:{engine_port}/x", "docker.io/library/alpine"):
        status, answer = _proxy_answer(
            platform, "POST", f"/v1.41/images/create?fromImage={elsewhere}&tag=1"
        )
        assert (status, "only from the platform registry" in answer) == (403, True), answer
    status, answer = _proxy_answer(
        platform, "POST", "/v1.41/auth", json.dumps({"serveraddress": registry})
    )
    assert (status, PROXY_REFUSAL in answer) == (403, True), answer


def test_proxy_creates_only_what_the_engine_will_read_as_a_confined_task(
    platform: Platform,
) -> None:
    runtime = json.loads(platform.env("airflow-scheduler")["ETLSTACK_RUNTIME"])
    prefix = runtime["docker"]["taskContainerPrefix"]
    version = runtime["docker"]["apiVersion"]
    named = f"/v{version}/containers/create?name={prefix}"
    hostile = {
        "privileged": (_task_body(runtime, Privileged=True), "HostConfig.Privileged"),
        # The old proxy looked for the network setting anywhere in the text: here the
        # engine would read no network mode and put the task on the default bridge.
        "network mode outside the host config": (
            {
                **_task_body(runtime),
                "NetworkMode": runtime["docker"]["network"],
                "HostConfig": {
                    k: v for k, v in _task_body(runtime)["HostConfig"].items() if k != "NetworkMode"
                },
            },
            "NetworkMode is not a setting",
        ),
        "no process limit": (
            {
                **_task_body(runtime),
                "HostConfig": {
                    k: v for k, v in _task_body(runtime)["HostConfig"].items() if k != "PidsLimit"
                },
            },
            "HostConfig.PidsLimit",
        ),
        "the image's default user": (
            {k: v for k, v in _task_body(runtime).items() if k != "User"},
            "User must be a numeric user",
        ),
        "the host's cgroup namespace": (
            _task_body(runtime, CgroupnsMode="host"),
            "HostConfig.CgroupnsMode",
        ),
    }
    for what, (body, rule) in hostile.items():
        status, answer = _proxy_answer(platform, "POST", named + "a" * 32, json.dumps(body))
        assert (status, rule in answer) == (403, True), (what, answer)
    # A body written to be read two ways: a second HostConfig key in another case.
    text = json.dumps(_task_body(runtime))[:-1] + ', "hostconfig": {"Privileged": true}}'
    status, answer = _proxy_answer(platform, "POST", named + "b" * 32, text)
    assert (status, "appears twice" in answer) == (403, True), answer
    # The right body at another API version, or under another name.
    valid = json.dumps(_task_body(runtime))
    for path in (
        f"/v1.40/containers/create?name={prefix}{'c' * 32}",
        f"/v{version}/containers/create?name=etlstack-e2e-anything",
    ):
        status, answer = _proxy_answer(platform, "POST", path, valid)
        assert (status, "API version of the platform client" in answer) == (403, True), answer
    assert not _e2e_containers(platform), "a refused create made a container"

    # The control: the same launch, as the platform makes it, is created, and the engine
    # reads it as the proxy judged it.
    name = f"{prefix}{'d' * 32}"
    status, answer = _proxy_answer(platform, "POST", named + "d" * 32, valid)
    assert status == 201, answer
    try:
        (created,) = _e2e_containers(platform)
        host = created.attrs["HostConfig"]
        assert created.name == name
        assert host["NetworkMode"] == runtime["docker"]["network"]
        assert (host["Privileged"], host["CgroupnsMode"]) == (False, "private")
        assert host["PidsLimit"] == runtime["docker"]["pidsLimit"]
        assert host["LogConfig"]["Type"] == "json-file"
        assert created.attrs["Config"]["User"] == "10001:10001"
    finally:
        for container in _e2e_containers(platform):
            container.remove(force=True)


def test_proxy_reaches_only_the_platforms_task_containers(platform: Platform) -> None:
    postgres = platform.container("postgres")
    started_at = postgres.attrs["State"]["StartedAt"]
    for method, call in [
        ("POST", "stop"),
        ("POST", "kill"),
        ("GET", "json"),
        ("GET", "logs?stdout=1&stderr=1"),
        ("DELETE", ""),
    ]:
        for target in (postgres.name, postgres.id):
            path = f"/v1.41/containers/{target}" + (f"/{call}" if call else "")
            status, answer = _proxy_answer(platform, method, path)
            assert (status, "only the platform task containers" in answer) == (403, True), (
                path,
                answer,
            )
            # The refusal says nothing of the container: no environment, no secrets.
            assert "POSTGRES" not in answer
    postgres.reload()
    assert postgres.status == "running"
    assert postgres.attrs["State"]["StartedAt"] == started_at


def test_broken_dag_file_is_an_import_error_and_others_keep_running(
    platform: Platform, example_dag: str
) -> None:
    dags_folder = "/opt/airflow/dags"
    text = "from airflow.sdk import DAG\n\n\ndef broken(:\n    pass\n"
    # DAGs are baked into the image: the file goes into both running containers that parse.
    for suffix in ("airflow-dag-processor", "airflow-scheduler"):
        _put_file(platform.container(suffix), dags_folder, BROKEN_DAG, text)
    refresh = int(
        platform.env("airflow-dag-processor").get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "300")
    )
    errors: list[dict[str, Any]] = []

    def reported() -> list[dict[str, Any]]:
        errors[:] = platform.airflow.get("/api/v2/importErrors")["import_errors"]
        return [e for e in errors if BROKEN_DAG in str(e.get("filename"))]

    broken = until(
        reported,
        timeout=refresh + 180,
        interval=5,
        what=lambda: f"an import error for {BROKEN_DAG} (import errors: {errors})",
    )
    assert "SyntaxError" in broken[0]["stack_trace"] or "invalid syntax" in broken[0]["stack_trace"]
    # Only the broken file fails to import.
    assert all(BROKEN_DAG in str(e.get("filename")) for e in errors), errors
    run_id = platform.airflow.trigger(example_dag)
    platform.assert_succeeded(example_dag, run_id, platform.airflow.wait_run(example_dag, run_id))


# Airflow's own tutorial, in short: a task that runs its code inside the scheduler.
CODE_IN_AIRFLOW_DAG = "tutorial_in_airflow.py"
CODE_IN_AIRFLOW = """from datetime import UTC, datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

with DAG(dag_id="tutorial_in_airflow", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
    PythonOperator(task_id="print_env", python_callable=lambda: print("in the scheduler"))
"""


def test_a_dag_that_runs_code_inside_airflow_is_refused_by_the_cluster_policy(
    platform: Platform,
) -> None:
    """The image's cluster policy, in the running dag-processor: the DAG never exists."""
    _put_file(
        platform.container("airflow-dag-processor"),
        "/opt/airflow/dags",
        CODE_IN_AIRFLOW_DAG,
        CODE_IN_AIRFLOW,
    )
    refresh = int(
        platform.env("airflow-dag-processor").get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "300")
    )

    def reported() -> list[dict[str, Any]]:
        errors = platform.airflow.get("/api/v2/importErrors")["import_errors"]
        return [e for e in errors if CODE_IN_AIRFLOW_DAG in str(e.get("filename"))]

    refused = until(
        reported,
        timeout=refresh + 180,
        interval=5,
        what=f"an import error for {CODE_IN_AIRFLOW_DAG}",
    )
    trace = refused[0]["stack_trace"]
    assert "refused by the platform" in trace
    assert "runs its code inside an Airflow component" in trace
    dags = platform.airflow.get("/api/v2/dags?limit=100")["dags"]
    assert "tutorial_in_airflow" not in {d["dag_id"] for d in dags}


def test_postgres_restart_keeps_history_and_data(
    platform: Platform, example_dag: str, example_run: tuple[str, dict[str, Any]]
) -> None:
    runs_before = platform.airflow.get(f"/api/v2/dags/{example_dag}/dagRuns?limit=100")
    rows_before = _warehouse_rows(platform)
    assert rows_before[1], "the warehouse is empty before the restart"

    log.info("restarting PostgreSQL")
    platform.container("postgres").restart(timeout=30)
    platform.wait_all_healthy(timeout=300)
    # A fresh token: the api-server may have lost its connections meanwhile.
    platform.airflow.token = None
    runs_after = until(
        lambda: platform.airflow.get(f"/api/v2/dags/{example_dag}/dagRuns?limit=100"),
        timeout=120,
        interval=3,
        what="Airflow's API answers again",
        retry_on=(Exception,),
    )

    def summary(runs: dict[str, Any]) -> set[tuple[str, str]]:
        return {(r["dag_run_id"], r["state"]) for r in runs["dag_runs"]}

    assert summary(runs_after) >= summary(runs_before)
    assert (example_run[0], "success") in summary(runs_after)
    assert _warehouse_rows(platform) == rows_before

    run_id = platform.airflow.trigger(example_dag)
    platform.assert_succeeded(example_dag, run_id, platform.airflow.wait_run(example_dag, run_id))
    assert _warehouse_rows(platform) == rows_before
