"""Evaluating a stack under the mock runtime: the one way the tests do it.

`evaluate(stack, **overrides)` is `render.evaluate` with what every test needs: this
repository's stack files, the Docker socket's group named (the fast tests must not
depend on a Docker Engine), and one evaluation per stack, secrets mode and overrides
shared by every test that only reads it. `stack_file_with` stands in for a stack file
holding more settings and encrypted secrets than the real one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from etlstack import render
from etlstack.config import StackConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.name.split(".")[1] for p in PROJECT_ROOT.glob("Pulumi.*.yaml"))


def _target(stack: str, project_root: Path = PROJECT_ROOT) -> str | None:
    return render.stack_file_config(project_root, stack)[0].get("etlstack:target")


KUBERNETES_STACKS = tuple(s for s in STACKS if _target(s) == "kubernetes")

# The Docker socket's group is looked up on the machine that runs `pulumi up`; the
# fast tests must not depend on a Docker Engine, so they name one.
TEST_SOCKET_GID = 998


def stack_overrides(stack: str, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The settings every test evaluation of `stack` adds to its file."""
    if _target(stack, project_root) == "docker":
        return {"docker": {"socketGid": TEST_SOCKET_GID}}
    return {}


_ORIGINAL_STACK_FILE_CONFIG = render.stack_file_config
_cache: dict[tuple[str, bool, str], render.Evaluation] = {}


def evaluate(
    stack: str,
    *,
    real_secrets: bool = False,
    fresh: bool = False,
    project_root: Path = PROJECT_ROOT,
    secret_seed: bytes | None = None,
    program: Callable[[StackConfig], Any] | None = None,
    **overrides: Any,
) -> render.Evaluation:
    """The evaluation of `stack` under the mock runtime, with `overrides` on its settings.

    One evaluation per (stack, real_secrets, overrides) is kept and shared: callers
    read it and never change it. A test that watches the evaluation itself happen
    (warnings it logs, calls it makes, the working directory it runs in, fresh random
    secrets) asks for a `fresh` one. An evaluation of another project, with a seed or
    a program, or while a stack file is stood in for (`stack_file_with`) is never shared.
    """
    merged = {**stack_overrides(stack, project_root), **overrides}
    shareable = (
        not fresh
        and project_root == PROJECT_ROOT
        and secret_seed is None
        and program is None
        and render.stack_file_config is _ORIGINAL_STACK_FILE_CONFIG
    )
    key = (stack, real_secrets, json.dumps(merged, sort_keys=True))
    if shareable and key in _cache:
        return _cache[key]
    evaluation = render.evaluate(
        stack,
        project_root,
        overrides=merged,
        real_secrets=real_secrets,
        secret_seed=secret_seed,
        program=program,
    )
    if shareable:
        _cache[key] = evaluation
    return evaluation


@contextlib.contextmanager
def stack_file_with(
    stack: str, settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> Iterator[None]:
    """Evaluate `stack` as if its file also held `settings` and the encrypted `secrets`.

    Overrides cannot mark a value secret, and a credential in plain text is refused,
    so the stack file itself is what is stood in for (as `pulumi config set --secret`
    would store the secrets).
    """
    original = render.stack_file_config

    def config_with(project_root: Path, name: str) -> tuple[dict[str, str], list[str]]:
        config, secret_keys = original(project_root, name)
        if name == stack:
            for key, value in settings.items():
                config[f"etlstack:{key}"] = (
                    json.dumps(value) if isinstance(value, dict | list) else str(value)
                )
            for key, value in secrets.items():
                config[f"etlstack:{key}"] = value
                secret_keys.append(f"etlstack:{key}")
        return config, secret_keys

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "stack_file_config", config_with)
        yield
