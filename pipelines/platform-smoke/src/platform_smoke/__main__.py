"""`python -m platform_smoke`: exit 0 when the task runs as the platform promises."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

# cgroup v1 reports "no limit" as a page-rounded LONG_MAX.
_V1_UNLIMITED = 1 << 62


def memory_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The container's memory limit in bytes, or None when there is none."""
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        if path.is_file():
            value = path.read_text().strip()
            if value == "max" or int(value) >= _V1_UNLIMITED:
                return None
            return int(value)
    return None


def problems(
    uid: int, env: Mapping[str, str], limit: int | None, timeout: float = 5.0
) -> list[str]:
    found = []
    if uid == 0:
        found.append("the task runs as root; the platform must run tasks as a non-root user")
    if limit is None:
        found.append("the task has no memory limit; the platform must set one on every task")
    url = env.get("WAREHOUSE_URL", "")
    if not url:
        found.append("WAREHOUSE_URL is not set; the platform must pass it to every task")
        return found
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        found.append("WAREHOUSE_URL is not a postgresql://host... URL")
        return found
    address = (parts.hostname, parts.port or 5432)
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        found.append(f"the warehouse at {address[0]}:{address[1]} is unreachable: {error}")
    return found


def main() -> int:
    limit = memory_limit()
    found = problems(os.getuid(), os.environ, limit)
    if found:
        for problem in found:
            print(f"platform smoke test: {problem}", file=sys.stderr)
        return 1
    # The credentials stay out of the log: only where the warehouse is.
    host = urlsplit(os.environ["WAREHOUSE_URL"]).hostname
    print(
        f"platform smoke test passed: uid {os.getuid()}, memory limit {limit} bytes, "
        f"warehouse {host} reachable"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
