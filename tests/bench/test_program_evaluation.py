"""How long the prod stack's program takes to evaluate under the mock runtime."""

from __future__ import annotations

import time

import pulumi
import pytest

from etlstack import render
from tests.bench import report
from tests.support.stacks import PROJECT_ROOT

ROUNDS = 5


def _one_resource(config: object) -> None:
    # The baseline: the same runtime, configuration load and stack file, one resource.
    pulumi.export("baseline", "x")


def _seconds(program: object = None) -> float:
    started = time.perf_counter()
    evaluation = render.evaluate("prod", PROJECT_ROOT, program=program)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert evaluation.outputs, "the program exported its outputs"
    return elapsed


@pytest.mark.bench
def test_prod_program_evaluation_time() -> None:
    _seconds()  # warm imports, so neither side pays for them
    baseline = [_seconds(_one_resource) for _ in range(ROUNDS)]
    program = [_seconds() for _ in range(ROUNDS)]
    resources = len(render.evaluate("prod", PROJECT_ROOT).resources)

    report.record(
        "program_evaluation",
        "Program evaluation (prod stack, mock runtime)",
        {
            "resources declared": resources,
            "prod program, median s": report.median(program),
            "baseline (same runtime, one output), median s": report.median(baseline),
            "ratio": report.median(program) / report.median(baseline),
            "rounds": ROUNDS,
        },
        notes="The baseline is the mock runtime evaluating the same stack file with a "
        "program that declares nothing: the difference is the program's own cost.",
    )
