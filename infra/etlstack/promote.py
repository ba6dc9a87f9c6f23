"""Promotion: pin into one stack's file exactly the artifacts another stack runs.

`etlstack promote dev prod` reads dev's `artifacts` output and writes those pinned
references into `Pulumi.prod.yaml`, leaving every other setting and comment as it
was. Rolling back is the same command with an earlier outputs file, or a revert of
the commit that promoted.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from etlstack.config import (
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    check_artifacts,
    parse_settings,
)

ARTIFACTS_KEY = f"{NAMESPACE}:artifacts"


def read_outputs(source: str, outputs_file: Path | None, project_root: Path) -> dict[str, Any]:
    """The source stack's outputs, from a file or from `pulumi stack output`."""
    if outputs_file is not None:
        try:
            text = outputs_file.read_text()
        except OSError as error:
            raise ConfigError(
                f"cannot read outputs file {outputs_file}: {error.strerror}"
            ) from None
        where = str(outputs_file)
    else:
        if shutil.which("pulumi") is None:
            raise ConfigError(
                "the pulumi CLI is not installed, so the outputs of stack "
                f"{source!r} cannot be read; install it, or pass --outputs FILE "
                f"(the JSON of `pulumi stack output --json -s {source}`)"
            )
        result = subprocess.run(
            ["pulumi", "stack", "output", "--json", "-s", source],
            cwd=project_root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigError(
                f"`pulumi stack output --json -s {source}` failed: {result.stderr.strip()}"
            )
        text, where = result.stdout, f"the outputs of stack {source!r}"
    try:
        outputs = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{where} is not JSON: {error}") from None
    if not isinstance(outputs, dict):
        raise ConfigError(f"{where} is not a JSON object of stack outputs")
    return outputs


def source_artifacts(outputs: dict[str, Any], source: str) -> dict[str, str]:
    artifacts = outputs.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        raise ConfigError(
            f"the outputs of stack {source!r} have no `artifacts` (or it is empty); "
            f"run `pulumi up -s {source}` first, or give the right --outputs file"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in artifacts.items()):
        raise ConfigError(f"the `artifacts` output of stack {source!r} must map names to strings")
    try:
        check_artifacts(artifacts)
    except ValueError as error:
        raise ConfigError(f"refusing to promote from {source!r}: {error}") from None
    return dict(artifacts)


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _load_stack_file(path: Path) -> CommentedMap:
    if not path.is_file():
        raise ConfigError(f"no stack file {path.name}; create it before promoting into it")
    try:
        document = _yaml().load(path.read_text())
    except YAMLError as error:
        raise ConfigError(
            f"{path.name} does not parse as YAML, nothing was changed: {error}"
        ) from None
    if not isinstance(document, CommentedMap) or not isinstance(
        document.get("config"), CommentedMap
    ):
        raise ConfigError(f"{path.name} has no `config:` mapping; nothing was changed")
    return document


def _check_still_valid(config: CommentedMap, file_name: str) -> None:
    """The promoted file must still be a valid stack before it is written."""
    prefix = f"{NAMESPACE}:"
    plain = json.loads(json.dumps(config))
    settings = {
        key.removeprefix(prefix): value
        for key, value in plain.items()
        if key.startswith(prefix) and key.removeprefix(prefix) not in SECRET_KEYS
    }
    try:
        parse_settings(settings)
    except ConfigError as error:
        raise ConfigError(
            f"{file_name} would not be valid after promotion, nothing was changed: {error}"
        ) from None


def plan(
    current: dict[str, str], promoted: dict[str, str]
) -> list[tuple[str, str | None, str | None]]:
    """The changes, name by name: (artifact, old reference, new reference or None if dropped).

    The destination gets exactly the source's set: its DAGs arrive inside the promoted
    Airflow image together with the pipeline images they name, so a pipeline new in
    the source is added and one the source no longer runs is dropped.
    """
    return [(name, current.get(name), promoted.get(name)) for name in sorted({*current, *promoted})]


def run(
    project_root: Path,
    *,
    source: str,
    destination: str,
    outputs_file: Path | None,
    dry_run: bool,
) -> int:
    stack_file = project_root / f"Pulumi.{destination}.yaml"
    document = _load_stack_file(stack_file)
    promoted = source_artifacts(read_outputs(source, outputs_file, project_root), source)

    config = document["config"]
    current = dict(config.get(ARTIFACTS_KEY) or {})
    changes = plan(current, promoted)

    config[ARTIFACTS_KEY] = CommentedMap(promoted)
    _check_still_valid(config, stack_file.name)

    print(f"promote {source} -> {destination} ({stack_file.name}):")
    for name, old, new in changes:
        if old == new:
            print(f"  {name}: unchanged ({new})")
        elif new is None:
            print(f"  {name}: {old} -> (dropped: stack {source!r} no longer runs it)")
        else:
            print(f"  {name}: {old or '(new)'} -> {new}")
    if dry_run:
        print("dry run: nothing written")
        return 0
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    with tempfile.NamedTemporaryFile("w", dir=project_root, delete=False, suffix=".yaml") as handle:
        handle.write(buffer.getvalue())
    Path(handle.name).replace(stack_file)
    print(f"wrote {stack_file.name}; review the diff, commit it, then `pulumi up -s {destination}`")
    return 0
