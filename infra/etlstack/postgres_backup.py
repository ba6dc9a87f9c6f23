"""Backups of the platform's PostgreSQL, taken and restored by postgres-backup.sh.

The script runs in a container of the PostgreSQL image itself (pg_dump and pg_restore of
the server's own version): a long-running container on the docker target, a CronJob on
the kubernetes target. Both write to a volume of their own, apart from the database's.
"""

from __future__ import annotations

from pathlib import Path

from etlstack.config import Backups, seconds

SCRIPT = Path(__file__).with_name("postgres-backup.sh")
# Where the script is installed in the container, and where the backups are mounted.
COMMAND = "/usr/local/bin/postgres-backup"
MOUNT = "/backups"


def settings_environment(backups: Backups, databases: tuple[str, ...]) -> dict[str, str]:
    """The script's plain settings; the superuser's password is added as a secret."""
    return {
        "BACKUPS_DIR": MOUNT,
        "DATABASES": " ".join(databases),
        "EVERY_SECONDS": str(seconds(backups.every)),
        "KEEP_SECONDS": str(seconds(backups.keep)),
    }
