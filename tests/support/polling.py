"""Waiting until a condition holds, with a deadline: one call shape over tenacity.

tenacity is what the applier (tests/e2e/deploy.py) waits with too; this keeps every
test's wait to one line and its failure to an AssertionError that says what was
awaited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import tenacity

T = TypeVar("T")


def until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    what: str | Callable[[], str],
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` every `interval` seconds until it returns a truthy value; return it.

    After `timeout` seconds, fail with an AssertionError naming `what` (a string, or a
    function called then, so the message can show the last state seen). Exceptions of
    the `retry_on` types count as "not yet" (a component that is still coming back);
    any other exception propagates at once.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on)
        | tenacity.retry_if_result(lambda v: not v),
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
    )
    try:
        # Retried until truthy, so never None here.
        value = cast(T, retrying(condition))
    except tenacity.RetryError as gave_up:
        error = gave_up.last_attempt.exception()
        description = what() if callable(what) else what
        detail = f" (last error: {error!r})" if error is not None else ""
        raise AssertionError(f"{description}: not within {timeout:g}s{detail}") from error
    return value
