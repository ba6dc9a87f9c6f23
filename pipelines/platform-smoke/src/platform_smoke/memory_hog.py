"""`python -m platform_smoke.memory_hog`: allocate past the task's memory limit.

The memory-limit check (dags/platform_memory_limit.py) runs this and expects the
platform to kill it. Every chunk is written, so it is resident memory, not a
reservation the kernel could leave unbacked. If nothing stops it by the time it
holds several times the limit, the limit is not enforced: it says so and fails.
"""

from __future__ import annotations

import sys

from platform_smoke.__main__ import memory_limit

CHUNK = 32 * 1024 * 1024
# Past the limit plus the swap Docker allows by default (as much again), with room.
CEILING_FACTOR = 4


def hog(limit: int, chunk: int = CHUNK, ceiling_factor: int = CEILING_FACTOR) -> int:
    """Allocate until killed; return how much was held if never stopped."""
    held: list[bytes] = []
    total = 0
    while total < limit * ceiling_factor:
        held.append(b"\xa5" * chunk)
        total += chunk
        print(f"memory hog: holding {total >> 20} MiB (limit {limit >> 20} MiB)", flush=True)
    return total


def main() -> int:
    limit = memory_limit()
    if limit is None:
        print("memory hog: the task has no memory limit; the platform must set one", flush=True)
        return 1
    total = hog(limit)
    print(
        f"memory hog: held {total >> 20} MiB, {CEILING_FACTOR}x the {limit >> 20} MiB limit, "
        "and was never stopped: the memory limit is not enforced",
        flush=True,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
