"""A real PostgreSQL for the pipelines' tests: the `postgres` and `warehouse_url` fixtures.

A pipeline's load and check tasks are SQL, so they are tested against a real server: a
throwaway PostgreSQL started from the local server binaries for the session, with the
warehouse role and a fresh database per test, as the platform has it. It never skips:
without the binaries the tests fail and say what to install.
"""

from __future__ import annotations

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
    socket_dir: str
    port: int

    def admin(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname="postgres"
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
            f"PostgreSQL server binary {name!r} not found: install the PostgreSQL server "
            "(Debian: apt-get install postgresql) to run the pipelines' tests",
            pytrace=False,
        )
    return str(found)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A throwaway PostgreSQL server for the session, with the warehouse role."""
    initdb, pg_ctl = _server_binary("initdb"), _server_binary("pg_ctl")
    # PostgreSQL refuses to run as root: as root, run it as the postgres user.
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(base, account.pw_uid, account.pw_gid)
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run(command, user=run_as, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{server_log}",
                pytrace=False,
            )

    run(
        initdb,
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--no-instructions",
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    server = Server(socket_dir=str(base), port=port)
    try:
        with closing(server.admin()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {WAREHOUSE_USER} LOGIN PASSWORD %s", (WAREHOUSE_PASSWORD,))
        yield server
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            user=run_as,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


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
