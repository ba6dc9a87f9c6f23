"""Benchmarks write BENCHMARKS.md once the session is over."""

from __future__ import annotations

import pytest

from tests.bench import report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if report.RESULTS.exists():
        report.write_markdown()
