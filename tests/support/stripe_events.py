"""Stripe events for tests, built from the samples in events/stripe/ (current API shapes) and signed
exactly as Stripe signs them (``t=…,v1=`` HMAC-SHA256 of ``"{t}.{body}"``, by the official SDK)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import stripe

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "stripe"
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
