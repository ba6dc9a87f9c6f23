"""Airflow's local settings in the platform's image: the cluster policy.

Airflow imports this module at start (it is on PYTHONPATH, see the Dockerfile) and
calls `task_policy` for every task of every DAG it parses. The rules live with the
DAG factory (dags/pipeline_factory/policy.py); the DAGs folder is on sys.path by the
time Airflow parses a DAG, so they are imported then, not when this module loads.
"""

from typing import Any


def task_policy(task: Any) -> None:
    from pipeline_factory.policy import task_policy as platform_task_policy

    platform_task_policy(task)
