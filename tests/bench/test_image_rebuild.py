"""The Airflow image: rebuild after a DAG-only change against a full build without cache.

The build is the one the program declares for the local stack (its Dockerfile, build
arguments and context filter), with the classic builder, from a copy of the context
so the change never touches the working tree. The baseline for the cached path is a
rebuild with nothing changed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from harness import PROJECT_ROOT

from etlstack import render
from tests.bench import report

TAG = "etlstack-bench/airflow"


def _build(
    client: docker.DockerClient, context: Path, args: dict[str, str], **options: Any
) -> float:
    started = time.monotonic()
    for chunk in client.api.build(
        path=str(context),
        dockerfile="airflow_image/Dockerfile",
        tag=f"{TAG}:{options.pop('tag')}",
        buildargs=args,
        rm=True,
        forcerm=True,
        decode=True,
        **options,
    ):
        assert "error" not in chunk, f"the build failed: {str(chunk['error'])[:2000]}"
    return time.monotonic() - started


@pytest.mark.bench
def test_airflow_image_rebuild_after_a_dag_change(
    platform: Any, engine: docker.DockerClient, tmp_path: Path
) -> None:
    (image,) = [
        r
        for r in platform.evaluation.by_type("docker:index/image:Image")
        if "/etlstack/airflow" in str(render.reveal(r.inputs["imageName"]))
    ]
    build = render.reveal(image.inputs["build"])
    assert build.get("builderVersion") in (None, "BuilderV1")
    assert build.get("dockerfile", "").endswith("airflow_image/Dockerfile")
    args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(PROJECT_ROOT / ".dockerignore", context / ".dockerignore")
    for folder in ("airflow_image", "dags"):
        shutil.copytree(
            PROJECT_ROOT / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__")
        )

    try:
        full = _build(engine, context, args, tag="full", nocache=True)
        unchanged = _build(engine, context, args, tag="unchanged")
        dag_file = context / "dags" / "weather.py"
        dag_file.write_text(dag_file.read_text() + "\n# changed by the benchmark\n")
        # The program gives a changed DAGs folder a new DAGS_VERSION; so does this.
        dag_only = _build(
            engine, context, {**args, "DAGS_VERSION": "bench-changed"}, tag="dag-change"
        )
    finally:
        for tag in ("full", "unchanged", "dag-change"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(f"{TAG}:{tag}")

    report.record(
        "image_rebuild",
        "Airflow image: DAG-only rebuild vs full build",
        {
            "full build, no cache, s": full,
            "rebuild after a DAG-only change, s": dag_only,
            "baseline: rebuild with nothing changed, s": unchanged,
            "ratio full / DAG-only": full / dag_only,
        },
        notes="Classic builder, the local stack's build arguments (base image, extra CA "
        "bundle, package mirror). The DAGs are the Dockerfile's last layers, so a DAG "
        "change rebuilds only those; the full build installs Airflow's pinned closure.",
    )
