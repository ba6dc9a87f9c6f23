"""What the repository holds to deploy: the pipelines under pipelines/ and the DAGs.

A pipeline is a folder with a pyproject.toml (its name and version) and one
run_<task>.sh per task. Its image is built with the platform's standard pipeline
Dockerfile (pipeline_image/), or with the folder's own Dockerfile when it ships one.
Adding a folder is all it takes to deploy a new pipeline.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from etlstack.config import ConfigError

# Files that never belong to a build: caches and local environments.
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv"}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
RESERVED_NAMES = {"airflow", "dags"}
STANDARD_IMAGE = "pipeline_image"


def _ignored(path: Path) -> bool:
    # An editable install (the pipeline's test environment) writes <package>.egg-info
    # next to the package: metadata, not part of the image.
    return bool(_IGNORED_PARTS & set(path.parts)) or any(
        part.endswith(".egg-info") for part in path.parts
    )


def tree_hash(*roots: Path) -> str:
    """A digest of the files under `roots` (paths and contents), stable across machines."""
    digest = hashlib.sha256()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not _ignored(p))
        for path in files:
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class Pipeline:
    name: str
    version: str
    tasks: tuple[str, ...]
    directory: Path
    dockerfile: Path
    content_hash: str

    @property
    def image_tag(self) -> str:
        # The version names the release; the content hash makes sure that a change
        # shipped without a version bump gets a new tag instead of overwriting one.
        return f"{self.version}-{self.content_hash[:12]}"


@dataclass(frozen=True)
class Catalog:
    pipelines: tuple[Pipeline, ...]
    dags_version: str
    airflow_version: str
    airflow_image_hash: str

    @property
    def airflow_image_tag(self) -> str:
        return f"{self.airflow_version}-{self.airflow_image_hash[:12]}"

    def pipeline(self, name: str) -> Pipeline:
        return next(p for p in self.pipelines if p.name == name)


def _read_pipeline(directory: Path, standard_image: Path) -> Pipeline:
    where = f"pipelines/{directory.name}"
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(
            f"{where} has no pyproject.toml; every pipeline folder declares its version there"
        )
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    version = project.get("version")
    if not version:
        raise ConfigError(
            f'{where}/pyproject.toml has no [project] version; add one, e.g. version = "1.0.0"'
        )
    tasks = tuple(
        sorted(p.name.removeprefix("run_").removesuffix(".sh") for p in directory.glob("run_*.sh"))
    )
    if not tasks:
        raise ConfigError(f"{where} has no run_<task>.sh; add one script per task")
    name = directory.name
    if not NAME_PATTERN.match(name) or name in RESERVED_NAMES:
        raise ConfigError(
            f"{where}: a pipeline folder name must be lowercase letters, digits, '-' or '_' "
            f"and not one of {sorted(RESERVED_NAMES)}; rename the folder"
        )
    own_dockerfile = directory / "Dockerfile"
    # The standard Dockerfile is part of what the image is made of: changing it must
    # give every pipeline built with it a new tag.
    sources = (directory,) if own_dockerfile.is_file() else (directory, standard_image)
    return Pipeline(
        name=name,
        version=str(version),
        tasks=tasks,
        directory=directory,
        dockerfile=own_dockerfile if own_dockerfile.is_file() else standard_image / "Dockerfile",
        content_hash=tree_hash(*sources),
    )


def _airflow_version(project_root: Path) -> str:
    requirements = (project_root / "airflow_image" / "requirements.txt").read_text()
    match = re.search(r"^apache-airflow==([0-9][^\s;]*)", requirements, re.MULTILINE)
    if not match:
        raise ConfigError("airflow_image/requirements.txt must pin apache-airflow==<version>")
    return match.group(1)


def pipeline_folders(project_root: Path) -> list[Path]:
    """Every folder under pipelines/ that is a pipeline (hidden and _private ones are not)."""
    return [
        d
        for d in sorted((project_root / "pipelines").iterdir())
        if d.is_dir() and not d.name.startswith((".", "_")) and d.name not in _IGNORED_PARTS
    ]


def discover(project_root: Path) -> Catalog:
    pipelines = tuple(
        _read_pipeline(d, project_root / STANDARD_IMAGE) for d in pipeline_folders(project_root)
    )
    dags = project_root / "dags"
    return Catalog(
        pipelines=pipelines,
        dags_version="dags-" + tree_hash(dags)[:12],
        airflow_version=_airflow_version(project_root),
        airflow_image_hash=tree_hash(project_root / "airflow_image", dags),
    )
