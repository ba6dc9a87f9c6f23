"""The memory-limit check: a task that allocates past its limit must be killed.

Expected to FAIL. Its one task allocates past the platform's task memory limit
(airflow.taskResources.memory); the platform kills the container (OOMKilled, exit
137), the task is retried once and fails again, so the run fails. A run that
succeeds, or a task log without the kill, means tasks are not confined. Kept apart
from platform_smoke, which must stay green.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from pipeline_factory import pipeline_task

with DAG(
    dag_id="platform_memory_limit",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["platform"],
    doc_md=__doc__,
):
    pipeline_task("platform-smoke", "memory_hog", retries=1, retry_delay=timedelta(seconds=5))
