"""Tasks that succeed only when the platform refuses to launch them.

The smoke test proves the platform's guard rails by asking for what they forbid: a
privileged container, a host bind mount, a pod outside the pipelines namespace. The
refusal is an HTTP 403 from the Docker API proxy or the Kubernetes API server. A
403 makes the task succeed and its message becomes the task's XCom (so a run shows
what refused it); a launch that goes through, or any other error, fails the task.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

FORBIDDEN = 403


def refusal(error: BaseException) -> BaseException | None:
    """The HTTP 403 error behind `error` (itself or what caused it), if there is one."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # docker-py's APIError has status_code; the Kubernetes client's ApiException status.
        status = getattr(current, "status_code", None) or getattr(current, "status", None)
        if status == FORBIDDEN:
            return current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def message(error: BaseException) -> str:
    """What the refusing API said: its JSON message, or its explanation."""
    body = getattr(error, "body", None)
    if isinstance(body, (str, bytes)):
        try:
            return str(json.loads(body)["message"])
        except (ValueError, KeyError, TypeError):
            pass
    explanation = getattr(error, "explanation", None)
    return str(explanation or error).strip()


class ExpectRefusal(BaseOperator):
    """Mixed in before a launching operator: inverts its outcome as described above."""

    refused_because: str = ""

    def execute(self, context: Context) -> Any:
        try:
            super().execute(context)
        except Exception as error:
            refused = refusal(error)
            if refused is None:
                raise
            self.log.info("Refused, as the platform must (%s): %s", self.refused_because, refused)
            return {"refused": True, "status": FORBIDDEN, "message": message(refused)}
        raise AirflowFailException(
            f"The platform launched a task it must refuse ({self.refused_because}): "
            "its launch guard rails are not in force"
        )
