"""The tests' shared helpers live in tests/support; evaluating a stack is tests.support.stacks.

The names below stay importable from here, and `evaluate` stays a fixture, for tests
written against this module before tests/support existed: both are the same helper.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from etlstack import render
from tests.support.stacks import PROJECT_ROOT, STACKS, TEST_SOCKET_GID, evaluate, stack_overrides

__all__ = ["PROJECT_ROOT", "STACKS", "TEST_SOCKET_GID", "stack_overrides"]

Evaluate = Callable[..., render.Evaluation]


@pytest.fixture(name="evaluate")
def evaluate_fixture() -> Evaluate:
    """tests.support.stacks.evaluate, as a fixture."""
    return evaluate
