"""The shared test helpers the end-to-end tests and benchmarks wait and bind with."""

from __future__ import annotations

import itertools
import socket

import pytest

from tests.support.polling import until
from tests.support.ports import free_port


def test_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready"])
    assert until(lambda: next(answers), timeout=5, interval=0, what="ready") == "ready"


def test_until_retries_on_the_errors_it_is_told_and_raises_others() -> None:
    calls = itertools.count()

    def coming_back() -> bool:
        if next(calls) < 2:
            raise ConnectionError("not yet")
        return True

    assert until(coming_back, timeout=5, interval=0, what="up", retry_on=(ConnectionError,))
    with pytest.raises(ConnectionError):
        until(coming_back_never, timeout=5, interval=0, what="up")


def coming_back_never() -> bool:
    raise ConnectionError("down")


def test_until_fails_after_its_timeout_naming_what_and_the_last_error() -> None:
    seen: list[int] = []

    def never() -> bool:
        seen.append(len(seen))
        raise ConnectionError("still down")

    with pytest.raises(AssertionError, match=r"up after \d+ tries: not within 0\.05s") as failed:
        until(
            never,
            timeout=0.05,
            interval=0.03,
            what=lambda: f"up after {len(seen)} tries",
            retry_on=(ConnectionError,),
        )
    assert "still down" in str(failed.value)


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
