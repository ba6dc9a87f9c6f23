"""The cluster policy the Airflow image installs: every DAG's tasks follow the platform's
rules, not only the factory-built ones. DAG files are parsed by Airflow's own DagBag with
the image's airflow_local_settings.task_policy in place, as the components parse them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stacks import PROJECT_ROOT
from tests.unit.dag_helpers import BUILDING_STACKS, DAGS, RUNTIME_ENV, parse, stack_runtime

LOCAL_SETTINGS = PROJECT_ROOT / "airflow_image" / "policy" / "airflow_local_settings.py"
HEADER = "from datetime import UTC, datetime\n\nfrom airflow.sdk import DAG\n"
DAG_OPEN = (
    'with DAG(dag_id="hostile", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):\n'
)


@pytest.fixture(autouse=True)
def image_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's task_policy is the image's, loaded from its file."""
    import airflow.settings

    spec = importlib.util.spec_from_file_location("airflow_local_settings", LOCAL_SETTINGS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(airflow.settings, "task_policy", module.task_policy)


def runtime_env(monkeypatch: pytest.MonkeyPatch, stack: str, **changes: object) -> dict:
    value = json.loads(stack_runtime(stack))
    value.update(changes)
    monkeypatch.setenv(RUNTIME_ENV, json.dumps(value))
    return value


def import_error(tmp_path: Path, body: str) -> str:
    """The import error of one DAG file added to a copy of the shipped DAGs."""
    folder = tmp_path / "dags"
    shutil.copytree(DAGS, folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (folder / "hostile.py").write_text(body)
    bag = parse(folder)
    errors = {Path(path).name: text for path, text in bag.import_errors.items()}
    assert set(errors) <= {"hostile.py"}, errors
    return errors.get("hostile.py", "")


@pytest.mark.parametrize("stack", BUILDING_STACKS)
def test_every_shipped_dag_follows_the_policy(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime_env(monkeypatch, stack)
    bag = parse(DAGS)
    assert bag.import_errors == {}
    assert bag.dags


CODE_IN_AIRFLOW = {
    "python-operator": (
        "from airflow.providers.standard.operators.python import PythonOperator\n",
        '    PythonOperator(task_id="t", python_callable=lambda: print("in the scheduler"))\n',
    ),
    "bash-operator": (
        "from airflow.providers.standard.operators.bash import BashOperator\n",
        '    BashOperator(task_id="t", bash_command="env")\n',
    ),
    "taskflow": (
        "from airflow.sdk import task\n",
        '    @task\n    def t() -> None:\n        print("in the scheduler")\n\n    t()\n',
    ),
}


@pytest.mark.parametrize("case", sorted(CODE_IN_AIRFLOW))
def test_a_task_that_runs_code_inside_airflow_is_refused_unless_the_stack_opts_in(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imports, tasks = CODE_IN_AIRFLOW[case]
    body = HEADER + imports + "\n" + DAG_OPEN + tasks
    runtime_env(monkeypatch, "local")
    error = import_error(tmp_path, body)
    assert "refused by the platform" in error
    assert "runs its code inside an Airflow component" in error
    assert "etlstack:airflow.allowTasksInAirflow" in error

    runtime_env(monkeypatch, "local", allowTasksInAirflow=True)
    assert import_error(tmp_path, body) == ""


def hand_built_docker(image: str, **extra: object) -> str:
    """A DAG that builds the factory's own Docker launch by hand, with its settings."""
    return (
        HEADER
        + "from pipeline_factory import _docker_task\n"
        + "from pipeline_factory.docker_operators import PipelineDockerOperator\n"
        + "from pipeline_factory.runtime import load\n\n"
        + DAG_OPEN
        + "    runtime = load()\n"
        + f'    fields = {{**_docker_task(runtime, "weather", "t", ["run_load.sh"]), "image": {image}, **{extra!r}}}\n'
        + "    PipelineDockerOperator(**fields, warehouse_conn_id=runtime.docker.warehouse_conn_id)\n"
    )


def test_a_hand_built_launch_with_the_platforms_settings_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local")
    assert import_error(tmp_path, hand_built_docker('runtime.image("weather")')) == ""


@pytest.mark.parametrize(
    ("image", "extra", "says"),
    [
        ('"alpine:3.20"', {}, "its image 'alpine:3.20' is not a pipeline image"),
        ('runtime.image("weather")', {"privileged": True}, "it sets privileged otherwise"),
        ('runtime.image("weather")', {"pool": "default_pool"}, "it sets pool otherwise"),
        ('runtime.image("weather")', {"user": "0:0"}, "it sets user otherwise"),
        ('runtime.image("weather")', {"network_mode": "host"}, "it sets network_mode otherwise"),
        ('runtime.image("weather")', {"mem_limit": 2**34}, "it sets mem_limit otherwise"),
        ('runtime.image("weather")', {"cap_add": ["SYS_ADMIN"]}, "it sets cap_add otherwise"),
    ],
)
def test_a_hand_built_launch_that_decides_otherwise_is_refused_even_with_the_opt_in(
    image: str, extra: dict, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local", allowTasksInAirflow=True)
    error = import_error(tmp_path, hand_built_docker(image, **extra))
    assert "refused by the platform" in error
    assert says in error


def test_a_plain_docker_operator_is_not_the_platforms_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local")
    body = (
        HEADER
        + "from airflow.providers.docker.operators.docker import DockerOperator\n"
        + "from pipeline_factory.runtime import load\n\n"
        + DAG_OPEN
        + '    DockerOperator(task_id="t", image=load().image("weather"), command=["run_load.sh"])\n'
    )
    assert "a DockerOperator is not the platform's launch" in import_error(tmp_path, body)


def test_a_hand_built_pod_outside_the_platforms_choices_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "dev")
    body = (
        HEADER
        + "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator\n"
        + "from pipeline_factory.runtime import load\n\n"
        + DAG_OPEN
        + '    KubernetesPodOperator(task_id="t", image=load().image("weather"), namespace="default")\n'
    )
    error = import_error(tmp_path, body)
    assert "refused by the platform" in error
    assert "namespace" in error


def test_an_empty_operator_runs_nothing_and_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local")
    body = (
        HEADER
        + "from airflow.providers.standard.operators.empty import EmptyOperator\n\n"
        + DAG_OPEN
        + '    EmptyOperator(task_id="t")\n'
    )
    assert import_error(tmp_path, body) == ""


HOUSEKEEPING_IMPORT = "from pipeline_factory.housekeeping import Housekeeping\n"


def test_the_platforms_housekeeping_runs_inside_airflow_without_the_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local")
    body = HEADER + HOUSEKEEPING_IMPORT + "\n" + DAG_OPEN + '    Housekeeping(job="backups")\n'
    assert import_error(tmp_path, body) == ""


NOT_THE_PLATFORMS_HOUSEKEEPING = {
    # Its own execute: any code, under the platform's name.
    "subclass": (
        "\n\nclass Mine(Housekeeping):\n"
        "    def execute(self, context):\n"
        '        print("in the scheduler")\n\n\n' + DAG_OPEN + '    Mine(job="backups")\n'
    ),
    # The operator refuses an unknown job when built; the policy judges the task as it is.
    "unknown job": (
        "\n" + DAG_OPEN + '    task = Housekeeping(job="backups")\n    task.job = "anything"\n'
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_THE_PLATFORMS_HOUSEKEEPING))
def test_a_housekeeping_task_that_is_not_the_platforms_is_refused(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_env(monkeypatch, "local")
    body = HEADER + HOUSEKEEPING_IMPORT + NOT_THE_PLATFORMS_HOUSEKEEPING[case]
    error = import_error(tmp_path, body)
    assert "refused by the platform" in error
    assert "runs its code inside an Airflow component" in error


def test_the_policy_imports_no_launch_operator_itself() -> None:
    """Every Airflow process loads the policy, and every task process of a Docker stack
    would pay for the Kubernetes provider's import (about a second) if it did."""
    operators = (
        "airflow.providers.docker.operators.docker",
        "airflow.providers.cncf.kubernetes.operators.pod",
        "kubernetes.client",
    )
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pipeline_factory.policy; "
            f"print(sorted(m for m in {operators!r} if m in sys.modules))",
        ],
        env={**os.environ, "PYTHONPATH": str(DAGS)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
