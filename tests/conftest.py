"""Shared test helpers: the project root and evaluating a stack under the mock runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from etlstack import render

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name.split(".")[1] for p in PROJECT_ROOT.glob("Pulumi.*.yaml"))

# The Docker socket's group is looked up on the machine that runs `pulumi up`; the
# fast tests must not depend on a Docker Engine, so they name one.
TEST_SOCKET_GID = 998


def stack_overrides(stack: str) -> dict[str, Any]:
    if render.stack_file_config(PROJECT_ROOT, stack)[0].get("etlstack:target") == "docker":
        return {"docker": {"socketGid": TEST_SOCKET_GID}}
    return {}


Evaluate = Callable[..., render.Evaluation]


@pytest.fixture
def evaluate() -> Evaluate:
    """evaluate(stack, **overrides) -> Evaluation of that stack file under mocks."""

    def run(stack: str, **overrides: Any) -> render.Evaluation:
        merged = {**stack_overrides(stack), **overrides}
        return render.evaluate(stack, PROJECT_ROOT, overrides=merged)

    return run
