"""The smoke task's checks, against a real warehouse and fake cgroup files.

The warehouse is the throwaway PostgreSQL of the shared fixtures (`warehouse_url`,
testing/pipeline_testing), so "reachable" is checked against a real server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from platform_smoke.__main__ import memory_limit, problems

PIPELINE = Path(__file__).resolve().parent.parent
LIMIT = 512 * 1024 * 1024


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])


def test_confined_task_with_reachable_warehouse_passes(warehouse_url: str) -> None:
    assert problems(10001, {"WAREHOUSE_URL": warehouse_url}, LIMIT) == []


def test_every_broken_promise_is_reported() -> None:
    url = f"postgresql://warehouse:secret@127.0.0.1:{closed_port()}/warehouse"
    found = problems(0, {"WAREHOUSE_URL": url}, None, timeout=1)
    assert len(found) == 3
    assert "runs as root" in found[0]
    assert "no memory limit" in found[1]
    assert "unreachable" in found[2]
    assert "secret" not in " ".join(found)


def test_missing_or_malformed_warehouse_url() -> None:
    assert problems(10001, {}, LIMIT) == [
        "WAREHOUSE_URL is not set; the platform must pass it to every task"
    ]
    assert problems(10001, {"WAREHOUSE_URL": "mysql://db/x"}, LIMIT) == [
        "WAREHOUSE_URL is not a postgresql://host... URL"
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "536870912\n"}, LIMIT),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "536870912\n"}, LIMIT),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
        ({}, None),
    ],
)
def test_memory_limit_from_cgroup_v1_and_v2(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert memory_limit(tmp_path) == expected


def test_run_script_fails_loudly_outside_the_platform() -> None:
    """Here (no WAREHOUSE_URL, maybe root, maybe no limit) the script must exit 1 and say why."""
    # The interpreter running the tests has the pipeline installed, as the image has.
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(PIPELINE / "run_check.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "platform smoke test: WAREHOUSE_URL is not set" in result.stderr
