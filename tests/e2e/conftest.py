"""The local platform, deployed for real for the end-to-end session.

One platform per session: the Docker Engine must answer (.ci/run starts it; without
it, this starts one with engine.sh and stops it again, unless the platform is kept),
the base-image stand-ins are built or reused, and the `local` stack is evaluated with
real generated secrets and created on the engine by the applier, from a copy of the
repository to which a data engineer's new pipeline was added with `etlstack
new-pipeline`; every container's healthcheck must pass.
Whatever happens, the containers, networks and volumes the stack declares are
removed at the end; their logs (secrets redacted) stay in .e2e-artifacts/logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import base_images  # noqa: E402
import deploy  # noqa: E402
import harness  # noqa: E402
from harness import ARTIFACTS, PROJECT_ROOT, Platform  # noqa: E402

from tests.support.polling import until  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

harness.progress_to_terminal()

STACK = "local"
# The local stack's settings under a name of its own, so the session's containers,
# networks and volumes never touch a local platform kept with `make try`.
E2E_STACK = "e2e"
# The pipeline the session adds as a data engineer would, and the DAGs it runs by id.
GENERATED_PIPELINE = "generated-example"
EXAMPLE_DAG = "weather"
SMOKE_DAG = "platform_smoke"
KEEP_PLATFORM = os.environ.get("E2E_KEEP_PLATFORM") == "1"
# Failed task containers are past their retention period at once, so that housekeeping
# can be seen removing them (test_housekeeping.py); the default keeps them 7 days.
SESSION_SETTINGS = {"housekeeping": {"failedTaskContainers": "1s"}}

log = logging.getLogger("e2e")


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
        if started and KEEP_PLATFORM:
            log.info(
                "E2E_KEEP_PLATFORM=1: the Docker Engine this run started keeps running for the "
                "kept platform; `make down` removes the platform, `tests/e2e/engine.sh stop` "
                "stops the engine"
            )
        elif started:
            subprocess.run([str(HERE / "engine.sh"), "stop"], check=False)


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    yield from _engine()


@pytest.fixture(scope="session")
def project() -> Path:
    """The repository as a data engineer has it after adding a pipeline with the CLI.

    A copy of the working tree (tracked files and new ones git does not ignore), to
    which `etlstack new-pipeline` adds GENERATED_PIPELINE; the session deploys this.
    """
    copy = ARTIFACTS / "project"
    shutil.rmtree(copy, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    )
    for name in listed.stdout.decode().split("\0"):
        source = PROJECT_ROOT / name
        if name and source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    created = harness.etlstack(copy, "new-pipeline", GENERATED_PIPELINE)
    assert created.returncode == 0, created.stdout + created.stderr
    return copy


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
def platform(engine: docker.DockerClient, project: Path) -> Iterator[Platform]:
    ports = {"airflow": free_port(), "registry": free_port(), "postgres": free_port()}
    applier, overrides = harness.platform_applier(
        engine, project, STACK, E2E_STACK, ports, settings=SESSION_SETTINGS
    )
    # A run that was killed may have left this stack's objects behind.
    applier.destroy()
    try:
        yield harness.start_platform(engine, applier, overrides)
    finally:
        try:
            _save_logs(engine, applier)
        finally:
            if KEEP_PLATFORM:
                log.info(
                    "E2E_KEEP_PLATFORM=1: the platform stays up at %s (docs/end-to-end.md: "
                    "credentials, logs, warehouse); `make down` or the next run removes it",
                    f"http://127.0.0.1:{ports['airflow']}",
                )
            else:
                applier.destroy()
                _keep_build_cache(engine, applier)
                log.info("platform removed")


@pytest.fixture(scope="session")
def example_dag(platform: Platform) -> str:
    """The DAG of the example pipeline, once the dag-processor has stored it."""
    return _wait_for_dag(platform, EXAMPLE_DAG)


def _wait_for_dag(platform: Platform, dag_id: str) -> str:
    seen: list[str] = []

    def stored() -> bool:
        seen[:] = [d["dag_id"] for d in platform.airflow.get("/api/v2/dags?limit=100")["dags"]]
        return dag_id in seen

    until(stored, timeout=300, interval=5, what=lambda: f"DAG {dag_id!r} stored (DAGs: {seen})")
    return dag_id


@pytest.fixture(scope="session")
def smoke_dag(platform: Platform) -> str:
    return _wait_for_dag(platform, SMOKE_DAG)


@pytest.fixture(scope="session")
def generated_dag(platform: Platform) -> str:
    return _wait_for_dag(platform, GENERATED_PIPELINE)


@pytest.fixture(scope="session")
def example_run(platform: Platform, example_dag: str) -> tuple[str, dict[str, Any]]:
    """One triggered run of the example pipeline, waited for."""
    run_id = platform.airflow.trigger(example_dag)
    return run_id, platform.airflow.wait_run(example_dag, run_id)


os.environ.setdefault("E2E_ARTIFACTS", str(ARTIFACTS))
