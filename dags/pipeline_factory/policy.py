"""The platform's cluster policy: every task of every DAG launches the way the factory does.

Airflow calls `task_policy` for each task of each DAG it parses (the image's
airflow_local_settings.py hands it over), so a DAG that does not use the factory is
held to the same rules as one that does:

- a task that would run its own code inside an Airflow component (a PythonOperator, a
  BashOperator, a @task function) is refused: it would run in the scheduler's
  process, with the scheduler's environment (the database credentials and the fernet
  key among them), outside the task limits and the pipeline pool. A stack that
  accepts that risk opts in with `airflow.allowTasksInAirflow`;
- a Docker or Kubernetes launch must be the factory's own operator with the
  factory's decisions for a deployed pipeline image (image, pool, user, limits,
  network, namespace...), whoever built it;
- the smoke test's refusal probes are exempt: they ask for what the platform refuses
  on purpose, and succeed only when it is refused;
- the platform's housekeeping (pipeline_factory/housekeeping.py) is exempt: it runs
  inside the scheduler by design, to clean Airflow's database, its logs and the
  Docker host. Exactly the `Housekeeping` operator, with one of its named jobs: its
  code is the platform's and a DAG chooses only which job runs. A subclass, which
  could replace that code, or a job the operator does not know, is refused as above;
- an EmptyOperator runs nothing and is allowed.
"""

from __future__ import annotations

import inspect
from typing import Any

from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import BaseOperator

from pipeline_factory import pipeline_task
from pipeline_factory.housekeeping import JOBS, Housekeeping
from pipeline_factory.refusal import ExpectRefusal
from pipeline_factory.runtime import Runtime, load

# The operators that launch a container, by where they are defined. The policy imports
# neither: every Airflow process loads it, and the Kubernetes provider alone takes about
# a second to import, which a Docker stack's task processes would pay for nothing. A DAG
# that uses one has imported it already.
_LAUNCH_OPERATORS = {
    ("airflow.providers.docker.operators.docker", "DockerOperator"),
    ("airflow.providers.cncf.kubernetes.operators.pod", "KubernetesPodOperator"),
}
# What the platform does not decide about a launch: the task's own name, what it runs
# (a run_<task>.sh of the pipeline, which the DAG tests check) and its labels.
_TASK_OWN = {"task_id", "command", "cmds", "labels", "name", "kwargs"}
# Of BaseOperator's own arguments, the platform decides only the pool.
_PLATFORM_BASE_ARGUMENTS = {"pool", "pool_slots", "executor", "queue"}


def _refuse(task: Any, problem: str) -> AirflowClusterPolicyViolation:
    return AirflowClusterPolicyViolation(
        f"task {task.dag_id}.{task.task_id} is refused by the platform: {problem}; launch it "
        "with pipeline_factory (pipeline_dag or pipeline_task), see docs/pipelines-and-dags.md"
    )


def _launch_arguments(operator: type[BaseOperator]) -> set[str]:
    """The arguments of a launch operator's own classes, and the base ones the platform sets."""
    names = set(_PLATFORM_BASE_ARGUMENTS)
    for cls in operator.__mro__:
        if cls is BaseOperator or not issubclass(cls, BaseOperator):
            continue
        names |= set(inspect.signature(cls.__init__).parameters) - {"self"}
    return names - _TASK_OWN


def _same(expected: Any, actual: Any) -> bool:
    if hasattr(expected, "to_dict") and hasattr(actual, "to_dict"):
        return bool(expected.to_dict() == actual.to_dict())
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return all(_same(e, a) for e, a in zip(expected, actual, strict=True))
    return bool(expected == actual)


def _check_launch(task: Any, runtime: Runtime) -> None:
    images = {image: name for name, image in runtime.pipeline_images.items()}
    image = getattr(task, "image", None)
    if image not in images:
        raise _refuse(task, f"its image {image!r} is not a pipeline image this stack deploys")
    # The factory's own operator for the same pipeline: whatever differs from it is a
    # launch decision the DAG made instead of the platform.
    expected = pipeline_task(images[image], "policy_check", task_id=task.task_id, runtime=runtime)
    if type(task) is not type(expected):
        raise _refuse(task, f"a {type(task).__name__} is not the platform's launch")
    differing = sorted(
        name
        for name in _launch_arguments(type(expected))
        if hasattr(expected, name) and not _same(getattr(expected, name), getattr(task, name, None))
    )
    if differing:
        raise _refuse(task, f"it sets {', '.join(differing)} otherwise than the platform does")


def _launches_a_container(task: Any) -> bool:
    return any(
        (cls.__module__, cls.__qualname__) in _LAUNCH_OPERATORS for cls in type(task).__mro__
    )


def _platform_housekeeping(task: Any) -> bool:
    return type(task) is Housekeeping and task.job in JOBS


def task_policy(task: Any) -> None:
    if isinstance(task, EmptyOperator | ExpectRefusal) or _platform_housekeeping(task):
        return
    runtime = load()
    if _launches_a_container(task):
        _check_launch(task, runtime)
    elif not runtime.allow_tasks_in_airflow:
        raise _refuse(
            task,
            f"a {type(task).__name__} runs its code inside an Airflow component, with that "
            "component's credentials (the metadata database, the fernet key) and outside the "
            "task limits and the pipeline pool. A stack that accepts that risk sets "
            "etlstack:airflow.allowTasksInAirflow",
        )
