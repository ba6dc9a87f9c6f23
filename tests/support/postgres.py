"""A throwaway PostgreSQL server of its own, started from the local server binaries.

The server is empty, as the official image's entrypoint leaves a new data directory
before it runs the init scripts: only the `postgres` superuser, local connections
trusted, TCP connections on 127.0.0.1 with a password (scram-sha-256). It never skips:
without the binaries the test fails and says what to install.

(The pipelines' tests have their own session-wide server, testing/pipeline_testing,
which already holds the warehouse role; a test of the platform's init script needs a
server where nothing exists yet, so it starts this one.)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port


def server_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        pytest.fail(
            f"PostgreSQL binary {name!r} not found: this test runs against a throwaway "
            "server; install it with `apt-get install -y postgresql`",
            pytrace=False,
        )
    return str(found)


@dataclass(frozen=True)
class Server:
    """A running server: its folder (data, socket and log), port and binaries."""

    directory: Path
    port: int
    bin_dir: Path
    # PostgreSQL refuses to run as root; as root, it runs as the postgres user.
    run_as: str | None

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def run(self, *command: str, extra_env: dict[str, str] | None = None) -> None:
        """Run `command` as the server's user, with its binaries first on PATH; it must pass."""
        result = subprocess.run(
            command,
            user=self.run_as,
            env={
                **os.environ,
                "PATH": f"{self.bin_dir}:{os.environ['PATH']}",
                **(extra_env or {}),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def throwaway_server(prefix: str = "etlstack-postgres-") -> Iterator[Server]:
    """Start an empty server in a new folder; stop it and remove the folder on exit."""
    bin_dir = Path(server_binary("initdb")).parent
    run_as = "postgres" if os.geteuid() == 0 else None
    # A folder the server's user can reach (pytest's own temporary folders are root's only).
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(directory, account.pw_uid, account.pw_gid)
    server = Server(directory=directory, port=free_port(), bin_dir=bin_dir, run_as=run_as)
    data = directory / "data"
    try:
        server.run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        options = f"-k {directory} -p {server.port} -c listen_addresses=127.0.0.1"
        server.run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(server.log),
            "-w", "start",
        )  # fmt: skip
        try:
            yield server
        finally:
            server.run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
