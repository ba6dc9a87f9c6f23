"""`etlstack new-pipeline`: a pipeline folder and DAG the platform deploys as they are."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from etlstack.catalog import STANDARD_IMAGE, discover
from etlstack.cli import main
from tests.support.stacks import PROJECT_ROOT, evaluate
from tests.unit.dag_helpers import RUNTIME_ENV, parse, runtime_of


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what a stack is built from: stack files, image folders, pipelines, DAGs."""
    for path in PROJECT_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    for name in ("airflow_image", "dags", "pipelines", STANDARD_IMAGE):
        shutil.copytree(
            PROJECT_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def new_pipeline(project: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(project)
    return main(["new-pipeline", name])


def tree(project: Path) -> dict[str, bytes]:
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file()
    }


def test_the_new_pipeline_is_deployed_with_its_dag_and_nothing_else_changes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree(project)

    assert new_pipeline(project, "sales-daily", monkeypatch) == 0

    added = {path for path in tree(project) if path not in before}
    assert {p for p in added if not p.startswith("pipelines/sales-daily/")} == {
        "dags/sales_daily.py"
    }
    assert {path: text for path, text in tree(project).items() if path in before} == before
    pipeline = discover(project).pipeline("sales-daily")
    assert pipeline.tasks == ("check", "extract", "load")
    assert pipeline.dockerfile == project / STANDARD_IMAGE / "Dockerfile"
    folder = project / "pipelines" / "sales-daily"
    for script in folder.glob("run_*.sh"):
        assert os.access(script, os.X_OK), script
    for path in added:
        text = (project / path).read_text()
        assert "{{" not in text.replace("{{{", ""), f"{path} keeps a template placeholder"
    # Its own schemas, lock key and log name: nothing shared with another pipeline.
    warehouse = (folder / "src" / "sales_daily" / "warehouse.py").read_text()
    for identity in (
        '"sales_daily"',
        '"sales_daily_staging"',
        "sales_daily-schema",
        "sales-daily-pipeline",
    ):
        assert identity in warehouse


def test_the_generated_dag_parses_and_runs_the_pipelines_tasks_on_its_image(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_pipeline(project, "sales-daily", monkeypatch)
    evaluation = evaluate("local", project_root=project)
    runtime = runtime_of(evaluation)
    monkeypatch.setenv(RUNTIME_ENV, runtime)
    monkeypatch.syspath_prepend(str(project / "dags"))

    bag = parse(project / "dags")

    assert bag.import_errors == {}
    dag = bag.dags["sales-daily"]
    image = json.loads(runtime)["pipelineImages"]["sales-daily"]
    assert [t.task_id for t in dag.topological_sort()] == ["extract", "load", "check"]
    assert {getattr(t, "image", None) for t in dag.tasks} == {image}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Sales", "is not a pipeline name"),
        ("dags", "is not a pipeline name"),
        ("x" * 41, "is not a pipeline name"),
        ("weather", "pipelines/weather/ exists already"),
        ("platform_smoke", "would share the package 'platform_smoke'"),
        ("weather_staging", "would share the warehouse schema 'weather_staging'"),
        ("json", "shadows a module"),
        ("pipeline-factory", "shadows a module"),
        ("class", "shadows a module"),
    ],
)
def test_a_refused_name_says_why_and_writes_nothing(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    says: str,
) -> None:
    before = tree(project)

    assert new_pipeline(project, name, monkeypatch) == 2

    assert says in capsys.readouterr().err
    assert tree(project) == before
