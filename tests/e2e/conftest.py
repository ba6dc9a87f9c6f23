"""The local platform, deployed for real for the end-to-end session.

One platform per session: the Docker Engine must answer (.ci/run starts it; without
it, this starts one with engine.sh and stops it again), the base-image stand-ins are
built or reused, the `local` stack is evaluated with real generated secrets and
created on the engine by the applier, and every container's healthcheck must pass.
Whatever happens, the containers, networks and volumes the stack declares are
removed at the end; their logs (secrets redacted) stay in .e2e-artifacts/logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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
import harness  # noqa: E402
from harness import ARTIFACTS, PROJECT_ROOT, AirflowAPI, Platform  # noqa: E402

harness.progress_to_terminal()

STACK = "local"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

log = logging.getLogger("e2e")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {k: _merge(base.get(k), v) if k in base else v for k, v in {**base, **extra}.items()}
    return extra


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


def _stack_overrides(client: docker.DockerClient, stand_ins: dict[str, str]) -> dict[str, Any]:
    """The local stack as a team with an internal mirror (and a TLS interceptor) sets it."""
    stack_file, _ = render.stack_file_config(PROJECT_ROOT, STACK)

    def current(key: str) -> dict[str, Any]:
        raw = stack_file.get(f"etlstack:{key}")
        return json.loads(raw) if raw else {}

    if not CA_BUNDLE.is_file():
        pytest.fail(f"{CA_BUNDLE} is missing: image builds need the host's CA bundle", False)
    build: dict[str, Any] = {}
    extra = base_images.extra_ca_bundle(client, stand_ins["pythonBase"], CA_BUNDLE)
    if extra:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        bundle = ARTIFACTS / "extra-ca.pem"
        bundle.write_text(extra + "\n")
        build["caBundleFile"] = str(bundle)
    ports = {"airflow": _free_port(), "registry": _free_port(), "postgres": _free_port()}
    return {
        "images": _merge(current("images"), stand_ins),
        "build": _merge(current("build"), build),
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


def _keep_build_cache(client: docker.DockerClient, applier: deploy.Applier) -> None:
    """Keep the built images as the next run's build cache, under one stable tag each.

    Their names carry this run's registry port, so without this every run would
    leave another set of tags behind, and removing them would throw the cache away.
    """
    for image_name in applier.declared_images():
        try:
            image = client.images.get(image_name)
        except docker.errors.ImageNotFound:
            continue
        repository = image_name.split("/", 1)[1].rsplit(":", 1)[0]
        cache = f"{base_images.REPOSITORY}/cache/{repository}:latest"
        try:
            previous = client.images.get(cache)
        except docker.errors.ImageNotFound:
            previous = None
        image.tag(cache)
        client.images.remove(image_name, noprune=True)
        if previous is not None and previous.id != image.id:
            # Still tagged or used elsewhere: then it is not ours to remove.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(previous.id)


@pytest.fixture(scope="session")
def platform(engine: docker.DockerClient) -> Iterator[Platform]:
    started = time.monotonic()
    stand_ins = base_images.ensure(engine)
    log.info("base images ready (%.0fs)", time.monotonic() - started)
    overrides = _stack_overrides(engine, stand_ins)
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
            if os.environ.get("E2E_KEEP_PLATFORM") == "1":
                log.info("E2E_KEEP_PLATFORM=1: the platform stays up; the next run removes it")
            else:
                applier.destroy()
                _keep_build_cache(engine, applier)
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


os.environ.setdefault("E2E_ARTIFACTS", str(ARTIFACTS))
