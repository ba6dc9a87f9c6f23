"""Stack configuration: every stack file validates, and bad settings fail before any resource."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from etlstack.config import ConfigError, Target, load_config, parse_settings
from tests.support.stacks import PROJECT_ROOT, STACKS, evaluate

DIGEST = "sha256:" + "ab" * 32


def load(raw: dict[str, Any], secret_keys: set[str] | None = None) -> Any:
    return load_config("test", raw, secret_keys or set(), PROJECT_ROOT)


def docker_stack(**settings: Any) -> dict[str, Any]:
    return {"target": "docker", "docker": {"socketGid": 999}, **settings}


def kubernetes_stack(**settings: Any) -> dict[str, Any]:
    return {
        "target": "kubernetes",
        "kubernetes": {"context": "c", "version": "1.30"},
        "registry": {"host": "registry.example.org"},
        **settings,
    }


def error_of(raw: dict[str, Any], secret_keys: set[str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(raw, secret_keys)
    return str(caught.value)


def test_the_stacks_are_local_dev_and_prod() -> None:
    assert set(STACKS) >= {"local", "dev", "prod"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_validates(stack: str) -> None:
    config = evaluate(stack).config
    assert config.stack == stack
    assert config.target in (Target.DOCKER, Target.KUBERNETES)


def test_local_defaults_need_no_edits() -> None:
    settings = parse_settings({"target": "docker"})
    assert settings.images.postgres.startswith("postgres:")
    assert settings.airflow.api_server.replicas == 1


def test_socket_gid_auto_is_read_from_the_socket() -> None:
    with tempfile.NamedTemporaryFile() as socket_stand_in:
        os.chown(socket_stand_in.name, -1, 4242)
        config = load({"target": "docker", "docker": {"socketPath": socket_stand_in.name}})
    assert config.docker.socket_gid == 4242


def test_socket_gid_auto_without_a_socket_says_how_to_fix() -> None:
    message = error_of({"target": "docker", "docker": {"socketPath": "/nonexistent/docker.sock"}})
    assert "etlstack:docker.socketGid" in message
    assert "pulumi config set --path 'etlstack:docker.socketGid'" in message


@pytest.mark.parametrize(
    ("raw", "names", "says"),
    [
        (docker_stack(colour="blue"), "etlstack:colour", "unknown setting"),
        (docker_stack(airflow={"apiServr": {}}), "etlstack:airflow.apiServr", "unknown setting"),
        ({"target": "nomad"}, "etlstack:target", "'docker' or 'kubernetes'"),
        ({}, "etlstack:target", "required"),
        (
            docker_stack(airflow={"parallelism": "many"}),
            "etlstack:airflow.parallelism",
            "valid integer",
        ),
        (
            docker_stack(images={"postgres": "postgres"}),
            "etlstack:images.postgres",
            "not a pinned image reference",
        ),
        (
            docker_stack(images={"registry": "Registry:2"}),
            "etlstack:images.registry",
            "not a pinned image reference",
        ),
        (
            docker_stack(docker={"socketGid": 1, "ports": {"airflow": 5000}}),
            "etlstack:docker: ports.registry and ports.airflow are both 5000",
            "own number",
        ),
        (
            docker_stack(docker={"socketGid": 1, "ports": {"airflow": 70000}}),
            "etlstack:docker.ports.airflow",
            "less than or equal to 65535",
        ),
        (
            docker_stack(docker={"socketGid": 1, "bindAddress": "localhost:80"}),
            "etlstack:docker.bindAddress",
            "IP",
        ),
        (
            docker_stack(airflow={"taskResources": {"cpu": "lots", "memory": "1Gi"}}),
            "etlstack:airflow.taskResources.cpu",
            "Kubernetes quantity",
        ),
        (
            docker_stack(airflow={"scheduler": {"replicas": 2}}),
            "scheduler.replicas must be 1",
            "LocalExecutor",
        ),
        (
            docker_stack(housekeeping={"taskLogs": "30 days"}),
            "etlstack:housekeeping.taskLogs",
            "e.g. '30d'",
        ),
        (
            docker_stack(housekeeping={"metadata": "0d"}),
            "etlstack:housekeeping.metadata",
            "not a positive duration",
        ),
        (
            docker_stack(postgres={"backups": {"every": "1w", "keep": "3d"}}),
            "backups.keep (3d) is shorter than backups.every (1w)",
            "at least as long",
        ),
        ({"target": "kubernetes"}, "kubernetes block", "kubernetes.context"),
        (
            kubernetes_stack(kubernetes={"context": "c", "version": "1.19"}),
            "etlstack:kubernetes.version",
            "1.30",
        ),
        (kubernetes_stack(docker={}), "docker block", "remove it"),
        (
            kubernetes_stack(registry={"host": "r.example.org", "fromStack": "dev"}),
            "registry.fromStack takes the registry's address and password from stack 'dev'",
            "remove registry.host",
        ),
        (docker_stack(registry={"fromStack": "dev"}), "registry.fromStack", "kubernetes target"),
        (
            kubernetes_stack(registry={}),
            "registry.host",
            "required on kubernetes",
        ),
        (
            kubernetes_stack(
                artifacts={"airflow": "r/etlstack/airflow:latest", "dags": "dags-0123456789ab"}
            ),
            "artifacts.airflow",
            "not pinned by digest",
        ),
        (
            kubernetes_stack(artifacts={"airflow": f"r/a@{DIGEST}"}),
            "artifacts must pin ['dags']",
            "etlstack promote",
        ),
        (
            docker_stack(build={"caBundleFile": "/nonexistent/ca.pem"}),
            "caBundleFile",
            "PEM file",
        ),
    ],
)
def test_bad_settings_name_the_key_the_problem_and_the_fix(
    raw: dict[str, Any], names: str, says: str
) -> None:
    message = error_of(raw)
    assert names in message
    assert says in message
    assert "Traceback" not in message


def test_a_whole_system_ca_bundle_is_refused_with_the_reason(tmp_path: Path) -> None:
    bundle = tmp_path / "everything.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n" + "A" * 200 * 1024)
    message = error_of(docker_stack(build={"caBundleFile": str(bundle)}))
    assert "etlstack:build: caBundleFile" in message
    assert "only the extra CA certificates" in message


def test_a_credential_in_plain_text_is_refused() -> None:
    raw = kubernetes_stack(
        registry={"host": "r.example.org", "external": True}, registryPassword="hunter2"
    )
    message = error_of(raw)
    assert "etlstack:registryPassword is stored in plain text" in message
    assert "pulumi config set --secret etlstack:registryPassword" in message
    assert "hunter2" not in message


def test_a_required_secret_that_is_missing_is_named() -> None:
    message = error_of(kubernetes_stack(postgres={"external": True}))
    assert "etlstack:externalDatabaseUrl is required because postgres.external is true" in message


def test_secrets_reach_the_program_as_pulumi_secrets() -> None:
    config = load(
        kubernetes_stack(postgres={"external": True}, externalDatabaseUrl="postgresql://u:p@h/db"),
        {"externalDatabaseUrl"},
    )
    assert config.secrets.external_database_url is not None
    assert config.secrets.registry_password is None


def test_a_bad_stack_file_fails_before_any_resource_is_declared(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "airflow_image", "dags", "pipelines"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    (tmp_path / "Pulumi.broken.yaml").write_text(
        "config:\n  etlstack:target: docker\n  etlstack:colour: blue\n"
    )
    declared: list[str] = []

    with pytest.raises(ConfigError, match="etlstack:colour: unknown setting"):
        evaluate(
            "broken", project_root=tmp_path, program=lambda config: declared.append("program ran")
        )
    assert declared == []


@pytest.mark.parametrize("text", ["config:\n  - etlstack:target\n", "just a string\n"])
def test_a_stack_file_that_is_not_a_mapping_is_a_configuration_error(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from etlstack.cli import main

    (tmp_path / "Pulumi.yaml").write_text("name: etlstack\n")
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)

    assert main(["render", "broken", "--out", str(tmp_path / "out")]) == 2

    error = capsys.readouterr().err
    assert "Pulumi.broken.yaml must be a mapping with a `config:` mapping" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_review_needs_no_docker_engine_and_shows_what_pulumi_up_reads() -> None:
    socket = "/nonexistent/docker.sock"
    evaluation = evaluate("local", docker={"socketGid": "auto", "socketPath": socket})

    (proxy,) = [
        r for r in evaluation.by_type("docker:index/container:Container") if "proxy" in r.name
    ]
    assert proxy.inputs["groupAdds"] == [f"<group of {socket}, read at pulumi up>"]


def test_the_target_decides_which_block_a_stack_may_hold() -> None:
    docker = parse_settings({"target": "docker"})
    kubernetes = parse_settings(kubernetes_stack())
    assert not hasattr(docker, "kubernetes")
    assert not hasattr(kubernetes, "docker")
    assert "kubernetes block is only read when target is kubernetes" in error_of(
        docker_stack(kubernetes={"context": "c", "version": "1.30"})
    )
