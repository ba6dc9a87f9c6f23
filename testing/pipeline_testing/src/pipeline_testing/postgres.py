"""A real PostgreSQL for the pipelines' tests: the `postgres` and `warehouse_url` fixtures.

A pipeline's load and check tasks are SQL, so they are tested against a real server: a
throwaway PostgreSQL started from the local server binaries for the session, with the
warehouse role and a fresh database per test, as the platform has it. It never skips:
without the binaries the tests fail and say what to install.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

WAREHOUSE_USER = "warehouse"
WAREHOUSE_PASSWORD = "test-only-warehouse-password"


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
        """Run `command` as the server's user, its binaries first on PATH; it must pass."""
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
        if result.returncode != 0:
            server_log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{server_log}",
                pytrace=False,
            )

    def admin(self) -> psycopg2.extensions.connection:
        """The superuser, on the local socket."""
        conn = psycopg2.connect(
            host=str(self.directory), port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        return conn


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        pytest.fail(
            f"PostgreSQL server binary {name!r} not found: these tests run against a "
            "throwaway server; install it (Debian: apt-get install postgresql)",
            pytrace=False,
        )
    return str(found)


@contextlib.contextmanager
def throwaway_server(prefix: str = "pipeline-pg-") -> Iterator[Server]:
    """An empty server in a new folder, as a new data directory is before any init script:
    only the `postgres` superuser, local connections trusted, TCP on 127.0.0.1 with a
    password. Stopped, and its folder removed, on exit."""
    bin_dir = Path(_server_binary("initdb")).parent
    run_as = "postgres" if os.geteuid() == 0 else None
    # A folder the server's user can reach (pytest's temporary folders are root's only).
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(directory, account.pw_uid, account.pw_gid)
    server = Server(directory=directory, port=_free_port(), bin_dir=bin_dir, run_as=run_as)
    data = str(directory / "data")
    try:
        server.run(
            "initdb", "-D", data, "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions",
        )  # fmt: skip
        options = f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        server.run(
            "pg_ctl", "-D", data, "-l", str(server.log), "-o", options, "-w", "-t", "60", "start"
        )
        try:
            yield server
        finally:
            server.run("pg_ctl", "-D", data, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A throwaway PostgreSQL server for the session, with the warehouse role."""
    with throwaway_server() as server:
        with closing(server.admin()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {WAREHOUSE_USER} LOGIN PASSWORD %s", (WAREHOUSE_PASSWORD,))
        yield server


_databases = itertools.count()


@pytest.fixture
def warehouse_url(postgres: Server) -> Iterator[str]:
    """A fresh, empty warehouse database owned by the warehouse role, as the platform has it."""
    name = f"warehouse_{os.getpid()}_{next(_databases)}"
    admin = postgres.admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} OWNER {WAREHOUSE_USER}")
        yield (
            f"postgresql://{WAREHOUSE_USER}:{WAREHOUSE_PASSWORD}@127.0.0.1:{postgres.port}/{name}"
        )
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        admin.close()
