"""The local stack runs the template's scheduled functions like EventBridge would."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from local_stack.scheduler import Scheduler
from local_stack.template import load_template, loads_template, schedules

REPO = Path(__file__).resolve().parents[3]


def test_the_expiry_function_is_scheduled_every_five_minutes() -> None:
    found = {s.function_id: s for s in schedules(load_template(REPO / "template.yaml"))}
    assert found["ExpireSubscriptionsFunction"].seconds == 300
    assert found["ExpireSubscriptionsFunction"].code_uri == "functions/expire_subscriptions/"


def test_only_rate_expressions_run_locally() -> None:
    template = loads_template(
        """
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: handler.lambda_handler
      Events:
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 3 * * ? *)
"""
    )
    with pytest.raises(ValueError, match="rate"):
        schedules(template)


def test_a_scheduled_handler_gets_an_eventbridge_event(tmp_path: Path) -> None:
    # Given a template with a function on a schedule, whose handler reports the events it gets
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(
        "import builtins\n"
        "def lambda_handler(event, context):\n"
        "    builtins.scheduled_events.append((event, context.function_name))\n"
        "    builtins.scheduled_signal.set()\n"
    )
    template = loads_template(
        """
Resources:
  Tick:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: handler.lambda_handler
      Events:
        Every:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
"""
    )
    import builtins

    builtins.scheduled_events, builtins.scheduled_signal = [], threading.Event()
    scheduler = Scheduler(template, tmp_path, every=0.05).start()
    try:
        # When the rate elapses, then the handler ran with a scheduled event
        assert builtins.scheduled_signal.wait(timeout=10)
    finally:
        scheduler.stop()
    event, function_name = builtins.scheduled_events[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert function_name == "Tick"
    json.dumps(event)  # serialisable, as EventBridge's is
    del builtins.scheduled_events, builtins.scheduled_signal
