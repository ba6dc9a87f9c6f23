"""The Airflow image's build inputs and its scripts, checked without building it.

The build itself is exercised end to end (tests/e2e); here: what the build context
holds, that the DAGs are the last layer, that the pinned closure matches the
requirements, and the scripts' own logic.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from docker.utils.build import exclude_paths
from packaging.requirements import Requirement

from tests.support.stacks import PROJECT_ROOT

IMAGE = PROJECT_ROOT / "airflow_image"


def load(path: Path) -> ModuleType:
    """A script (with or without .py) as a module, registered as dataclasses need."""
    name = "airflow_image_" + path.stem.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def script(name: str) -> ModuleType:
    return load(IMAGE / "scripts" / name)


def instructions() -> list[str]:
    text = (IMAGE / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_build_context_is_only_the_image_and_the_dags() -> None:
    """What docker sends to the builder from the repository root, per .dockerignore."""
    patterns = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sent = {p.replace("\\", "/") for p in exclude_paths(str(PROJECT_ROOT), patterns)}
    files = {p for p in sent if (PROJECT_ROOT / p).is_file()}
    assert files, "nothing would be sent"
    outside = sorted(p for p in files if not p.startswith(("airflow_image/", "dags/")))
    assert outside in ([], [".dockerignore"]), f"sent to the builder needlessly: {outside[:10]}"
    for needed in ("airflow_image/requirements.txt", "airflow_image/scripts/etlstack-init"):
        assert needed in files
    assert any(p.startswith("dags/pipeline_factory/") for p in files)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in files)


def test_dags_are_the_last_layer_after_the_dependencies() -> None:
    steps = instructions()
    copies_dags = [i for i, step in enumerate(steps) if re.match(r"COPY\s+dags/", step)]
    installs = [
        i for i, step in enumerate(steps) if step.startswith("RUN") and "pip install" in step
    ]
    assert copies_dags == [len(steps) - 1], "COPY dags/ must be the last instruction"
    assert installs and max(installs) < copies_dags[0]
    # The version label's build argument is declared after every RUN, so a new DAGs
    # version does not invalidate the dependency layers either.
    dags_version = next(i for i, step in enumerate(steps) if step.startswith("ARG DAGS_VERSION"))
    assert all(not step.startswith("RUN") for step in steps[dags_version:])


def test_runs_as_uid_50000_with_a_healthcheck() -> None:
    steps = instructions()
    assert "USER 50000:0" in steps
    assert any(step.startswith("HEALTHCHECK") and "airflow-healthcheck" in step for step in steps)


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not pinned"
            pins[requirement.name.lower()] = specifier.version
    return pins


def test_constraints_pin_the_requirements_and_their_closure() -> None:
    requirements = _pins(IMAGE / "requirements.txt")
    constraints = _pins(IMAGE / "constraints.txt")
    for name, version in requirements.items():
        assert constraints.get(name) == version, (
            f"constraints.txt pins {name} {constraints.get(name)}, requirements.txt {version}: "
            "regenerate with .venv/bin/python airflow_image/lock.py"
        )
    lock = load(IMAGE / "lock.py")
    closure = lock.closure(lock.requirements())
    missing = sorted(set(closure) - set(constraints))
    assert not missing, f"unpinned dependencies {missing}: run airflow_image/lock.py"


@pytest.mark.parametrize(
    ("pid1", "component"),
    [
        ("/opt/venv/bin/python3 /opt/venv/bin/airflow scheduler", "scheduler"),
        ("/opt/venv/bin/python3 /opt/venv/bin/airflow dag-processor", "dag-processor"),
        ("airflow triggerer", "triggerer"),
        # The api-server retitles itself.
        ("airflow api_server -- host:0.0.0.0 port:8080", "api-server"),
        ("/opt/venv/bin/python3 /usr/local/bin/etlstack-init", None),
        ("airflow version", None),
    ],
)
def test_healthcheck_finds_the_component_pid1_runs(pid1: str, component: str | None) -> None:
    assert script("airflow-healthcheck").running_component(pid1.split()) == component


def test_healthcheck_refuses_unknown_components(capsys: pytest.CaptureFixture[str]) -> None:
    healthcheck = script("airflow-healthcheck")
    assert healthcheck.main(["webserver"]) == 2
    assert "usage: airflow-healthcheck" in capsys.readouterr().err


def test_healthcheck_reports_an_unreachable_api_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW__API__PORT", str(port))
    assert script("airflow-healthcheck").main(["api-server"]) == 1
    assert "api-server unhealthy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set ETLSTACK_ADMIN_USERNAME, ETLSTACK_ADMIN_PASSWORD, ETLSTACK_ADMIN_EMAIL"),
        (
            {
                "ETLSTACK_ADMIN_USERNAME": "admin",
                "ETLSTACK_ADMIN_PASSWORD": "pw",
                "ETLSTACK_ADMIN_EMAIL": "a@b.c",
                "ETLSTACK_PIPELINE_SLOTS": "none",
            },
            "ETLSTACK_PIPELINE_SLOTS must be a whole number >= 1, got 'none'",
        ),
    ],
)
def test_init_names_what_is_missing(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        script("etlstack-init").read_settings(env)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_init_takes_the_pool_from_the_runtime_contract() -> None:
    settings = script("etlstack-init").read_settings(
        {
            "ETLSTACK_ADMIN_USERNAME": "admin",
            "ETLSTACK_ADMIN_PASSWORD": "pw",
            "ETLSTACK_ADMIN_EMAIL": "a@b.c",
            "ETLSTACK_PIPELINE_SLOTS": "8",
            "ETLSTACK_RUNTIME": '{"pool": "pipeline_tasks"}',
        }
    )
    assert (settings.pool, settings.slots) == ("pipeline_tasks", 8)
