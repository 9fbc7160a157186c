"""Stripe events for tests, built from the samples in events/stripe/ (current API shapes) and signed
exactly as Stripe signs them (``t=…,v1=`` HMAC-SHA256 of ``"{t}.{body}"``, by the official SDK)."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stripe

from tests.support.lambda_events import FakeContext, api_event

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "events" / "stripe"
SAMPLE_ACCOUNT = "acct_0123456789abcdef0123456789abcdef"
SAMPLE_SUBSCRIPTION = "sub_1SampleStripeSub"
WEBHOOK_SECRET = "whsec_unit_test_secret_0123456789"
SAMPLE_START = 1_790_000_000  # when the samples' first period starts
# Tests see the samples moved in time: the first period started a day ago, so it is current.
SHIFT = int(time.time()) - 86_400 - SAMPLE_START


def _shifted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 1_700_000_000 <= value < 1_900_000_000:
        return value + SHIFT  # a Unix timestamp
    return value


def sample(name: str, *, account_id: str, stripe_subscription: str = SAMPLE_SUBSCRIPTION, **changes: Any) -> dict:
    """The sample event ``name`` for ``account_id`` and ``stripe_subscription``; ``changes`` set top-level
    event fields (``id``, ``created``)."""
    text = (SAMPLES / f"{name}.json").read_text()
    text = text.replace(SAMPLE_ACCOUNT, account_id).replace(SAMPLE_SUBSCRIPTION, stripe_subscription)
    event = _shifted(json.loads(text))
    event.update(changes)
    return event


def set_period(event: dict, start: int, end: int) -> dict:
    """The same event about another period (subscription items or invoice lines)."""
    event = copy.deepcopy(event)
    obj = event["data"]["object"]
    if obj["object"] == "subscription":
        for item in obj["items"]["data"]:
            item["current_period_start"], item["current_period_end"] = start, end
    else:
        for line in obj["lines"]["data"]:
            line["period"] = {"start": start, "end": end}
    return event


def signed(body: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp or int(time.time()))


def body_of(event: dict) -> str:
    return json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON; the signature covers it as is


def webhook_function(monkeypatch: Any, secret: str = WEBHOOK_SECRET) -> Callable[..., tuple[int, dict]]:
    """The webhook function's handler, its signing secret configured as on AWS (a reference, here to an
    environment variable). Returns ``deliver(event | raw=…, signature=None, b64=False)`` → (status, body):
    the event's body signed with ``secret`` unless a ``signature`` is given. The caller clears
    ``get_settings`` once done (monkeypatch restores the environment, not the settings cache)."""
    from llm_platform.config import get_settings

    # One variable per secret: resolved secrets are cached by reference for minutes, as on AWS.
    variable = "TEST_STRIPE_WEBHOOK_SECRET_" + hashlib.sha256(secret.encode()).hexdigest()[:12]
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_SECRET", f"env:{variable}")
    monkeypatch.setenv(variable, secret)
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location("test_stripe_webhook", REPO / "functions/stripe_webhook/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def deliver(
        event: dict | None = None, *, raw: str | None = None, signature: str | None = None, b64: bool = False
    ) -> tuple[int, dict]:
        body = raw if raw is not None else body_of(event)
        request = api_event("POST", "/api/billing/webhook", raw=body, base64_body=b64)
        request["headers"] = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signed(body, secret) if signature is None else signature,
        }
        response = module.lambda_handler(request, FakeContext())
        return response["statusCode"], json.loads(response["body"])

    return deliver


def outcome(response: tuple[int, dict]) -> tuple[int, str]:
    """(status, "applied" | "duplicate" | "ignored" | the error code) of a delivery."""
    status, body = response
    return status, body.get("data", {}).get("outcome") or body["error"]["code"]
