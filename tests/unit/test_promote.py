"""`etlstack promote`: pin what ran in one stack into another stack's file, or refuse."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from etlstack import render
from etlstack.catalog import discover
from etlstack.cli import main
from tests.support.stacks import PROJECT_ROOT, evaluate


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def outputs_for(release: str) -> dict[str, Any]:
    """Outputs as `pulumi stack output --json -s dev` prints them after a release."""
    artifacts = {
        "airflow": f"registry.dev.example.org/etlstack/airflow@{digest('airflow' + release)}",
        "dags": "dags-" + hashlib.sha256(release.encode()).hexdigest()[:12],
    }
    for pipeline in discover(PROJECT_ROOT).pipelines:
        artifacts[pipeline.name] = (
            f"registry.dev.example.org/etlstack/pipelines/{pipeline.name}@{digest(pipeline.name + release)}"
        )
    return {
        "airflowUrl": "https://airflow.dev.example.org",
        "adminPassword": "[secret]",
        "artifacts": artifacts,
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's stack files beside the real pipelines, DAGs and image."""
    for path in PROJECT_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    for name in ("airflow_image", "dags", "pipelines"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    return tmp_path


def write_outputs(project: Path, outputs: Any, name: str = "dev-outputs.json") -> Path:
    path = project / name
    path.write_text(outputs if isinstance(outputs, str) else json.dumps(outputs))
    return path


def promote(project: Path, outputs_file: Path, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(project)
    return main(["promote", "dev", "prod", "--outputs", str(outputs_file), *extra])


def pinned_artifacts(project: Path) -> dict[str, str]:
    import yaml

    document = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    return dict(document["config"]["etlstack:artifacts"])


def lines_outside_artifacts(text: str) -> list[str]:
    kept, inside = [], False
    for line in text.splitlines():
        if line.startswith("  etlstack:artifacts:"):
            inside = True
            continue
        if inside and line.startswith("    "):
            continue
        inside = False
        kept.append(line)
    return kept


def test_promote_pins_exactly_what_dev_ran_and_keeps_everything_else(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (project / "Pulumi.prod.yaml").read_text()
    release = outputs_for("r1")

    assert promote(project, write_outputs(project, release), monkeypatch=monkeypatch) == 0

    after = (project / "Pulumi.prod.yaml").read_text()
    assert pinned_artifacts(project) == release["artifacts"]
    assert lines_outside_artifacts(after) == lines_outside_artifacts(before)
    assert "# Pinned by `etlstack promote dev prod`" in after
    printed = capsys.readouterr().out
    for name, reference in release["artifacts"].items():
        assert f"{name}: " in printed and f"-> {reference}" in printed


def test_dry_run_prints_the_changes_and_writes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    release = outputs_for("r2")

    assert (
        promote(project, write_outputs(project, release), "--dry-run", monkeypatch=monkeypatch) == 0
    )

    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    printed = capsys.readouterr().out
    assert release["artifacts"]["airflow"] in printed
    assert "nothing written" in printed


def test_rollback_is_promoting_the_earlier_outputs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_outputs(project, outputs_for("r1"), "r1.json")
    promote(project, first, monkeypatch=monkeypatch)
    released_r1 = (project / "Pulumi.prod.yaml").read_text()
    promote(project, write_outputs(project, outputs_for("r2"), "r2.json"), monkeypatch=monkeypatch)
    assert pinned_artifacts(project) == outputs_for("r2")["artifacts"]

    promote(project, first, monkeypatch=monkeypatch)

    assert (project / "Pulumi.prod.yaml").read_text() == released_r1


def with_artifact(name: str, reference: str) -> dict[str, Any]:
    outputs = outputs_for("bad")
    outputs["artifacts"][name] = reference
    return outputs


@pytest.mark.parametrize(
    ("outputs", "says"),
    [
        (
            with_artifact("airflow", "registry.dev.example.org/etlstack/airflow:3.3.2"),
            "artifacts.airflow: 'registry.dev.example.org/etlstack/airflow:3.3.2' is not pinned by digest",
        ),
        (
            with_artifact("Bad Name", f"r.example.org/etlstack/pipelines/x@{digest('x')}"),
            "Bad Name",
        ),
        ({"airflowUrl": "x"}, "have no `artifacts`"),
        ({"artifacts": {}}, "have no `artifacts` (or it is empty)"),
        ('{"artifacts": ', "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ({"artifacts": {"airflow": 1}}, "must map names to strings"),
    ],
)
def test_refusals_name_the_problem_and_change_no_file(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    outputs: Any,
    says: str,
) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()

    assert promote(project, write_outputs(project, outputs), monkeypatch=monkeypatch) == 2

    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert says in capsys.readouterr().err


def next_release_after_r1(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """Prod pinned to release r1 (its output read and dropped); the outputs of r2."""
    promote(project, write_outputs(project, outputs_for("r1"), "r1.json"), monkeypatch=monkeypatch)
    capsys.readouterr()
    return outputs_for("r2")


def test_a_pipeline_new_in_dev_is_promoted_without_touching_prod_by_hand(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    release = next_release_after_r1(project, monkeypatch, capsys)
    added = f"registry.dev.example.org/etlstack/pipelines/sales@{digest('sales')}"
    release["artifacts"]["sales"] = added

    assert promote(project, write_outputs(project, release), monkeypatch=monkeypatch) == 0

    assert pinned_artifacts(project) == release["artifacts"]
    assert f"sales: (new) -> {added}" in capsys.readouterr().out


def test_a_pipeline_dev_no_longer_runs_is_dropped_from_prod(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    release = next_release_after_r1(project, monkeypatch, capsys)
    dropped = next(name for name in release["artifacts"] if name not in ("airflow", "dags"))
    del release["artifacts"][dropped]

    assert promote(project, write_outputs(project, release), monkeypatch=monkeypatch) == 0

    assert pinned_artifacts(project) == release["artifacts"]
    assert f"{dropped}: " in (printed := capsys.readouterr().out)
    assert "(dropped: stack 'dev' no longer runs it)" in printed


def test_a_prod_file_that_does_not_parse_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = "config:\n  etlstack:target: kubernetes\n   bad: [indentation\n"
    (project / "Pulumi.prod.yaml").write_text(broken)

    assert promote(project, write_outputs(project, outputs_for("r1")), monkeypatch=monkeypatch) == 2

    assert (project / "Pulumi.prod.yaml").read_text() == broken
    assert "Pulumi.prod.yaml does not parse as YAML" in capsys.readouterr().err


def test_without_the_pulumi_cli_it_says_to_pass_an_outputs_file(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(project))
    monkeypatch.chdir(project)

    assert main(["promote", "dev", "prod"]) == 2
    assert "pass --outputs FILE" in capsys.readouterr().err


def test_prod_deploys_exactly_the_promoted_references(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = outputs_for("r7")
    promote(project, write_outputs(project, release), monkeypatch=monkeypatch)

    evaluation = evaluate("prod", project_root=project)

    promoted = release["artifacts"]
    # Nothing is built: prod runs what dev ran.
    assert evaluation.by_type("docker:index/image:Image") == []
    assert evaluation.outputs["artifacts"] == promoted
    third_party = {evaluation.config.settings.images.postgres}
    images, runtimes = set(), []
    for resource in evaluation.resources:
        if not resource.type.startswith("kubernetes:") or "spec" not in resource.inputs:
            continue
        manifest = render.kubernetes_manifest(resource, evaluation)
        template = manifest["spec"].get("template")
        if template is None:
            continue
        spec = template["spec"]
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            images.add(container["image"])
    for resource in evaluation.resources:
        data = resource.inputs.get("data") if resource.inputs.get("kind") == "ConfigMap" else None
        if data and "ETLSTACK_RUNTIME" in data:
            runtimes.append(json.loads(data["ETLSTACK_RUNTIME"]))
    assert images, "prod declares workloads"
    assert images <= {promoted["airflow"]} | third_party
    assert promoted["airflow"] in images
    (runtime,) = runtimes
    assert runtime["pipelineImages"] == {
        name: ref for name, ref in promoted.items() if name not in ("airflow", "dags")
    }
