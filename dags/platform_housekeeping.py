"""Platform housekeeping: every day, removes what the platform no longer needs and checks
that its database is backed up, so that nothing piles up while nobody looks.

Six independent tasks, one per job (dags/pipeline_factory/housekeeping.py); each logs
what it removed or found, and a failure fails its own task only:

- `metadata`: `airflow db clean` of Airflow's database (task instances, DAG runs, logs,
  XComs, ...) older than `housekeeping.metadata`, without archive tables.
- `task_logs`: task log files older than `housekeeping.taskLogs`, then the directories
  that emptied.
- `failed_task_containers`: task containers (docker) or pods (kubernetes) that failed
  longer ago than `housekeeping.failedTaskContainers`; until then they stay for
  inspection. Successful ones are removed as they finish.
- `pipeline_images`: on docker, the local images of the stack's registry that no
  deployed pipeline and no container uses (the registry keeps them; a rollback pulls
  again). On Kubernetes the kubelet does this itself.
- `backups`: fails when the newest complete backup of the platform's PostgreSQL
  (`postgres.backups`) is older than two backup intervals, or when there is none. With
  an external database there is nothing to check.
- `disk_usage`: on docker, the registry's size and Docker's disk use (images,
  containers, volumes), to watch against the disk. Nothing leaves the registry on its
  own: every version stays deployable.

The DAG is active from its first deploy: nobody has to unpause it.
"""

from datetime import UTC, datetime

from airflow.sdk import DAG

from pipeline_factory.housekeeping import JOBS, Housekeeping, settings_doc
from pipeline_factory.runtime import load

with DAG(
    dag_id="platform_housekeeping",
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # The stack pauses new DAGs (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION); this one
    # must run without anyone around to unpause it.
    is_paused_upon_creation=False,
    tags=["platform"],
    doc_md=f"{__doc__}\n{settings_doc(load())}",
):
    for job in JOBS:
        Housekeeping(job=job)
