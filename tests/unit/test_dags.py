"""DAG integrity, in a real Airflow, for every stack that builds from this repository.

Each such stack's DAGs are parsed by Airflow's own DagBag, configured as the Airflow
image configures it, with the ETLSTACK_RUNTIME that stack's program declares: no
import errors, no cycles, every DAG serializes (what the dag-processor stores), and
every task's image is one the stack deploys, running a task its pipeline has (but for
the platform's housekeeping, which runs in the scheduler).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from airflow.serialization.serialized_objects import DagSerialization

from etlstack.catalog import discover
from pipeline_factory.housekeeping import Housekeeping
from tests.support.stacks import PROJECT_ROOT
from tests.unit.dag_helpers import (
    BUILDING_STACKS,
    DAGS,
    RUNTIME_ENV,
    parse,
    stack_images,
    stack_runtime,
)

DAG_FILES = sorted(p.name for p in DAGS.glob("*.py"))


@pytest.fixture(params=BUILDING_STACKS)
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A stack name, with its Airflow components' ETLSTACK_RUNTIME in the environment."""
    monkeypatch.setenv(RUNTIME_ENV, stack_runtime(request.param))
    return str(request.param)


def test_every_dag_file_imports_and_yields_a_dag(stack: str) -> None:
    bag = parse(DAGS)
    assert bag.import_errors == {}, f"{stack}: {bag.import_errors}"
    files = {Path(dag.fileloc).name for dag in bag.dags.values()}
    assert files == set(DAG_FILES), f"{stack}: DAG files without a DAG: {set(DAG_FILES) - files}"


def test_no_cycles_and_every_dag_serializes(stack: str) -> None:
    bag = parse(DAGS)
    assert bag.dags
    for dag in bag.dags.values():
        dag.check_cycle()
        assert len(dag.topological_sort()) == len(dag.tasks)
        DagSerialization.to_dict(dag)


def test_every_task_runs_a_deployed_image_in_the_pool(stack: str) -> None:
    images = stack_images(stack)
    pipeline_of = {reference: name for name, reference in images.items()}
    catalog = discover(PROJECT_ROOT)
    runtime_pool = json.loads(stack_runtime(stack))["pool"]
    for dag in parse(DAGS).dags.values():
        for task in dag.tasks:
            if type(task) is Housekeeping:
                continue  # the platform's own jobs run in the scheduler (test_housekeeping.py)
            where = f"{stack}: {dag.dag_id}.{task.task_id}"
            image = getattr(task, "image", None)
            assert image in pipeline_of, f"{where} runs {image!r}, not a deployed image"
            assert task.pool == runtime_pool, f"{where} runs outside the pipeline pool"
            command = getattr(task, "command", None) or getattr(task, "cmds", None)
            assert command, where
            script = command[0]
            if script.startswith("run_"):
                pipeline = catalog.pipeline(pipeline_of[image])
                task_name = script.removeprefix("run_").removesuffix(".sh")
                assert task_name in pipeline.tasks, (
                    f"{where} runs {script}, which pipelines/{pipeline.name}/ does not have"
                )


def test_the_example_pipeline_runs_every_task_in_order(stack: str) -> None:
    bag = parse(DAGS)
    weather = bag.dags["weather"]
    order = [t.task_id for t in weather.topological_sort()]
    assert order == ["extract", "transform", "load", "check"]
    assert set(order) == set(discover(PROJECT_ROOT).pipeline("weather").tasks)
    assert weather.max_active_runs == 1


def test_the_smoke_dag_has_an_allowed_and_a_refused_launch(stack: str) -> None:
    smoke = parse(DAGS).dags["platform_smoke"]
    task_ids = {t.task_id for t in smoke.tasks}
    assert "task_runs" in task_ids
    refused = {t for t in task_ids if t.endswith("_refused")}
    assert refused, f"{stack}: the smoke DAG has no launch that must be refused"


def test_a_broken_dag_file_is_an_import_error_and_the_others_still_load(
    stack: str, tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(DAGS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "broken.py").write_text("from airflow.sdk import DAG\n\ndag = DAG(dag_id=\n")
    (folder / "ghost.py").write_text(
        "from pipeline_factory import pipeline_dag\n\n"
        'dag = pipeline_dag(pipeline="ghost", tasks=["extract"])\n'
    )
    bag = parse(folder)
    errors = {Path(path).name: text for path, text in bag.import_errors.items()}
    assert set(errors) == {"broken.py", "ghost.py"}
    assert "SyntaxError" in errors["broken.py"]
    assert "pipeline 'ghost', which this stack does not deploy" in errors["ghost.py"]
    assert "etlstack new-pipeline ghost" in errors["ghost.py"]
    assert {Path(d.fileloc).name for d in bag.dags.values()} == set(DAG_FILES)


def test_without_the_runtime_every_dag_file_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    bag = parse(DAGS)
    assert not bag.dags
    assert {Path(p).name for p in bag.import_errors} == set(DAG_FILES)
    for text in bag.import_errors.values():
        assert f"{RUNTIME_ENV} is not set" in text
