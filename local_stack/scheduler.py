"""The template's scheduled functions (EventBridge ``rate(...)`` rules), run locally on their rate by
the same handler loader as the gateway, with an EventBridge-shaped event."""

from __future__ import annotations

import sys
import threading
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_stack.gateway import LambdaContext, LambdaFunction, invoke_serially
from local_stack.template import schedules


def scheduled_event(function_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:000000000000:rule/local-{function_id}"],
        "detail": {},
    }


class Scheduler:
    """One daemon thread per scheduled function; ``every`` overrides the template's rate (seconds)."""

    def __init__(self, template: dict[str, Any], root: Path, every: float | None = None) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(LambdaFunction(s.function_id, root / s.code_uri, s.handler), every or s.seconds),
                name=f"schedule-{s.function_id}",
                daemon=True,
            )
            for s in schedules(template)
        ]

    def start(self) -> Scheduler:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, function: LambdaFunction, seconds: float) -> None:
        while not self._stop.wait(seconds):  # the rule's rate: a timer, not synchronisation
            try:
                invoke_serially(
                    function.handler(),
                    scheduled_event(function.function_id),
                    LambdaContext(function_name=function.function_id),
                )
            except Exception:  # like Lambda: log it, and the next tick tries again
                print(f"scheduled {function.function_id} failed:\n{traceback.format_exc()}", file=sys.stderr)
