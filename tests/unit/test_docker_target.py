"""The docker target, as the `local` stack declares it (Pulumi.local.yaml, mock runtime)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from etlstack import render
from etlstack.docker.docker_api_proxy import render_config
from tests.conftest import PROJECT_ROOT, TEST_SOCKET_GID, Evaluate, stack_overrides

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
PREFIX = "etlstack-local"
AIRFLOW_COMPONENTS = {
    "api-server": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
}
SHARED_SECRETS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
)


@pytest.fixture(scope="module")
def local() -> render.Evaluation:
    return render.evaluate("local", PROJECT_ROOT, overrides=stack_overrides("local"))


@pytest.fixture(scope="module")
def revealed() -> render.Evaluation:
    """The local stack with real random secrets, to compare values across containers."""
    return render.evaluate(
        "local", PROJECT_ROOT, overrides=stack_overrides("local"), real_secrets=True
    )


def containers(evaluation: render.Evaluation) -> dict[str, render.Resource]:
    return {r.inputs["name"]: r for r in evaluation.by_type(CONTAINER)}


def container(evaluation: render.Evaluation, suffix: str) -> render.Resource:
    return containers(evaluation)[f"{PREFIX}-{suffix}"]


def env(resource: render.Resource) -> dict[str, str]:
    pairs = render.reveal(resource.inputs.get("envs") or [])
    return dict(pair.split("=", 1) for pair in pairs)


def networks_of(resource: render.Resource) -> dict[str, list[str]]:
    return {
        n["name"]: list(n.get("aliases") or []) for n in resource.inputs.get("networksAdvanced", [])
    }


def published(resource: render.Resource) -> list[tuple[str, int, int]]:
    return [
        (p["ip"], int(p["internal"]), int(p["external"])) for p in resource.inputs.get("ports", [])
    ]


# ---- Provider and networks --------------------------------------------------------


def test_every_docker_resource_goes_through_the_explicit_provider(
    local: render.Evaluation,
) -> None:
    providers = local.by_type("pulumi:providers:docker")
    assert len(providers) == 1
    assert providers[0].inputs["host"] == f"unix://{local.config.docker.socket_path}"
    docker_resources = [r for r in local.resources if r.type.startswith("docker:index/")]
    assert docker_resources
    for resource in docker_resources:
        assert resource.provider.rsplit("::", 1)[0] == providers[0].urn, resource.name


def test_the_networks_are_private_and_named_after_the_stack(local: render.Evaluation) -> None:
    networks = {r.inputs["name"]: r.inputs for r in local.by_type(NETWORK)}
    assert set(networks) == {f"{PREFIX}-platform", f"{PREFIX}-docker-api", f"{PREFIX}-pipelines"}
    assert networks[f"{PREFIX}-docker-api"].get("internal") is True


def test_only_the_proxy_and_the_scheduler_are_on_the_docker_api_network(
    local: render.Evaluation,
) -> None:
    on_docker_api = {
        name for name, r in containers(local).items() if f"{PREFIX}-docker-api" in networks_of(r)
    }
    assert on_docker_api == {f"{PREFIX}-docker-api-proxy", f"{PREFIX}-airflow-scheduler"}
    proxy = container(local, "docker-api-proxy")
    assert networks_of(proxy) == {f"{PREFIX}-docker-api": ["docker-api-proxy"]}


def test_only_the_warehouse_shares_the_pipelines_network(local: render.Evaluation) -> None:
    on_pipelines = {
        name: networks_of(r)[f"{PREFIX}-pipelines"]
        for name, r in containers(local).items()
        if f"{PREFIX}-pipelines" in networks_of(r)
    }
    assert on_pipelines == {f"{PREFIX}-postgres": ["postgres"]}


def test_platform_network_aliases(local: render.Evaluation) -> None:
    platform = f"{PREFIX}-platform"
    assert networks_of(container(local, "postgres"))[platform] == ["postgres"]
    assert networks_of(container(local, "registry"))[platform] == ["registry"]
    for suffix, alias in AIRFLOW_COMPONENTS.items():
        component = container(local, f"airflow-{suffix}")
        assert networks_of(component)[platform] == [alias]
        assert component.inputs["hostname"] == alias


# ---- Docker socket and proxy ------------------------------------------------------


def test_only_the_proxy_mounts_the_docker_socket(local: render.Evaluation) -> None:
    socket_path = local.config.docker.socket_path
    mounting = {
        name
        for name, r in containers(local).items()
        if socket_path in json.dumps(render.mask(r.inputs.get("mounts", [])))
        or socket_path in json.dumps(render.mask(r.inputs.get("volumes", [])))
        or "docker.sock" in json.dumps(render.mask(r.inputs.get("mounts", [])))
    }
    assert mounting == {f"{PREFIX}-docker-api-proxy"}


def test_the_proxy_reaches_the_socket_through_its_group_not_as_root(
    local: render.Evaluation,
) -> None:
    proxy = container(local, "docker-api-proxy").inputs
    assert proxy["mounts"] == [
        {
            "type": "bind",
            "source": local.config.docker.socket_path,
            "target": "/var/run/docker.sock",
            "readOnly": True,
        }
    ]
    assert proxy["groupAdds"] == [str(TEST_SOCKET_GID)]
    assert proxy["user"] == "haproxy"
    assert proxy.get("privileged") in (None, False)
    assert proxy["capabilities"] == {"drops": ["ALL"]}
    assert not proxy.get("ports")


def test_the_socket_group_comes_from_configuration(evaluate: Evaluate) -> None:
    evaluation = evaluate("local", docker={"socketGid": 4242})
    assert container(evaluation, "docker-api-proxy").inputs["groupAdds"] == ["4242"]


def test_the_proxy_runs_the_allowlist_for_this_stacks_pipelines_network(
    local: render.Evaluation,
) -> None:
    proxy = container(local, "docker-api-proxy").inputs
    (upload,) = proxy["uploads"]
    assert upload["file"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert upload["content"] == render_config(f"{PREFIX}-pipelines")
    assert proxy["command"][-2:] == ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]


# ---- Images and ports -------------------------------------------------------------


def test_every_image_comes_from_configuration(evaluate: Evaluate) -> None:
    mirror = {
        "postgres": "mirror.example:5000/library/postgres:16.9",
        "registry": "mirror.example:5000/library/registry:2.8.9",
        "dockerProxy": "mirror.example:5000/library/haproxy:3.0.9",
        "pythonBase": "mirror.example:5000/library/python:3.11.99",
    }
    evaluation = evaluate("local", images=mirror)
    assert container(evaluation, "postgres").inputs["image"] == mirror["postgres"]
    assert container(evaluation, "registry").inputs["image"] == mirror["registry"]
    assert container(evaluation, "docker-api-proxy").inputs["image"] == mirror["dockerProxy"]
    pulled = {r.inputs["name"]: r.inputs for r in evaluation.by_type(REMOTE_IMAGE)}
    assert set(pulled) == {mirror["postgres"], mirror["registry"], mirror["dockerProxy"]}
    assert all(image["keepLocally"] is True for image in pulled.values())
    for build in evaluation.by_type(IMAGE):
        assert build.inputs["build"]["args"]["BASE_IMAGE"] == mirror["pythonBase"]


def test_airflow_runs_the_image_the_stack_deploys(local: render.Evaluation) -> None:
    deployed = local.outputs["artifacts"]["airflow"]
    for suffix in ["init", *AIRFLOW_COMPONENTS]:
        assert container(local, f"airflow-{suffix}").inputs["image"] == deployed


def test_published_ports_bind_to_loopback_by_default(local: render.Evaluation) -> None:
    assert published(container(local, "airflow-api-server")) == [("127.0.0.1", 8080, 8080)]
    assert published(container(local, "registry")) == [("127.0.0.1", 5000, 5000)]
    everything = [port for r in containers(local).values() for port in published(r)]
    assert len(everything) == 2, "only the api-server and the registry are published"
    assert local.outputs["airflowUrl"] == "http://127.0.0.1:8080"
    assert local.outputs["registry"] == "127.0.0.1:5000"


def test_ports_and_bind_address_follow_configuration(evaluate: Evaluate) -> None:
    evaluation = evaluate(
        "local",
        docker={
            "socketGid": TEST_SOCKET_GID,
            "bindAddress": "10.1.2.3",
            "ports": {"airflow": 18080, "registry": 15000, "postgres": 15432},
        },
    )
    assert published(container(evaluation, "airflow-api-server")) == [("10.1.2.3", 8080, 18080)]
    assert published(container(evaluation, "registry")) == [("10.1.2.3", 5000, 15000)]
    assert published(container(evaluation, "postgres")) == [("10.1.2.3", 5432, 15432)]
    assert evaluation.outputs["airflowUrl"] == "http://10.1.2.3:18080"
    assert evaluation.outputs["registry"] == "10.1.2.3:15000"


# ---- PostgreSQL -------------------------------------------------------------------


def test_postgres_keeps_its_data_on_a_named_volume(local: render.Evaluation) -> None:
    (volume,) = [v for v in local.by_type(VOLUME) if "postgres" in v.inputs["name"]]
    assert volume.inputs["name"] == f"{PREFIX}-postgres-data"
    postgres = container(local, "postgres")
    assert postgres.inputs["volumes"] == [
        {"volumeName": f"{PREFIX}-postgres-data", "containerPath": "/var/lib/postgresql/data"}
    ]
    assert volume.urn in postgres.dependencies


def test_the_database_volume_survives_destroy_unless_the_stack_opts_out() -> None:
    def volume(**overrides: Any) -> render.Resource:
        evaluation = render.evaluate(
            "local", PROJECT_ROOT, overrides={**stack_overrides("local"), **overrides}
        )
        return evaluation.one(VOLUME, "etlstack-postgres-data")

    assert volume().retain_on_delete is True
    assert volume(postgres={"retainOnDestroy": False}).retain_on_delete is False


def test_fixed_names_are_deleted_before_they_are_replaced(local: render.Evaluation) -> None:
    fixed = [r for r in local.resources if r.type in (CONTAINER, NETWORK)]
    assert len(fixed) == 11
    for resource in fixed:
        assert resource.delete_before_replace is True, resource.name


def test_postgres_health_and_restart(local: render.Evaluation) -> None:
    postgres = container(local, "postgres").inputs
    assert postgres["healthcheck"]["tests"][:4] == ["CMD", "pg_isready", "-U", "postgres"]
    assert postgres["restart"] == "unless-stopped"
    assert postgres["wait"] is True


def test_the_init_script_creates_both_databases_and_holds_no_password(
    revealed: render.Evaluation,
) -> None:
    postgres = container(revealed, "postgres")
    (upload,) = postgres.inputs["uploads"]
    assert upload["file"].startswith("/docker-entrypoint-initdb.d/")
    script = render.reveal(upload["content"])
    for statement in [
        "CREATE ROLE airflow LOGIN",
        "CREATE DATABASE airflow OWNER airflow",
        "CREATE ROLE warehouse LOGIN",
        "CREATE DATABASE warehouse OWNER warehouse",
        "REVOKE CONNECT, TEMPORARY ON DATABASE airflow FROM PUBLIC",
    ]:
        assert statement in script
    variables = env(postgres)
    for name in ("AIRFLOW_DB_PASSWORD", "WAREHOUSE_DB_PASSWORD"):
        assert name in script
        assert variables[name] not in script
    assert not any(s in script for s in revealed.generated_secrets if len(s) >= 12)


def test_the_database_passwords_are_the_ones_airflow_and_the_warehouse_use(
    revealed: render.Evaluation,
) -> None:
    database = env(container(revealed, "postgres"))
    scheduler = env(container(revealed, "airflow-scheduler"))
    assert len({database[k] for k in database if k.endswith("PASSWORD")}) == 3
    assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:{database['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow"
    )
    assert scheduler["AIRFLOW_CONN_WAREHOUSE"] == (
        f"postgresql://warehouse:{database['WAREHOUSE_DB_PASSWORD']}@postgres:5432/warehouse"
    )


# ---- Registry ---------------------------------------------------------------------


def test_the_registry_authenticates_with_htpasswd(revealed: render.Evaluation) -> None:
    registry = container(revealed, "registry").inputs
    variables = env(container(revealed, "registry"))
    assert variables["REGISTRY_AUTH"] == "htpasswd"
    # A secret anywhere in a property makes the whole property secret.
    assert render.is_secret(registry["uploads"])
    (upload,) = render.reveal(registry["uploads"])
    assert upload["file"] == variables["REGISTRY_AUTH_HTPASSWD_PATH"]
    user, digest = upload["content"].strip().split(":", 1)
    assert user == revealed.config.settings.registry.username
    assert digest.startswith("$2")
    assert registry["volumes"] == [
        {"volumeName": f"{PREFIX}-registry-data", "containerPath": "/var/lib/registry"}
    ]


def test_images_are_pushed_only_once_the_registry_runs(local: render.Evaluation) -> None:
    registry = container(local, "registry")
    builds = local.by_type(IMAGE)
    assert builds
    for build in builds:
        assert registry.urn in build.dependencies, build.name
        assert render.is_secret(build.inputs["registry"])
        assert render.mask(build.inputs["imageName"]).startswith("127.0.0.1:5000/etlstack/")


# ---- Airflow ----------------------------------------------------------------------


def test_the_migration_runs_once_and_first(local: render.Evaluation) -> None:
    migration = container(local, "airflow-init")
    assert migration.inputs["command"] == ["etlstack-init"]
    assert migration.inputs["mustRun"] is False
    assert migration.inputs["attach"] is True
    assert container(local, "postgres").urn in migration.dependencies
    for suffix in AIRFLOW_COMPONENTS:
        assert migration.urn in container(local, f"airflow-{suffix}").dependencies


def test_the_migration_creates_the_admin_with_the_exported_password(
    revealed: render.Evaluation,
) -> None:
    variables = env(container(revealed, "airflow-init"))
    settings = revealed.config.settings.airflow
    assert variables["ETLSTACK_ADMIN_USERNAME"] == settings.admin_username
    assert variables["ETLSTACK_ADMIN_PASSWORD"] == render.reveal(revealed.outputs["adminPassword"])
    assert variables["ETLSTACK_PIPELINE_SLOTS"] == str(settings.pipeline_task_slots)
    assert render.is_secret(revealed.outputs["adminPassword"])


@pytest.mark.parametrize("suffix", AIRFLOW_COMPONENTS)
def test_each_airflow_component_runs_with_a_restart_policy_and_a_healthcheck(
    local: render.Evaluation, suffix: str
) -> None:
    component = container(local, f"airflow-{suffix}").inputs
    assert component["command"] == ["airflow", suffix]
    assert component["restart"] == "unless-stopped"
    assert component["healthcheck"]["tests"] == ["CMD", "airflow-healthcheck", suffix]


@pytest.mark.parametrize("suffix", ["init", *AIRFLOW_COMPONENTS])
def test_airflow_containers_keep_no_privileges(local: render.Evaluation, suffix: str) -> None:
    component = container(local, f"airflow-{suffix}").inputs
    assert component["capabilities"] == {"drops": ["ALL"]}
    assert component["securityOpts"] == ["no-new-privileges:true"]
    assert not component.get("mounts") and not component.get("volumes")
    assert not component.get("privileged")


def test_the_scheduler_waits_for_the_proxy(local: render.Evaluation) -> None:
    proxy = container(local, "docker-api-proxy")
    assert proxy.urn in container(local, "airflow-scheduler").dependencies


def test_the_generated_keys_are_identical_in_every_component(revealed: render.Evaluation) -> None:
    environments = [env(container(revealed, f"airflow-{s}")) for s in ["init", *AIRFLOW_COMPONENTS]]
    for key in SHARED_SECRETS:
        values = {variables[key] for variables in environments}
        assert len(values) == 1, key
        assert len(values.pop()) >= 32, key


def test_tasks_reach_the_execution_api_at_the_api_server(revealed: render.Evaluation) -> None:
    for suffix in AIRFLOW_COMPONENTS:
        variables = env(container(revealed, f"airflow-{suffix}"))
        assert variables["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-api-server:8080/execution/"
        )
        assert variables["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_only_the_scheduler_holds_the_warehouse_connection(revealed: render.Evaluation) -> None:
    holders = {
        name for name, r in containers(revealed).items() if "AIRFLOW_CONN_WAREHOUSE" in env(r)
    }
    assert holders == {f"{PREFIX}-airflow-scheduler"}


def test_the_runtime_contract_names_the_proxy_and_the_pipelines_network(
    revealed: render.Evaluation,
) -> None:
    artifacts = revealed.outputs["artifacts"]
    for suffix in AIRFLOW_COMPONENTS:
        variables = env(container(revealed, f"airflow-{suffix}"))
        runtime = json.loads(variables["ETLSTACK_RUNTIME"])
        assert runtime["target"] == "docker"
        assert runtime["docker"] == {
            "url": "tcp://docker-api-proxy:2375",
            "network": f"{PREFIX}-pipelines",
            "warehouseConnId": "warehouse",
        }
        assert runtime["pipelineImages"] == {
            name: ref for name, ref in artifacts.items() if name not in ("airflow", "dags")
        }
        assert not any(s in variables["ETLSTACK_RUNTIME"] for s in revealed.generated_secrets)


def test_every_password_derived_input_is_a_secret(local: render.Evaluation) -> None:
    with_passwords = ["postgres", "airflow-init", *(f"airflow-{s}" for s in AIRFLOW_COMPONENTS)]
    for suffix in with_passwords:
        assert render.is_secret(container(local, suffix).inputs["envs"]), suffix
    assert render.is_secret(container(local, "registry").inputs["uploads"])
    assert render.is_secret(local.outputs["adminPassword"])


def test_no_generated_secret_appears_outside_a_secret(revealed: render.Evaluation) -> None:
    secrets = [s for s in revealed.generated_secrets if len(s) >= 12]
    assert secrets
    for resource in revealed.resources:
        if not resource.type.startswith("docker:"):
            continue
        masked = json.dumps(render.mask(resource.inputs))
        assert not any(s in masked for s in secrets), resource.name


# ---- The init script, run against a real server ----------------------------------


def _server_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if not found:
        pytest.fail(
            f"PostgreSQL binary {name!r} not found: this test runs the init script against a "
            "throwaway server; install it with `apt-get install -y postgresql`",
            pytrace=False,
        )
    return str(found)


def test_the_init_script_gives_each_role_its_own_database_only(
    revealed: render.Evaluation,
) -> None:
    postgres = container(revealed, "postgres")
    (upload,) = render.reveal(postgres.inputs["uploads"])
    variables = env(postgres)
    bin_dir = Path(_server_binary("initdb")).parent
    # PostgreSQL refuses to run as root; as root, run it as the postgres user, in a
    # directory it can reach (pytest's own temporary directories are root's only).
    run_as = "postgres" if os.geteuid() == 0 else None
    tmp_path = Path(tempfile.mkdtemp(prefix="etlstack-init-script-"))
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(tmp_path, account.pw_uid, account.pw_gid)
    script = tmp_path / "init.sh"
    script.write_text(upload["content"])
    script.chmod(0o755)
    data, port = tmp_path / "data", _free_port()

    def run(*command: str, extra_env: dict[str, str] | None = None) -> None:
        result = subprocess.run(
            command,
            user=run_as,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **(extra_env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
        "--auth-local=trust", "--auth-host=scram-sha-256",
    )  # fmt: skip
    options = f"-k {tmp_path} -p {port} -c listen_addresses=127.0.0.1"
    server_log = tmp_path / "server.log"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(server_log),
        "-w",
        "start",
    )
    try:
        run(
            str(script),
            extra_env={
                "PGHOST": str(tmp_path),
                "PGPORT": str(port),
                "POSTGRES_USER": variables["POSTGRES_USER"],
                "AIRFLOW_DB_PASSWORD": variables["AIRFLOW_DB_PASSWORD"],
                "WAREHOUSE_DB_PASSWORD": variables["WAREHOUSE_DB_PASSWORD"],
            },
        )

        def connect(role: str, database: str) -> None:
            password = variables[f"{role.upper()}_DB_PASSWORD"]
            psycopg2.connect(
                host="127.0.0.1", port=port, user=role, password=password, dbname=database
            ).close()

        connect("airflow", "airflow")
        connect("warehouse", "warehouse")
        for role, database in [("warehouse", "airflow"), ("airflow", "warehouse")]:
            with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
                connect(role, database)
        assert variables["AIRFLOW_DB_PASSWORD"] not in server_log.read_text()
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(tmp_path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_registry_the_team_already_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    stack_file = render.stack_file_config

    def with_registry_password(root: Path, stack: str) -> tuple[dict[str, str], list[str]]:
        config, secret_keys = stack_file(root, stack)
        # As `pulumi config set --secret etlstack:registryPassword` would store it.
        config["etlstack:registryPassword"] = "team-registry-password"
        return config, [*secret_keys, "etlstack:registryPassword"]

    monkeypatch.setattr(render, "stack_file_config", with_registry_password)
    evaluation = render.evaluate(
        "local",
        PROJECT_ROOT,
        overrides={
            **stack_overrides("local"),
            "registry": {"external": True, "host": "registry.example.org", "username": "ci"},
        },
    )
    assert f"{PREFIX}-registry" not in containers(evaluation)
    assert evaluation.outputs["registry"] == "registry.example.org"
    (provider,) = evaluation.by_type("pulumi:providers:docker")
    assert render.is_secret(provider.inputs["registryAuth"])
    assert "team-registry-password" in json.dumps(render.reveal(provider.inputs["registryAuth"]))
    for build in evaluation.by_type(IMAGE):
        assert render.mask(build.inputs["imageName"]).startswith("registry.example.org/etlstack/")
        assert render.reveal(build.inputs["registry"])["password"] == "team-registry-password"
