"""The platform smoke test: a task runs where tasks may run, and is refused where not.

`task_runs` must succeed (a confined, non-root task that reaches the warehouse).
Each `*_refused` task succeeds only if the platform refuses its launch, and returns
what refused it. Trigger it after every deploy; a green run means both hold.
"""

from datetime import UTC, datetime

from airflow.sdk import DAG

from pipeline_factory import pipeline_task, refused_tasks

with DAG(
    dag_id="platform_smoke",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["platform"],
    doc_md=__doc__,
):
    pipeline_task("platform-smoke", "check", task_id="task_runs")
    refused_tasks("platform-smoke")
