"""docs/settings.md, generated from the settings' schema: every key, its type, default and meaning.

    .venv/bin/python -m etlstack.settings_doc > docs/settings.md    (make settings-doc)

A unit test fails when the file differs from what this writes, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from etlstack.config import NAMESPACE, DockerStackSettings, KubernetesStackSettings

HEADER = f"""# Settings

Every setting a stack file (`Pulumi.<stack>.yaml`) may hold, under the `{NAMESPACE}:`
namespace. Generated from the settings' schema (`infra/etlstack/config.py`) by
`make settings-doc`; do not edit by hand. Set one with
`pulumi config set --path '{NAMESPACE}:<key>' <value>`; a wrong one stops
`pulumi up` (and `etlstack render`) before any resource, naming the key and the fix.

`target` decides which block a stack may hold: `docker` (one host) or `kubernetes`.
"""

SECRETS = f"""## Secrets

Set with `pulumi config set --secret {NAMESPACE}:<key> <value>`; a value stored in
plain text is refused.

| key | when it is needed |
|---|---|
| `externalDatabaseUrl` | `postgres.external: true`: the database's `postgresql://` URL |
| `registryPassword` | `registry.external: true`: the password of `registry.username` |
"""


def _type(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "object"
    if "anyOf" in schema:
        return " or ".join(
            _type(option, definitions) for option in schema["anyOf"] if option != {"type": "null"}
        ) + (" (optional)" if {"type": "null"} in schema["anyOf"] else "")
    if "enum" in schema:
        return " or ".join(f"`{value}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), definitions)}"
    if schema.get("type") == "object":
        return "map"
    return str(schema.get("type", "any"))


def _default(schema: dict[str, Any]) -> str:
    if "default" not in schema:
        return "required"
    value = schema["default"]
    if isinstance(value, dict):
        return "see below" if value else "`{}`"
    return f"`{json.dumps(value)}`" if value is not None else "unset"


def _rows(
    properties: dict[str, Any],
    definitions: dict[str, Any],
    prefix: str = "",
    defaults: dict[str, Any] | None = None,
) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of each setting; a block's own default (e.g. the
    scheduler's resources) gives its keys their defaults."""
    for key, schema in properties.items():
        name = f"{prefix}{key}"
        if defaults is not None and key in defaults:
            schema = {**schema, "default": defaults[key]}
        reference = schema.get("$ref") or next(
            (o["$ref"] for o in schema.get("anyOf", []) if "$ref" in o), None
        )
        if reference:
            nested = definitions[reference.rsplit("/", 1)[-1]]
            meaning = schema.get("description") or nested.get("description", "")
            yield name, "object", "", meaning
            inherited = schema.get("default") if isinstance(schema.get("default"), dict) else None
            yield from _rows(nested.get("properties", {}), definitions, f"{name}.", inherited)
            continue
        yield name, _type(schema, definitions), _default(schema), schema.get("description", "")


def _table(
    model: type[DockerStackSettings] | type[KubernetesStackSettings], blocks: set[str]
) -> str:
    """The rows of `model` whose top-level key is in `blocks`."""
    schema = model.model_json_schema(by_alias=True)
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, kind, default, meaning in _rows(schema["properties"], schema.get("$defs", {})):
        if name.split(".")[0] in blocks:
            shown = " ".join(meaning.split()).replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {default} | {shown} |")
    return "\n".join(lines) + "\n"


def markdown() -> str:
    common = set(DockerStackSettings.model_fields) & set(KubernetesStackSettings.model_fields)
    common.discard("target")
    target_only = {"target", "docker", "kubernetes"}
    return "\n".join(
        [
            HEADER,
            "## `target: docker`\n",
            _table(DockerStackSettings, target_only),
            "## `target: kubernetes`\n",
            _table(KubernetesStackSettings, target_only),
            "## Every target\n",
            _table(DockerStackSettings, common),
            SECRETS,
        ]
    )


if __name__ == "__main__":
    print(markdown(), end="")
