"""The memory hog holds real memory and, if never stopped, fails saying the limit is not enforced."""

from __future__ import annotations

import pytest
from platform_smoke import memory_hog


def test_holds_chunks_up_to_the_ceiling_when_never_stopped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    held = memory_hog.hog(limit=4 << 20, chunk=1 << 20, ceiling_factor=2)
    assert held == 8 << 20
    assert "holding 8 MiB (limit 4 MiB)" in capsys.readouterr().out


def test_without_a_limit_it_fails_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(memory_hog, "memory_limit", lambda: None)
    assert memory_hog.main() == 1
    assert "no memory limit" in capsys.readouterr().out
