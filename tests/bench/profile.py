"""Where a task's time goes: py-spy's samples of the scheduler's process tree, sorted into
the phases of a task.

py-spy (`record --subprocesses --format raw`) writes one line per distinct stack: the
processes from the scheduler down to the sampled one (`process <pid>:"<title>"`), then
the Python frames, outermost first, then how many samples had that stack. Airflow titles
its processes, so a task's two processes are recognised by their titles:

- the LocalExecutor worker that supervises it (`airflow worker -- LocalExecutor: <id>`):
  it forks the task process, forwards its logs and heartbeats, and reports its end;
- the task process it forked (`airflow worker -- <id>`): it parses the DAG file, runs
  the operator, and reports back through the supervisor.

Samples are taken whether the process runs or waits (a container's process tree shows
py-spy no idle flag), so the phases add up to wall time, not CPU; the benchmarks' CPU
figures come from the containers' accounting.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# A task's processes carry one of these titles; a forked task process keeps its
# supervisor's title until it sets its own, so it is told apart by its fork frame.
TASK_TITLE = re.compile(r'process \d+:"airflow worker -- (LocalExecutor: )?[0-9a-f-]{36}"')
FORKED = re.compile(r"^_fork_main \(.*supervisor\.py")
# The first rule with a frame on the stack names the phase. Frames are
# `function (file:line)`, a method as `Class.function`.
TASK_PHASES: tuple[tuple[str, str], ...] = (
    ("task: DAG file parse", r"^(\w+\.)?(parse|DagBag\.\w+) \("),
    ("task: Docker API, waits for the container to exit", r"^(\w+\.)?wait \(docker/api/"),
    (
        "task: Docker API, streams the container's logs",
        r"^(\w+\.)?(attach|logs|_read_from_socket|_multiplexed_response_stream_helper|frames_iter)\S*"
        r" \(docker/",
    ),
    ("task: Docker API, other calls (create, start, inspect, remove)", r"\(docker/api/"),
    ("task: the operator's own work", r"^(\w+\.)?execute \("),
    ("task: prepares (templates, connections)", r"^(\w+\.)?_prepare \(.*task_runner\.py"),
    ("task: reports to the supervisor", r"^CommsDecoder\.\w+ \("),
    ("task: starts (logging, imports)", r"^(\w+\.)?(_configure_logs_over_json_channel|startup) \("),
)
SUPERVISOR_PHASES: tuple[tuple[str, str], ...] = (
    (
        "supervisor: reports the final state",
        r"^(\w+\.)?(update_task_state_if_needed|_handle_process_exit) \(",
    ),
    (
        "supervisor: watches the task (logs, heartbeats)",
        r"^(\w+\.)?(wait|_monitor_subprocess) \(.*supervisor\.py",
    ),
    ("supervisor: starts the task process", r"^(\w+\.)?start \(.*supervisor\.py"),
)


@dataclass(frozen=True)
class Sample:
    processes: tuple[str, ...]
    frames: tuple[str, ...]
    count: int


def parse(lines: Iterable[str]) -> list[Sample]:
    samples = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, count = line.rsplit(" ", 1)
        parts = stack.split(";")
        processes = tuple(p for p in parts if p.startswith("process "))
        frames = tuple(p for p in parts if not p.startswith("process "))
        samples.append(Sample(processes, frames, int(count)))
    return samples


def _phase(frames: tuple[str, ...], rules: tuple[tuple[str, str], ...], other: str) -> str:
    for name, pattern in rules:
        expression = re.compile(pattern)
        if any(expression.search(frame) for frame in frames):
            return name
    return other


def phases(samples: Iterable[Sample]) -> Counter[str]:
    """Samples per phase of the tasks' processes; other processes are left out."""
    counted: Counter[str] = Counter()
    for sample in samples:
        if not any(TASK_TITLE.fullmatch(process) for process in sample.processes):
            continue
        if any(FORKED.search(frame) for frame in sample.frames):
            counted[_phase(sample.frames, TASK_PHASES, "task: other")] += sample.count
        else:
            counted[_phase(sample.frames, SUPERVISOR_PHASES, "supervisor: other")] += sample.count
    return counted
