"""How much of its own output each platform container keeps on the host's disk."""

from typing import Any

# The engine's json-file log grows without end by default: a year of a scheduler's
# output would fill a small host. `docker logs` keeps the newest 30 MB of each container.
ROTATED_LOGS: dict[str, Any] = {
    "log_driver": "json-file",
    "log_opts": {"max-size": "10m", "max-file": "3"},
}
