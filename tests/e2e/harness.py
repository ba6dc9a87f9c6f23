"""What the end-to-end tests use to talk to the deployed platform."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import base_images
import deploy
import docker
import psycopg2

from etlstack import render

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# The modules here import each other as top-level modules (this folder on the path:
# conftest.py puts it there, and a script run from it has it); what the tests share
# with the fast tests comes from the repository root's tests.support.
if str(PROJECT_ROOT) not in sys.path:
    sys.path.append(str(PROJECT_ROOT))

from tests.support.polling import until  # noqa: E402

ARTIFACTS = PROJECT_ROOT / ".e2e-artifacts"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

log = logging.getLogger("e2e")


@contextlib.contextmanager
def stack_file_as(project: Path, stack: str, as_stack: str) -> Iterator[None]:
    """`stack`'s file under the name `as_stack` while the CLI acts on the session's platform;
    removed after, so that the project's own tests see only its own stacks."""
    copy = project / f"Pulumi.{as_stack}.yaml"
    shutil.copy2(project / f"Pulumi.{stack}.yaml", copy)
    try:
        yield
    finally:
        copy.unlink()


def etlstack(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's CLI, run in `project` as a user runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("etlstack")), *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


def progress_to_terminal() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[e2e %(asctime)s] %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class AirflowAPI:
    """Airflow's REST API as a user calls it: a JWT from /auth/token, then /api/v2."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.token: str | None = None

    def _send(self, method: str, path: str, body: Any = None, token: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {self.login()}")
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def login(self) -> str:
        if self.token is None:
            try:
                answer = self._send(
                    "POST",
                    "/auth/token",
                    {"username": self.username, "password": self.password},
                    token=False,
                )
            except urllib.error.HTTPError as error:
                # Not chained: the report would print the request body, password and all.
                raise AssertionError(
                    f"logging in to {self.url} as {self.username} failed: HTTP {error.code}"
                ) from None
            self.token = str(answer["access_token"])
        return self.token

    def get(self, path: str) -> Any:
        return self._send("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, body)

    def text(self, path: str) -> str:
        request = urllib.request.Request(f"{self.url}{path}", method="GET")
        request.add_header("Authorization", f"Bearer {self.login()}")
        request.add_header("Accept", "text/plain")
        with urllib.request.urlopen(request, timeout=60) as response:
            return bytes(response.read()).decode(errors="replace")

    def trigger(self, dag_id: str) -> str:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return str(run["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        last: list[str] = []

        def finished() -> dict[str, Any] | None:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if last[-1:] != [run["state"]]:
                log.info("%s run %s is %s", dag_id, run_id, run["state"])
                last.append(run["state"])
            return dict(run) if run["state"] in ("success", "failed") else None

        return until(
            finished,
            timeout=timeout,
            interval=3,
            what=lambda: f"{dag_id} run {run_id} still {last[-1] if last else None}",
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(answer["task_instances"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        answer = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            "?full_content=true"
        )
        content = answer.get("content")
        if isinstance(content, list):
            return "\n".join(
                str(item.get("event", item)) if isinstance(item, dict) else str(item)
                for item in content
            )
        return str(content)


@dataclass(repr=False)
class Platform:
    client: docker.DockerClient
    evaluation: render.Evaluation
    applier: deploy.Applier
    deployment: deploy.Deployment
    overrides: dict[str, Any]
    airflow: AirflowAPI

    def __repr__(self) -> str:
        # Test reports print fixture values; the evaluation holds revealed secrets.
        return f"Platform({self.airflow.url})"

    @property
    def outputs(self) -> dict[str, Any]:
        return self.deployment.outputs

    def container_inputs(self, suffix: str) -> dict[str, Any]:
        """The revealed, digest-substituted inputs of the container named *-<suffix>."""
        found = [
            r
            for r in self.evaluation.by_type(deploy.CONTAINER)
            if str(render.reveal(r.inputs["name"])).endswith(f"-{suffix}")
        ]
        assert len(found) == 1, f"expected one container named *-{suffix}, found {len(found)}"
        return dict(deploy._replace(render.reveal(found[0].inputs), self.applier.substitutions))

    def container(self, suffix: str) -> Any:
        return self.client.containers.get(self.container_inputs(suffix)["name"])

    def _declared(self, type_: str, docker_name: str) -> render.Resource:
        found = [
            r
            for r in self.evaluation.by_type(type_)
            if render.reveal(r.inputs["name"]) == docker_name
        ]
        assert len(found) == 1, f"expected one {type_} named {docker_name}, found {len(found)}"
        return found[0]

    def redeploy(self, suffix: str) -> None:
        """Replace the container named *-<suffix> with a new one, as `pulumi up` does when
        its inputs change; wait until every container is healthy again."""
        name = self.container_inputs(suffix)["name"]
        log.info("replacing container %s", name)
        self.client.containers.get(name).remove(force=True)
        self.applier._create(self._declared(deploy.CONTAINER, name))
        self.wait_all_healthy(timeout=300)

    def lose_volume(self, suffix: str, volume: str) -> None:
        """Remove the container named *-<suffix> and its volume, as an administrator might by
        mistake, then create both again from the stack, as the next `pulumi up` does."""
        name = self.container_inputs(suffix)["name"]
        log.info("removing container %s and its volume %s", name, volume)
        self.client.containers.get(name).remove(force=True)
        self.client.volumes.get(volume).remove()
        self.applier._create(self._declared(deploy.VOLUME, volume))
        self.applier._create(self._declared(deploy.CONTAINER, name))

    def env(self, suffix: str) -> dict[str, str]:
        envs = self.container_inputs(suffix).get("envs") or []
        return dict(str(e).split("=", 1) for e in envs)

    def long_running(self) -> list[str]:
        return [
            str(render.reveal(r.inputs["name"]))
            for r in self.evaluation.by_type(deploy.CONTAINER)
            if r.inputs.get("mustRun", True) and not r.inputs.get("attach", False)
        ]

    def warehouse(self) -> Any:
        """A connection to the warehouse as the pipelines' role, on the published port."""
        return self._postgres("warehouse", "WAREHOUSE_DB_PASSWORD", "warehouse")

    def warehouse_content(self) -> dict[str, tuple[int, str]]:
        """Every warehouse table: its row count and a hash of all its rows, in order."""
        with self.warehouse() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)"
                " FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            tables = sorted(row[0] for row in cursor.fetchall())
            content = {}
            for table in tables:
                cursor.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    f" FROM {table} AS t"
                )
                count, digest = cursor.fetchone()
                content[table] = (int(count), str(digest))
        conn.close()
        return content

    def metadata_database(self) -> Any:
        """A connection to PostgreSQL's maintenance database as its superuser, on the
        published port."""
        return self._postgres(
            self.env("postgres")["POSTGRES_USER"], "POSTGRES_PASSWORD", "postgres"
        )

    def airflow_database(self) -> Any:
        """A connection to Airflow's own database as PostgreSQL's superuser, on the
        published port."""
        return self._postgres(self.env("postgres")["POSTGRES_USER"], "POSTGRES_PASSWORD", "airflow")

    def _postgres(self, user: str, password_variable: str, dbname: str) -> Any:
        port = self.overrides["docker"]["ports"]["postgres"]
        try:
            return psycopg2.connect(
                host="127.0.0.1",
                port=port,
                user=user,
                password=self.env("postgres")[password_variable],
                dbname=dbname,
                connect_timeout=10,
            )
        except psycopg2.OperationalError as error:
            # Not chained: the report would print psycopg2's arguments, password included.
            raise AssertionError(
                f"connecting to {dbname} as {user} on port {port}: {error}"
            ) from None

    def assert_succeeded(self, dag_id: str, run_id: str, run: dict[str, Any]) -> None:
        """The run and every task succeeded; otherwise fail with the failed tasks' logs."""
        tasks = self.airflow.task_instances(dag_id, run_id)
        states = {t["task_id"]: t["state"] for t in tasks}
        if run["state"] != "success" or set(states.values()) != {"success"}:
            logs = {
                t["task_id"]: self.airflow.task_log(dag_id, run_id, t["task_id"], t["try_number"])[
                    -2000:
                ]
                for t in tasks
                if t["state"] != "success" and t["try_number"]
            }
            raise AssertionError(f"{dag_id} run {run_id}: {run['state']}, tasks {states}\n{logs}")

    def wait_all_healthy(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        for name in self.long_running():
            self.applier.wait_healthy(name, max(deadline - time.monotonic(), 1))
        log.info("every container is running and healthy")


def _merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {k: _merge(base.get(k), v) if k in base else v for k, v in {**base, **extra}.items()}
    return extra


def stack_overrides(
    project: Path,
    stack: str,
    client: docker.DockerClient,
    stand_ins: dict[str, str],
    ports: dict[str, int | None] | None,
) -> dict[str, Any]:
    """The local stack as a team with an internal mirror (and a TLS interceptor) sets it,
    published on 127.0.0.1 at `ports` (None: the stack's own)."""
    stack_file, _ = render.stack_file_config(project, stack)

    def current(key: str) -> dict[str, Any]:
        raw = stack_file.get(f"etlstack:{key}")
        return json.loads(raw) if raw else {}

    if not CA_BUNDLE.is_file():
        raise RuntimeError(f"{CA_BUNDLE} is missing: image builds need the host's CA bundle")
    build: dict[str, Any] = {}
    extra = base_images.extra_ca_bundle(client, stand_ins["pythonBase"], CA_BUNDLE)
    if extra:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        bundle = ARTIFACTS / "extra-ca.pem"
        bundle.write_text(extra + "\n")
        build["caBundleFile"] = str(bundle)
    return {
        "images": _merge(current("images"), stand_ins),
        "build": _merge(current("build"), build),
        "docker": _merge(
            current("docker"), {"bindAddress": "127.0.0.1", **({"ports": ports} if ports else {})}
        ),
    }


def applier_for(
    client: docker.DockerClient, project: Path, stack: str, as_stack: str
) -> deploy.Applier:
    """An applier that knows the names `as_stack` declares: enough to remove its objects."""
    return deploy.Applier(client, render.evaluate(stack, project, as_stack=as_stack), project)


def platform_applier(
    client: docker.DockerClient,
    project: Path,
    stack: str,
    as_stack: str,
    ports: dict[str, int | None] | None,
    secret_seed: bytes | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[deploy.Applier, dict[str, Any]]:
    """The applier for the stack file `stack` of `project` under the name `as_stack`, on the
    base-image stand-ins, with real generated secrets (which it redacts from logs), the
    same for every call with the same `secret_seed`; `settings` overrides the stack file's."""
    started = time.monotonic()
    stand_ins = base_images.ensure(client)
    log.info("base images ready (%.0fs)", time.monotonic() - started)
    overrides = _merge(stack_overrides(project, stack, client, stand_ins, ports), settings or {})
    evaluation = render.evaluate(
        stack,
        project,
        overrides=overrides,
        real_secrets=True,
        as_stack=as_stack,
        secret_seed=secret_seed,
        offline=False,
    )
    return deploy.Applier(client, evaluation, project), overrides


def start_platform(
    client: docker.DockerClient, applier: deploy.Applier, overrides: dict[str, Any]
) -> Platform:
    """Create what the applier's stack declares; return the platform once healthy."""
    started = time.monotonic()
    deployment = applier.apply()
    outputs = deployment.outputs
    airflow = AirflowAPI(
        str(outputs["airflowUrl"]), str(outputs["adminUsername"]), str(outputs["adminPassword"])
    )
    platform = Platform(client, applier.evaluation, applier, deployment, overrides, airflow)
    platform.wait_all_healthy()
    log.info("platform deployed (%.0fs)", time.monotonic() - started)
    return platform


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
