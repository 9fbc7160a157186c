"""Every function has a sample event in events/, and it runs through its handler as documented."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import REPO, TEMPLATE, FakeContext

from local_stack.template import runs_under_web_adapter

# Functions under the Lambda Web Adapter (the proxy) get HTTP requests, not events: tests/unit/local covers them.
FUNCTIONS = {
    logical_id: Path(resource["Properties"]["CodeUri"]).name
    for logical_id, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function" and not runs_under_web_adapter(TEMPLATE, logical_id)
}
# Functions started by a schedule get an EventBridge event, not an API request.
SCHEDULED = {
    folder
    for logical_id, folder in FUNCTIONS.items()
    if any(
        e.get("Type") == "Schedule" for e in TEMPLATE["Resources"][logical_id]["Properties"].get("Events", {}).values()
    )
}
# The dashboard's static site answers HTML, not the API's JSON envelope: its own test below.
STATIC = {"dashboard"}
API = sorted(set(FUNCTIONS.values()) - SCHEDULED - STATIC)


def test_every_function_has_a_sample_event() -> None:
    # The proxy's too: the API Gateway event the Lambda Web Adapter turns into its HTTP request
    # (tests/integration/test_proxy_sample_event.py replays it).
    every = [
        Path(resource["Properties"]["CodeUri"]).name
        for resource in TEMPLATE["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    missing = [folder for folder in every if not (REPO / "events" / f"{folder}.json").exists()]
    assert "proxy" in every and missing == []


def _load(folder: str):
    spec = importlib.util.spec_from_file_location(f"sample_{folder}", REPO / "functions" / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", sorted(SCHEDULED))
def test_scheduled_sample_event_runs(folder: str, tables) -> None:
    event = json.loads((REPO / "events" / f"{folder}.json").read_text())
    assert event["detail-type"] == "Scheduled Event"
    expected = {
        "expire_subscriptions": {"renewed": 0, "expired": 0, "keysRevoked": 0},
        "reconcile_reservations": {"settled": 0, "alreadySettled": 0, "failed": 0},
    }
    assert _load(folder).lambda_handler(event, FakeContext()) == expected[folder]


@pytest.mark.parametrize("folder", API)
def test_sample_event_is_served_by_its_handler(folder: str, account, monkeypatch) -> None:
    # Given a platform that takes USDC, and the sample event with a real management key
    monkeypatch.setenv("USDC_DEPOSIT_ADDRESS", "0x90F79bf6EB2c4f870365E785982E1f101E93b906")
    from llm_platform.config import get_settings

    get_settings.cache_clear()
    event = json.loads((REPO / "events" / f"{folder}.json").read_text())
    event["headers"]["Authorization"] = f"Bearer {account.management_key}"
    event["multiValueHeaders"]["Authorization"] = [event["headers"]["Authorization"]]
    # When the handler gets it
    response = _load(folder).lambda_handler(event, FakeContext())
    # Then it answers in the envelope: data, or a documented error (ids that do not exist here, a wallet
    # challenge never requested, no chain to ask), never an internal error
    body = json.loads(response["body"])
    assert response["statusCode"] in (200, 201, 202, 400, 402, 404, 503), body
    if folder == "auth_email_start":  # the code went out through SES
        assert response["statusCode"] == 202, body
    assert ("data" in body) == (response["statusCode"] < 300)
    if "error" in body:
        assert body["error"]["code"] in {
            "not_found",
            "challenge_required",
            "chain_unavailable",
            "insufficient_credit",
            "stripe_not_configured",
            "code_expired",  # the sample's code was never sent
        }, body


def test_the_stripe_webhook_sample_applies_once_signed(tables, monkeypatch) -> None:
    # Given the sample webhook request, its body signed with the configured webhook secret
    import stripe

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_SECRET", "env:SAMPLE_WEBHOOK_SECRET")
    monkeypatch.setenv("SAMPLE_WEBHOOK_SECRET", "whsec_sample")
    from llm_platform.config import get_settings

    get_settings.cache_clear()
    event = json.loads((REPO / "events" / "stripe_webhook.json").read_text())
    event["headers"]["Stripe-Signature"] = stripe.WebhookSignature.generate_signature_header(
        event["body"], "whsec_sample"
    )
    handler = _load("stripe_webhook").lambda_handler
    # When it is delivered twice, then the first applies and the second is a recognised repeat
    outcomes = [json.loads(handler(event, FakeContext())["body"])["data"]["outcome"] for _ in range(2)]
    assert outcomes == ["applied", "duplicate"]


def test_the_dashboard_sample_event_is_served_the_page_under_its_stage(tmp_path, monkeypatch) -> None:
    # Given a built site (a minimal one here: the unit tier does not build the dashboard)
    from llm_platform.web.static_site import Site

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    (tmp_path / "index.html").write_text('<!doctype html><base href="/"><title>Dashboard</title>')
    module = _load("dashboard")
    monkeypatch.setattr(module, "SITE", Site(tmp_path))
    event = json.loads((REPO / "events" / "dashboard.json").read_text())
    # When the sample request for / on the prod stage arrives (back from Checkout)
    response = module.lambda_handler(event, FakeContext())
    # Then the page is served, its URLs resolving under the stage
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert '<base href="/prod/">' in response["body"]
