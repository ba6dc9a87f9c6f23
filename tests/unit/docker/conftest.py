"""The docker target as the `local` stack declares it (Pulumi.local.yaml, mock runtime)."""

from __future__ import annotations

import pytest

from etlstack import render
from tests.support.stacks import evaluate


@pytest.fixture(scope="module")
def local() -> render.Evaluation:
    return evaluate("local")


@pytest.fixture(scope="module")
def revealed() -> render.Evaluation:
    """The local stack with real random secrets, to compare values across containers."""
    return evaluate("local", real_secrets=True)
