"""The catalog: what a pipeline folder must hold, and how its image is made and tagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from etlstack.catalog import STANDARD_IMAGE, discover
from etlstack.config import ConfigError
from tests.support.stacks import PROJECT_ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the parts of the repository the catalog reads."""
    for name in ("airflow_image", "dags", "pipelines", STANDARD_IMAGE):
        shutil.copytree(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def add_pipeline(project: Path, name: str, **files: str) -> Path:
    folder = project / "pipelines" / name
    folder.mkdir()
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0.0"\n')
    (folder / "run_extract.sh").write_text("#!/bin/sh\nexec true\n")
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return folder


def test_every_pipeline_folder_is_discovered(project: Path) -> None:
    shipped = {p.name for p in (project / "pipelines").iterdir() if p.is_dir()}
    add_pipeline(project, "sales")

    assert {p.name for p in discover(project).pipelines} == shipped | {"sales"}


def test_a_folder_without_a_dockerfile_is_built_with_the_standard_one(project: Path) -> None:
    add_pipeline(project, "sales")
    pipeline = discover(project).pipeline("sales")
    assert pipeline.dockerfile == project / STANDARD_IMAGE / "Dockerfile"
    assert pipeline.tasks == ("extract",)


def test_a_folder_with_its_own_dockerfile_is_built_with_it(project: Path) -> None:
    folder = add_pipeline(project, "geo", Dockerfile="FROM scratch\n")
    assert discover(project).pipeline("geo").dockerfile == folder / "Dockerfile"


def test_a_change_to_the_standard_dockerfile_retags_only_the_images_built_with_it(
    project: Path,
) -> None:
    add_pipeline(project, "sales")
    add_pipeline(project, "geo", Dockerfile="FROM scratch\n")
    before = {p.name: p.image_tag for p in discover(project).pipelines}

    standard = project / STANDARD_IMAGE / "Dockerfile"
    standard.write_text(standard.read_text() + "# a change\n")
    after = {p.name: p.image_tag for p in discover(project).pipelines}

    assert after["sales"] != before["sales"]
    assert after["geo"] == before["geo"]


@pytest.mark.parametrize(
    ("name", "files", "says"),
    [
        ("sales", {"pyproject.toml": "[project]\nname = 'sales'\n"}, "has no [project] version"),
        ("Sales", {}, "must be lowercase letters"),
        ("dags", {}, "not one of ['airflow', 'dags']"),
    ],
)
def test_a_broken_folder_names_the_problem_and_the_fix(
    project: Path, name: str, files: dict[str, str], says: str
) -> None:
    add_pipeline(project, name, **files)
    with pytest.raises(ConfigError) as error:
        discover(project)
    assert says in str(error.value)


def test_a_folder_without_tasks_names_the_fix(project: Path) -> None:
    (add_pipeline(project, "sales") / "run_extract.sh").unlink()
    with pytest.raises(ConfigError, match=r"pipelines/sales has no run_<task>.sh; add one"):
        discover(project)
