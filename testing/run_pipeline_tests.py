"""Run each pipeline's tests, and its type check, in an environment of its own.

A pipeline ships as its own image with its own pinned dependencies
(pipelines/<name>/pyproject.toml). The project's venv (.venv) holds the platform's
dependencies instead (Pulumi, Airflow), so a pipeline's tests run there would see the
wrong versions, or none, and would read the pipeline's source tree rather than its
installed package. So each pipeline gets a virtual environment of its own,
.venvs/pipelines/<name>/, holding:

- pytest, at the version pinned in requirements-dev.txt;
- the shared fixtures, testing/pipeline_testing (a throwaway PostgreSQL warehouse);
- the pipeline itself, installed (`pip install -e`), with its `test` extra if it has one.

An environment is built once and reused. It is rebuilt when one of its inputs changes:
the pipeline's pyproject.toml, the shared fixtures package or the pytest pin (a stamp in
the environment records their hashes). A code change needs no rebuild: the pipeline is
installed in editable mode.

    .venv/bin/python testing/run_pipeline_tests.py                      # every pipeline
    .venv/bin/python testing/run_pipeline_tests.py --pipeline weather -x -k load
    .venv/bin/python testing/run_pipeline_tests.py --typecheck          # mypy, per pipeline

Options it does not know are passed on to pytest. Every pipeline runs even if one
fails; the exit status is 1 if any failed, or if a pipeline has no tests/ folder.
`make unit`, `make test` and `make pipeline-tests` run the tests; `make typecheck`
runs the type check.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from etlstack.catalog import pipeline_folders, tree_hash

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "pipelines"
PLUGIN = ROOT / "testing" / "pipeline_testing"
REQUIREMENTS_DEV = ROOT / "requirements-dev.txt"
VENVS = ROOT / ".venvs" / "pipelines"
STAMP = "etlstack-stamp.json"
# Build by-products and caches, left out of the copy the shared fixtures are built from.
_IGNORED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build"}

# pytest's exit statuses, for the summary.
_PYTEST_EXIT = {
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


class BuildError(Exception):
    """A pipeline's environment could not be built; the message carries pip's output."""


@dataclass(frozen=True)
class Pipeline:
    name: str
    directory: Path

    @property
    def where(self) -> str:
        return f"pipelines/{self.name}"

    @property
    def tests(self) -> Path:
        return self.directory / "tests"

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def discover() -> list[Pipeline]:
    """The pipelines, found as the platform finds them (etlstack.catalog)."""
    return [Pipeline(d.name, d) for d in pipeline_folders(ROOT)]


def pytest_pin() -> str:
    """pytest==<version>, as pinned for the whole project in requirements-dev.txt."""
    match = re.search(r"^pytest==([^\s;#]+)", REQUIREMENTS_DEV.read_text(), re.MULTILINE)
    if not match:
        sys.exit(f"{REQUIREMENTS_DEV.relative_to(ROOT)} must pin pytest==<version>")
    return f"pytest=={match.group(1)}"


def extras(pipeline: Pipeline) -> list[str]:
    """["test"] when the pipeline's pyproject.toml declares a `test` extra."""
    project = tomllib.loads((pipeline.directory / "pyproject.toml").read_text()).get("project", {})
    declared = "test" in project.get("optional-dependencies", {})
    return ["test"] if declared or "optional-dependencies" in project.get("dynamic", []) else []


def inputs(pipeline: Pipeline, pytest_requirement: str) -> dict[str, str]:
    """What the environment is built from; a change to any of these rebuilds it."""
    pyproject = (pipeline.directory / "pyproject.toml").read_bytes()
    return {
        "its pyproject.toml": hashlib.sha256(pyproject).hexdigest(),
        "testing/pipeline_testing": tree_hash(PLUGIN),
        "the pytest pin in requirements-dev.txt": pytest_requirement,
    }


def venv_interpreter() -> str:
    """python3.11, as the Makefile uses for the project's venv."""
    found = shutil.which("python3.11") or shutil.which("python3")
    if not found:
        sys.exit("python3.11 not found: install Python 3.11 to run the pipelines' tests")
    return found


@contextmanager
def locked(pipeline: Pipeline) -> Iterator[None]:
    """One build at a time per environment (`make -j unit typecheck` builds from two processes)."""
    VENVS.mkdir(parents=True, exist_ok=True)
    with (VENVS / f"{pipeline.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _run(command: Sequence[str | Path], what: str) -> None:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, check=False, env=_clean_env()
    )
    if result.returncode != 0:
        raise BuildError(
            f"{what} failed (exit status {result.returncode}):\n"
            f"$ {' '.join(str(c) for c in command)}\n{result.stdout}{result.stderr}"
        )


def ensure_environment(pipeline: Pipeline, pytest_requirement: str) -> bool:
    """Build the pipeline's environment unless its stamp matches; True if it was built."""
    wanted = inputs(pipeline, pytest_requirement)
    stamp = pipeline.venv / STAMP
    with locked(pipeline):
        recorded: dict[str, str] = {}
        if stamp.is_file() and pipeline.python.exists():
            recorded = json.loads(stamp.read_text())
            if recorded == wanted:
                return False
        changed = [key for key in wanted if recorded.get(key) != wanted[key]]
        why = f"{', '.join(changed)} changed" if recorded else "first run"
        print(f"{pipeline.where}: building {_shown(pipeline.venv)} ({why})", flush=True)
        shutil.rmtree(pipeline.venv, ignore_errors=True)
        _run([venv_interpreter(), "-m", "venv", pipeline.venv], "creating the virtual environment")
        # pip builds a package in its source tree. The shared fixtures are built from a
        # copy, so no build/ or *.egg-info is left in testing/. The pipeline is built in
        # place (editable), and the *.egg-info that setuptools writes next to its package
        # is removed afterwards: the catalog hashes the pipeline's folder into its image
        # tag, and the installed metadata lives in the environment anyway.
        before = set(pipeline.directory.rglob("*.egg-info"))
        extra = "".join(f"[{name}]" for name in extras(pipeline))
        try:
            with tempfile.TemporaryDirectory(prefix="pipeline-testing-") as copy:
                plugin = Path(copy) / PLUGIN.name
                shutil.copytree(
                    PLUGIN,
                    plugin,
                    ignore=shutil.ignore_patterns(*_IGNORED, "*.egg-info"),
                )
                _run(
                    [
                        pipeline.python,
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--progress-bar",
                        "off",
                        pytest_requirement,
                        plugin,
                        "-e",
                        f"{pipeline.directory}{extra}",
                    ],
                    "pip install",
                )
        finally:
            for leftover in set(pipeline.directory.rglob("*.egg-info")) - before:
                shutil.rmtree(leftover, ignore_errors=True)
        stamp.write_text(json.dumps(wanted, indent=2) + "\n")
        return True


def _clean_env(pipeline: Pipeline | None = None) -> dict[str, str]:
    """The caller's environment without what would leak another environment's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if pipeline is not None:
        # As if the pipeline's environment were activated: a test that starts
        # `python3` (a run_<task>.sh) gets the pipeline's interpreter and packages.
        env["VIRTUAL_ENV"] = str(pipeline.venv)
        env["PATH"] = f"{pipeline.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tests(pipeline: Pipeline, pytest_args: Sequence[str]) -> int:
    # The pipeline's own pyproject.toml is the configuration (the root one would add the
    # project's settings, such as the dags/ import path); the cache stays out of the
    # pipeline's folder, which is hashed into its image tag.
    command = [
        str(pipeline.python),
        "-m",
        "pytest",
        "-c",
        str(pipeline.directory / "pyproject.toml"),
        "--rootdir",
        str(pipeline.directory),
        "-o",
        f"cache_dir={pipeline.venv / '.pytest_cache'}",
        "-ra",
        str(pipeline.tests),
        *pytest_args,
    ]
    return subprocess.run(command, cwd=ROOT, env=_clean_env(pipeline), check=False).returncode


def run_typecheck(pipeline: Pipeline) -> int:
    # mypy runs once per pipeline: the pipelines' tests are top-level modules (a
    # conftest, a test_tasks) whose names repeat from one pipeline to the next, which
    # one run over all of them would report as duplicate modules. The
    # project's [tool.mypy] settings apply; MYPYPATH makes the package (src/) and the
    # tests top-level, as they are when installed and under pytest, and
    # --python-executable resolves the imports in the pipeline's own environment.
    src = pipeline.directory / "src"
    base = src if src.is_dir() else pipeline.directory
    targets = [p for p in (base, pipeline.tests) if p.is_dir()]
    env = _clean_env()
    env["MYPYPATH"] = os.pathsep.join(str(p) for p in targets)
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--python-executable",
        str(pipeline.python),
        "--cache-dir",
        str(pipeline.venv / ".mypy_cache"),
        *(str(p.relative_to(ROOT)) for p in targets),
    ]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run each pipeline's tests (or type check) in its own cached environment.",
        epilog="Other options are passed on to pytest, e.g. -x, -k EXPR, --lf.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        metavar="NAME",
        help="only this pipeline (pipelines/NAME); repeat for more. Default: every pipeline",
    )
    parser.add_argument(
        "--typecheck",
        action="store_true",
        help="run mypy on each pipeline's src/ and tests/ against its environment instead",
    )
    options, pytest_args = parser.parse_known_args(argv)
    if options.typecheck and pytest_args:
        parser.error(f"--typecheck takes no pytest options: {' '.join(pytest_args)}")
    if options.typecheck and importlib.util.find_spec("mypy") is None:
        sys.exit(
            f"mypy is not installed for {sys.executable}: run make venv and use .venv/bin/python"
        )

    pipelines = discover()
    if options.pipeline:
        known = {p.name: p for p in pipelines}
        unknown = [n for n in options.pipeline if n not in known]
        if unknown:
            parser.error(
                f"no pipeline {', '.join(unknown)} in pipelines/; there are: {', '.join(known)}"
            )
        pipelines = [known[n] for n in dict.fromkeys(options.pipeline)]
    if not pipelines:
        print("no pipelines in pipelines/: nothing to test")
        return 0

    requirement = pytest_pin()
    results: list[tuple[Pipeline, bool, str]] = []
    for pipeline in pipelines:
        started = time.monotonic()
        if not options.typecheck and not pipeline.tests.is_dir():
            results.append(
                (
                    pipeline,
                    False,
                    f"FAILED: no tests/ folder; every pipeline is tested: add {pipeline.where}/tests/ "
                    "with its test_*.py (see docs/pipelines-and-dags.md, 'Test it')",
                )
            )
            continue
        try:
            built = ensure_environment(pipeline, requirement)
        except BuildError as error:
            print(f"{pipeline.where}: building its test environment failed\n{error}", flush=True)
            results.append((pipeline, False, "FAILED: building its environment failed (see above)"))
            continue
        what = "type check" if options.typecheck else "tests"
        print(f"{pipeline.where}: {what} in {_shown(pipeline.venv)}", flush=True)
        status = run_typecheck(pipeline) if options.typecheck else run_tests(pipeline, pytest_args)
        took = f"{time.monotonic() - started:.1f} s{', environment built' if built else ''}"
        if status == 0:
            results.append((pipeline, True, f"passed ({took})"))
        else:
            meaning = "mypy found errors" if options.typecheck else _PYTEST_EXIT.get(status, "")
            results.append(
                (pipeline, False, f"FAILED: {meaning or 'failed'}, exit status {status} ({took})")
            )

    print()
    for pipeline, _, outcome in results:
        print(f"{pipeline.where}: {outcome}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
