"""`etlstack new-pipeline NAME`: a working pipeline folder and its DAG, from templates.

The templates (templates/) hold a small but complete pipeline: a package with one
function per task, a run_<task>.sh per task, tests against a real PostgreSQL, and a
DAG file. NAME goes everywhere the pipeline's identity must be (package, schemas,
lock key, log names), so a new pipeline shares nothing with another one.
"""

from __future__ import annotations

import keyword
import shutil
import stat
import sys
from pathlib import Path

from etlstack.catalog import NAME_PATTERN, RESERVED_NAMES, pipeline_folders
from etlstack.config import ConfigError

TEMPLATES = Path(__file__).with_name("templates")
# Importable names the pipeline's package must not shadow inside its image or tests.
_TAKEN_MODULES = {"airflow", "etlstack", "pipeline_factory", "tests", "conftest"}
# Postgres truncates identifiers at 63 bytes; the staging schema adds "_staging".
_MAX_LENGTH = 40


def package_name(pipeline: str) -> str:
    return pipeline.replace("-", "_")


def _schemas(package: str) -> set[str]:
    return {package, f"{package}_staging"}


def check_name(project_root: Path, name: str) -> str:
    """The new pipeline's package name, or a ConfigError saying what is wrong and how to fix it."""
    if not NAME_PATTERN.match(name) or name in RESERVED_NAMES or len(name) > _MAX_LENGTH:
        raise ConfigError(
            f"{name!r} is not a pipeline name: use at most {_MAX_LENGTH} lowercase letters, "
            f"digits, '-' or '_', starting with a letter, and not one of {sorted(RESERVED_NAMES)}"
        )
    package = package_name(name)
    if keyword.iskeyword(package) or package in sys.stdlib_module_names | _TAKEN_MODULES:
        raise ConfigError(
            f"{name!r} would make a Python package {package!r} that shadows a module of the "
            "same name; choose another name"
        )
    folder = project_root / "pipelines" / name
    if folder.exists():
        raise ConfigError(f"pipelines/{name}/ exists already; choose another name")
    for other in pipeline_folders(project_root):
        if package_name(other.name) == package:
            raise ConfigError(
                f"{name!r} and pipelines/{other.name}/ would share the package {package!r}; "
                "choose another name"
            )
        shared = _schemas(package) & _schemas(package_name(other.name))
        if shared:
            raise ConfigError(
                f"{name!r} would share the warehouse schema {sorted(shared)[0]!r} with "
                f"pipelines/{other.name}/; choose another name"
            )
    dag_file = project_root / "dags" / f"{package}.py"
    if dag_file.exists():
        raise ConfigError(f"dags/{dag_file.name} exists already; choose another name")
    return package


def _render(text: str, name: str, package: str) -> str:
    return text.replace("{{name}}", name).replace("{{package}}", package)


def _copy_template(source: Path, destination: Path, name: str, package: str) -> list[Path]:
    written = []
    for template in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = _render(template.relative_to(source).as_posix(), name, package)
        target = destination / relative.removesuffix(".tmpl")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_render(template.read_text(), name, package))
        if target.suffix == ".sh":
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(target)
    return written


def create(project_root: Path, name: str) -> list[Path]:
    """Write pipelines/NAME/ and dags/<package>.py; nothing is written if NAME is refused."""
    package = check_name(project_root, name)
    folder = project_root / "pipelines" / name
    try:
        return [
            *_copy_template(TEMPLATES / "pipeline", folder, name, package),
            *_copy_template(TEMPLATES / "dags", project_root / "dags", name, package),
        ]
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
