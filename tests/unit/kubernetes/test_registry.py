"""The registry on Kubernetes (registry.py): deployed in the cluster, a team's own, or another stack's."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import pulumi
import pytest

from etlstack import render
from tests.support.stacks import stack_file_with
from tests.unit.kubernetes.stack import (
    DIGEST,
    Stack,
    container_env,
    evaluate_stack,
    main_container,
)
from tests.unit.kubernetes_helpers import (
    named,
    of_kind,
)


def test_registry_in_the_cluster() -> None:
    stack = evaluate_stack("dev")
    host = stack.evaluation.config.settings.registry.host
    deployment = named(stack.objects, "Deployment", "registry")
    env = container_env(main_container(deployment))
    assert env["REGISTRY_AUTH"]["value"] == "htpasswd"
    auth = stack.resource("Secret", "registry-auth")
    assert render.is_secret(auth.inputs["stringData"])
    htpasswd = render.reveal(auth.inputs["stringData"])["htpasswd"]
    assert re.fullmatch(r"etlstack:\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n", htpasswd)
    claim = stack.resource("PersistentVolumeClaim", "registry-data")
    assert claim.retain_on_delete
    (ingress,) = [
        i for i in of_kind(stack.objects, "Ingress") if i["metadata"]["name"] == "registry"
    ]
    assert ingress["spec"]["rules"][0]["host"] == host
    assert stack.evaluation.outputs["registry"] == host


def test_pull_secrets_in_both_namespaces_for_the_registry(stack: Stack) -> None:
    host = stack.evaluation.outputs["registry"]
    pulls = [
        s for s in of_kind(stack.objects, "Secret") if s["metadata"]["name"] == "registry-pull"
    ]
    assert {s["metadata"]["namespace"] for s in pulls} == {stack.platform, stack.pipelines}
    for secret in pulls:
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        config = json.loads(secret["stringData"][".dockerconfigjson"])
        assert set(config["auths"]) == {host}


def test_images_are_pushed_to_the_registry_once_it_serves() -> None:
    stack = evaluate_stack("dev")
    registry = stack.resource("Deployment", "registry")
    for image in stack.evaluation.by_type("docker:index/image:Image"):
        assert (
            render.reveal(image.inputs["registry"])["server"]
            == stack.evaluation.config.settings.registry.host
        )
        assert registry.urn in image.dependencies


def test_an_external_registry_replaces_the_deployed_one() -> None:
    with stack_file_with(
        "dev",
        {"registry": {"host": "registry.corp.example", "external": True, "username": "ci"}},
        {"registryPassword": "reg1stry-pw"},
    ):
        stack = evaluate_stack("dev")
    assert not [
        d for d in of_kind(stack.objects, "Deployment") if d["metadata"]["name"] == "registry"
    ]
    assert not of_kind(stack.objects, "PersistentVolumeClaim") or all(
        c["metadata"]["name"] != "registry-data"
        for c in of_kind(stack.objects, "PersistentVolumeClaim")
    )
    for secret in of_kind(stack.objects, "Secret"):
        if secret["metadata"]["name"] == "registry-pull":
            auth = json.loads(secret["stringData"][".dockerconfigjson"])["auths"][
                "registry.corp.example"
            ]
            assert (auth["username"], auth["password"]) == ("ci", "reg1stry-pw")
    assert "reg1stry-pw" in stack.secret_values()


@dataclass
class References:
    """What prod's evaluation asked of other stacks, and what the mock runtime answered."""

    # Stack name -> the outputs and secret output names the mock answered for it.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_names: dict[str, set[str]] = field(default_factory=dict)
    # The output names the program read through a StackReference.
    read: list[str] = field(default_factory=list)


def _record_references(monkeypatch: pytest.MonkeyPatch) -> References:
    """Record every stack reference of the next evaluation: what it reads, what it gets."""
    seen = References()
    new_resource = render.PlatformMocks.new_resource

    def answering(
        mocks: render.PlatformMocks, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str, dict[str, Any]]:
        resource_id, state = new_resource(mocks, args)
        if args.typ == "pulumi:pulumi:StackReference":
            referenced = str(state["name"]).rsplit("/", 1)[-1]
            seen.answers[referenced] = dict(state["outputs"])
            seen.secret_names[referenced] = set(state.get("secretOutputNames") or [])
        return resource_id, state

    monkeypatch.setattr(render.PlatformMocks, "new_resource", answering)
    for method in ("get_output", "require_output"):
        original = getattr(pulumi.StackReference, method)

        def reading(reference: Any, name: Any, _original: Any = original) -> Any:
            seen.read.append(name)
            return _original(reference, name)

        monkeypatch.setattr(pulumi.StackReference, method, reading)
    return seen


def test_prod_pulls_from_the_registry_dev_deploys(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(
        pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message)
    )
    dev_host = evaluate_stack("dev").evaluation.config.settings.registry.host
    references = _record_references(monkeypatch)

    prod = evaluate_stack("prod", real_secrets=True, fresh=True)

    assert prod.evaluation.config.settings.registry.from_stack == "dev"
    assert not [
        d for d in of_kind(prod.objects, "Deployment") if d["metadata"]["name"] == "registry"
    ]
    assert prod.evaluation.outputs["registry"] == dev_host
    pulls = [s for s in prod.evaluation.resources if s.name.endswith("registry-pull")]
    assert pulls
    answer = references.answers["dev"]
    # The secrets prod read from dev's outputs (real random values: any password prod
    # generated itself would differ from them).
    read_secrets = [
        answer[name] for name in references.read if name in references.secret_names["dev"]
    ]
    for pull in pulls:
        assert render.is_secret(pull.inputs["stringData"])
        auths = json.loads(render.reveal(pull.inputs["stringData"])[".dockerconfigjson"])["auths"]
        assert set(auths) == {dev_host}
        assert auths[dev_host]["password"] in prod.evaluation.generated_secrets
        assert auths[dev_host]["password"] in read_secrets
    # Every promoted artifact is pullable with these credentials: nothing to warn about.
    assert warnings == []


def test_every_output_prod_reads_from_dev_is_one_dev_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What prod reads through its reference, and what the mock runtime answered it, held
    against dev's own evaluated outputs: each name exported, each secret the answer marks
    exported as a secret, each plain value equal. (The mock does not evaluate dev to
    answer; this test is what ties its answer to dev's program.)"""
    references = _record_references(monkeypatch)

    evaluate_stack("prod", fresh=True)
    dev = evaluate_stack("dev").evaluation

    assert set(references.answers) == {"dev"}, "prod references dev's stack only"
    assert references.read, "prod reads outputs through its stack reference"
    exported = set(dev.outputs)
    assert set(references.read) <= exported, "prod reads an output dev does not export"
    answer = references.answers["dev"]
    assert set(answer) <= exported, "the mock answers with an output dev does not export"
    for name, value in answer.items():
        if name in references.secret_names["dev"]:
            assert render.is_secret(dev.outputs[name]), f"dev exports {name} in plain text"
        else:
            assert value == dev.outputs[name], name


def test_the_secret_prod_reads_from_dev_is_the_password_devs_registry_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each secret output prod reads through its reference is, in dev's own evaluation,
    the password that matches dev's htpasswd entry."""
    references = _record_references(monkeypatch)
    evaluate_stack("prod", fresh=True)
    dev = evaluate_stack("dev", real_secrets=True)

    read_secrets = [n for n in references.read if n in references.secret_names["dev"]]
    assert read_secrets, "prod reads the registry's password from dev as a secret"
    htpasswd = render.reveal(dev.resource("Secret", "registry-auth").inputs["stringData"])
    user, digest = htpasswd["htpasswd"].strip().split(":", 1)
    assert user == dev.evaluation.config.settings.registry.username
    for name in read_secrets:
        exported = dev.evaluation.outputs[name]
        assert render.is_secret(exported), name
        assert bcrypt.checkpw(render.reveal(exported).encode(), digest.encode()), name


def test_images_from_a_registry_without_credentials_are_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(
        pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message)
    )

    def pinned(host: str) -> dict[str, str]:
        return {"airflow": f"{host}/etlstack/airflow{DIGEST}", "dags": "dags-" + "0" * 12}

    evaluate_stack("dev", fresh=True, artifacts=pinned("registry.dev.example.org"))
    assert warnings == []
    evaluate_stack("dev", fresh=True, artifacts=pinned("registry.elsewhere.example"))
    (warning,) = warnings
    assert "registry.elsewhere.example" in warning and "registry-pull" in warning
