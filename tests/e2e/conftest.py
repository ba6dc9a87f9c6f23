"""The local platform, deployed for real for the end-to-end session.

One platform per session: the Docker Engine must answer (.ci/run starts it; without
it, this starts one with engine.sh and stops it again), the base-image stand-ins are
built or reused, the `local` stack is evaluated with real generated secrets and
created on the engine by the applier, and every container's healthcheck must pass.
Whatever happens, the containers, networks and volumes the stack declares are
removed at the end; their logs (secrets redacted) stay in .e2e-artifacts/logs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from etlstack import render

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import base_images  # noqa: E402
import deploy  # noqa: E402

PROJECT_ROOT = HERE.parent.parent
ARTIFACTS = PROJECT_ROOT / ".e2e-artifacts"
STACK = "local"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

log = logging.getLogger("e2e")


def _progress_to_terminal() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[e2e %(asctime)s] %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


_progress_to_terminal()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {k: _merge(base.get(k), v) if k in base else v for k, v in {**base, **extra}.items()}
    return extra


class AirflowAPI:
    """Airflow's REST API as a user calls it: a JWT from /auth/token, then /api/v2."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.token: str | None = None

    def _send(self, method: str, path: str, body: Any = None, token: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {self.login()}")
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def login(self) -> str:
        if self.token is None:
            answer = self._send(
                "POST",
                "/auth/token",
                {"username": self.username, "password": self.password},
                token=False,
            )
            self.token = str(answer["access_token"])
        return self.token

    def get(self, path: str) -> Any:
        return self._send("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, body)

    def text(self, path: str) -> str:
        request = urllib.request.Request(f"{self.url}{path}", method="GET")
        request.add_header("Authorization", f"Bearer {self.login()}")
        request.add_header("Accept", "text/plain")
        with urllib.request.urlopen(request, timeout=60) as response:
            return bytes(response.read()).decode(errors="replace")

    def trigger(self, dag_id: str) -> str:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return str(run["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] != last:
                log.info("%s run %s is %s", dag_id, run_id, run["state"])
                last = run["state"]
            if run["state"] in ("success", "failed"):
                return dict(run)
            time.sleep(3)
        raise AssertionError(f"{dag_id} run {run_id} still {last} after {timeout:.0f}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(answer["task_instances"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        answer = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            "?full_content=true"
        )
        content = answer.get("content")
        if isinstance(content, list):
            return "\n".join(
                str(item.get("event", item)) if isinstance(item, dict) else str(item)
                for item in content
            )
        return str(content)


@dataclass
class Platform:
    client: docker.DockerClient
    evaluation: render.Evaluation
    applier: deploy.Applier
    deployment: deploy.Deployment
    overrides: dict[str, Any]
    airflow: AirflowAPI

    @property
    def outputs(self) -> dict[str, Any]:
        return self.deployment.outputs

    def container_inputs(self, suffix: str) -> dict[str, Any]:
        """The revealed, digest-substituted inputs of the container named *-<suffix>."""
        found = [
            r
            for r in self.evaluation.by_type(deploy.CONTAINER)
            if str(render.reveal(r.inputs["name"])).endswith(f"-{suffix}")
        ]
        assert len(found) == 1, f"expected one container named *-{suffix}, found {len(found)}"
        return dict(deploy._replace(render.reveal(found[0].inputs), self.applier.substitutions))

    def container(self, suffix: str) -> Any:
        return self.client.containers.get(self.container_inputs(suffix)["name"])

    def env(self, suffix: str) -> dict[str, str]:
        envs = self.container_inputs(suffix).get("envs") or []
        return dict(str(e).split("=", 1) for e in envs)

    def long_running(self) -> list[str]:
        return [
            str(render.reveal(r.inputs["name"]))
            for r in self.evaluation.by_type(deploy.CONTAINER)
            if r.inputs.get("mustRun", True) and not r.inputs.get("attach", False)
        ]

    def wait_all_healthy(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        for name in self.long_running():
            self.applier.wait_healthy(name, max(deadline - time.monotonic(), 1))
        log.info("every container is running and healthy")


def _engine() -> Iterator[docker.DockerClient]:
    started = False
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception:
        log.info("no Docker Engine answers; starting one with tests/e2e/engine.sh")
        result = subprocess.run([str(HERE / "engine.sh"), "start"], check=False)
        if result.returncode != 0:
            pytest.fail("the Docker Engine could not be started; see the output above", False)
        started = True
        client = docker.from_env(timeout=300)
        client.ping()
    try:
        yield client
    finally:
        client.close()
        if started:
            subprocess.run([str(HERE / "engine.sh"), "stop"], check=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    yield from _engine()


def _stack_overrides(stand_ins: dict[str, str]) -> dict[str, Any]:
    """The local stack as a team with an internal mirror would configure it."""
    stack_file, _ = render.stack_file_config(PROJECT_ROOT, STACK)

    def current(key: str) -> dict[str, Any]:
        raw = stack_file.get(f"etlstack:{key}")
        return json.loads(raw) if raw else {}

    if not CA_BUNDLE.is_file():
        pytest.fail(f"{CA_BUNDLE} is missing: image builds need the host's CA bundle", False)
    ports = {"airflow": _free_port(), "registry": _free_port(), "postgres": _free_port()}
    return {
        "images": _merge(current("images"), stand_ins),
        "build": _merge(current("build"), {"caBundleFile": str(CA_BUNDLE)}),
        "docker": _merge(current("docker"), {"bindAddress": "127.0.0.1", "ports": ports}),
    }


def _save_logs(platform_client: docker.DockerClient, applier: deploy.Applier) -> None:
    directory = ARTIFACTS / "logs"
    directory.mkdir(parents=True, exist_ok=True)
    for name in applier.declared(deploy.CONTAINER):
        try:
            container = platform_client.containers.get(name)
        except docker.errors.NotFound:
            continue
        text = container.logs(timestamps=True).decode(errors="replace")
        (directory / f"{name}.log").write_text(applier.redact(text))


@pytest.fixture(scope="session")
def platform(engine: docker.DockerClient) -> Iterator[Platform]:
    started = time.monotonic()
    stand_ins = base_images.ensure(engine)
    log.info("base images ready (%.0fs)", time.monotonic() - started)
    overrides = _stack_overrides(stand_ins)
    evaluation = render.evaluate(STACK, PROJECT_ROOT, overrides=overrides, real_secrets=True)
    applier = deploy.Applier(engine, evaluation, PROJECT_ROOT)
    # A run that was killed may have left the stack's objects behind.
    applier.destroy()
    try:
        deployment = applier.apply()
        outputs = deployment.outputs
        airflow = AirflowAPI(
            str(outputs["airflowUrl"]), str(outputs["adminUsername"]), str(outputs["adminPassword"])
        )
        platform = Platform(engine, evaluation, applier, deployment, overrides, airflow)
        platform.wait_all_healthy()
        log.info("platform deployed (%.0fs since the session started)", time.monotonic() - started)
        yield platform
    finally:
        try:
            _save_logs(engine, applier)
        finally:
            applier.destroy()
            log.info("platform removed")


@pytest.fixture(scope="session")
def example_dag(platform: Platform) -> str:
    """The DAG of the example pipeline (the one pipeline the repository ships)."""
    return _dag_with_tag(platform, "weather")


def _dag_with_tag(platform: Platform, word: str) -> str:
    deadline = time.monotonic() + 300
    while True:
        dags = platform.airflow.get("/api/v2/dags?limit=100")["dags"]
        found = [d["dag_id"] for d in dags if word in d["dag_id"]]
        if found:
            assert len(found) == 1, f"several DAGs match {word!r}: {found}"
            return str(found[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no DAG matching {word!r}; DAGs: {[d['dag_id'] for d in dags]}")
        time.sleep(5)


@pytest.fixture(scope="session")
def smoke_dag(platform: Platform) -> str:
    return _dag_with_tag(platform, "smoke")


@pytest.fixture(scope="session")
def example_run(platform: Platform, example_dag: str) -> tuple[str, dict[str, Any]]:
    """One triggered run of the example pipeline, waited for."""
    run_id = platform.airflow.trigger(example_dag)
    return run_id, platform.airflow.wait_run(example_dag, run_id)


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


os.environ.setdefault("E2E_ARTIFACTS", str(ARTIFACTS))
