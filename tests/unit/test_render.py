"""`etlstack render`: what `pulumi up` would create, written for review, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from etlstack import render
from etlstack.catalog import STANDARD_IMAGE, discover
from etlstack.cli import main
from tests.support.stacks import PROJECT_ROOT, STACKS, evaluate

STANDARD_DOCKERFILE = PROJECT_ROOT / STANDARD_IMAGE / "Dockerfile"


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_reaches_a_rendered_file(stack: str, tmp_path: Path) -> None:
    evaluation = evaluate(stack, real_secrets=True)
    # Every generated password and key; connection strings and htpasswd entries are
    # built from them, so none of these may appear in a file.
    secrets = {s for s in evaluation.generated_secrets if len(s) >= 12}
    assert secrets, "the stack declares generated secrets"

    written = render.write(evaluation, tmp_path / "out")

    for path in written:
        text = path.read_text()
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{path.name} holds a secret in plain text"
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    assert outputs["adminPassword"] == render.SECRET_PLACEHOLDER


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_the_cli_writes_kubernetes_objects_and_outputs(
    stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    out = tmp_path / stack

    assert main(["render", stack, "--out", str(out)]) == 0

    manifests = [yaml.safe_load(p.read_text()) for p in (out / "kubernetes").glob("*.yaml")]
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "Deployment", "Role", "RoleBinding", "Secret", "ConfigMap"} <= kinds
    assert all(m["metadata"].get("name") for m in manifests)
    outputs = json.loads((out / "outputs.json").read_text())
    assert set(outputs) >= {"airflowUrl", "adminPassword", "artifacts", "registry"}


def test_local_renders_docker_resources_as_type_name_inputs(tmp_path: Path) -> None:
    evaluation = evaluate("local")

    render.write(evaluation, tmp_path / "local")

    files = sorted((tmp_path / "local" / "docker").glob("*.json"))
    documents = [json.loads(p.read_text()) for p in files]
    assert documents and all(set(d) == {"type", "name", "inputs"} for d in documents)
    types = {d["type"] for d in documents}
    assert {
        "docker:index/container:Container",
        "docker:index/network:Network",
        "docker:index/volume:Volume",
        "docker:index/image:Image",
    } <= types
    assert not (tmp_path / "local" / "kubernetes").exists()


def test_bad_configuration_exits_non_zero_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("Pulumi.yaml", "airflow_image", "dags", "pipelines"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    (tmp_path / "Pulumi.broken.yaml").write_text(
        "config:\n  etlstack:target: kubernetes\n  etlstack:kubernetes:\n    context: c\n"
    )
    monkeypatch.chdir(tmp_path)

    assert main(["render", "broken", "--out", str(tmp_path / "out")]) == 2

    assert not (tmp_path / "out").exists()
    error = capsys.readouterr().err
    assert "etlstack:kubernetes.version: required but not set" in error
    assert "Traceback" not in error


def test_an_unknown_stack_lists_the_known_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)

    assert main(["render", "staging", "--out", str(tmp_path / "out")]) == 2
    assert "no stack file Pulumi.staging.yaml; the stacks here are ['dev', 'local', 'prod']" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("stack", STACKS)
def test_no_resource_is_declared_twice(stack: str) -> None:
    # evaluate() itself raises on a (type, name, parent) declared twice; this checks
    # the names users see are unique too, since the engine keys state by them.
    evaluation = evaluate(stack)
    names = [(r.type, r.name) for r in evaluation.resources]
    assert len(names) == len(set(names))


def test_image_builds_resolve_from_the_programs_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `main: infra/` runs the program (and the providers) in infra/; paths stay
    # relative, so state does not change with the folder a checkout lives in.
    program_directory = PROJECT_ROOT / "infra"
    monkeypatch.chdir(program_directory)

    evaluation = evaluate("local", fresh=True)

    images = evaluation.by_type("docker:index/image:Image")
    assert len(images) == 1 + len(discover(PROJECT_ROOT).pipelines)
    for image in images:
        build = image.inputs["build"]
        assert not Path(build["context"]).is_absolute()
        assert not Path(build["dockerfile"]).is_absolute()
        context = (program_directory / build["context"]).resolve()
        dockerfile = (program_directory / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), image.name
        # A Dockerfile outside the context (the standard pipeline one) is sent with it.
        assert dockerfile.is_relative_to(context) or dockerfile == STANDARD_DOCKERFILE
        assert context.is_relative_to(PROJECT_ROOT)


def test_real_secrets_are_random_unless_seeded_and_then_the_same_for_the_same_seed() -> None:
    def secrets(seed: bytes | None) -> set[str]:
        evaluation = evaluate("local", real_secrets=True, secret_seed=seed, fresh=True)
        return evaluation.generated_secrets - {
            s for s in evaluation.generated_secrets if s.startswith("$2")
        }  # bcrypt hashes are salted afresh; the passwords they hash are what is compared

    first, second = secrets(b"seed-one"), secrets(b"seed-one")
    assert first and first == second
    assert not first & secrets(b"seed-two")
    assert not secrets(None) & secrets(None)
