"""The Kubernetes stacks (dev, prod), each evaluated once for every test that reads it."""

from __future__ import annotations

import pytest

from tests.support.stacks import KUBERNETES_STACKS
from tests.unit.kubernetes.stack import Stack, evaluate_stack


@pytest.fixture(scope="module", params=KUBERNETES_STACKS)
def stack(request: pytest.FixtureRequest) -> Stack:
    # Real random values: a generated password is then unmistakable wherever it lands.
    return evaluate_stack(request.param, real_secrets=True)
