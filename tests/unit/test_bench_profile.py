"""The benchmark's reading of py-spy's samples (tests/bench/profile.py): each sample of a
task's processes lands in the phase its frames show, and nothing else is counted."""

from __future__ import annotations

from tests.bench import profile

SCHEDULER = 'process 10:"/opt/venv/bin/python3 /opt/venv/bin/airflow scheduler"'
WORKER = 'process 11:"airflow worker -- LocalExecutor: 01a236ed-24ea-766a-b7d0-bc3d75619da3"'
TASK = 'process 12:"airflow worker -- 01a236ed-24ea-766a-b7d0-bc3d75619da3"'
SUPERVISE = (
    "supervise_task (airflow/sdk/execution_time/supervisor.py:1900)",
    "ActivitySubprocess.start (airflow/sdk/execution_time/supervisor.py:700)",
)
FORKED = (*SUPERVISE, "_fork_main (airflow/sdk/execution_time/supervisor.py:300)")


def _line(processes: tuple[str, ...], frames: tuple[str, ...], count: int) -> str:
    return ";".join((*processes, *frames)) + f" {count}"


def test_each_sample_lands_in_the_phase_its_frames_show() -> None:
    lines = [
        _line(
            (SCHEDULER, WORKER, TASK),
            (
                *FORKED,
                "parse (airflow/sdk/execution_time/task_runner.py:1012)",
                "<module> (x.py:1)",
            ),
            7,
        ),
        # A forked task process still under its supervisor's title is the task's.
        _line(
            (SCHEDULER, WORKER),
            (*FORKED, "ContainerApiMixin.wait (docker/api/container.py:1400)"),
            3,
        ),
        _line(
            (SCHEDULER, WORKER, TASK),
            (
                *FORKED,
                "DockerOperator.execute (airflow/providers/docker/operators/docker.py:517)",
                "APIClient._read_from_socket.<locals>.<genexpr> (docker/api/client.py:438)",
            ),
            2,
        ),
        _line(
            (SCHEDULER, WORKER),
            (
                *SUPERVISE[:1],
                "ActivitySubprocess.wait (airflow/sdk/execution_time/supervisor.py:900)",
            ),
            5,
        ),
        # The scheduler's own loop and an idle worker are not a task's.
        _line((SCHEDULER,), ("_run_scheduler_loop (airflow/jobs/scheduler_job_runner.py:1)",), 40),
        _line(
            (SCHEDULER, 'process 13:"airflow worker -- LocalExecutor: <idle>"'),
            ("_run_worker (airflow/executors/local_executor.py:1)",),
            90,
        ),
    ]
    assert profile.phases(profile.parse(lines)) == {
        "task: DAG file parse": 7,
        "task: Docker API, waits for the container to exit": 3,
        "task: Docker API, streams the container's logs": 2,
        "supervisor: watches the task (logs, heartbeats)": 5,
    }
