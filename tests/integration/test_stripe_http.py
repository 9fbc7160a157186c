"""Paying through Stripe on the local stack, over real HTTP: the platform's own code with the official
SDK against the Stripe simulator, which delivers signed webhooks to the gateway as Stripe would."""

from __future__ import annotations

import httpx
import pytest

from llm_platform.domain.accounts import CreatedAccount, create_account


@pytest.fixture
def api(local_stack) -> httpx.Client:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def stripe(local_stack):
    """The simulator (what a browser and Stripe's servers do), and its pages over HTTP."""
    return local_stack.stripe


@pytest.fixture
def buyer(local_stack) -> CreatedAccount:
    return create_account("buyer")


def auth(account: CreatedAccount) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.management_key}"}


def pay_on_the_page(session_url: str) -> httpx.Response:
    """What a customer does: open the Checkout page, press Pay."""
    with httpx.Client(timeout=30) as browser:
        page = browser.get(session_url)
        assert page.status_code == 200 and ">Pay</button>" in page.text
        return browser.post(session_url)


def stripe_subscription_of(stripe, account: CreatedAccount) -> dict:
    [subscription] = [s for s in stripe.subscriptions() if s["metadata"].get("accountId") == account.account_id]
    return subscription


def subscriptions(api, account) -> list[dict]:
    return api.get("/api/billing/status", headers=auth(account)).json()["data"]["subscriptions"]


def chat(api, key: str) -> httpx.Response:
    return api.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]},
    )


def test_checkout_pay_key_and_inference_as_the_docs_show(api, stripe, buyer) -> None:
    # Given a checkout session for the pro plan
    response = api.post("/api/billing/checkout", headers=auth(buyer), json={"planSlug": "pro"})
    assert response.status_code == 200, response.text
    session_url = response.json()["data"]["sessionUrl"]
    assert session_url.startswith(stripe.base_url or "http://127.0.0.1")
    # Nothing is active before payment
    assert subscriptions(api, buyer) == []
    # When the customer pays on the page
    paid = pay_on_the_page(session_url)
    # Then they are sent back to the dashboard's billing page (the success URL) and the webhooks were all accepted
    dashboard = str(api.base_url).rstrip("/") + "/?checkout=success&session_id=cs_test_"
    assert paid.status_code == 303 and paid.headers["location"].startswith(dashboard), paid.headers["location"]
    assert paid.headers["location"].endswith("#/billing")
    ours = [e for e in stripe.events() if buyer.account_id in str(e["event"]["data"]["object"])]
    assert {d["status"] for e in ours for d in e["deliveries"]} == {200}
    # And the subscription is active until Stripe's period end
    [subscription] = subscriptions(api, buyer)
    stripe_sub = stripe_subscription_of(stripe, buyer)
    period_end = stripe_sub["items"]["data"][0]["current_period_end"]
    assert (subscription["planSlug"], subscription["status"], subscription["cancelAtPeriodEnd"]) == (
        "pro",
        "active",
        False,
    )
    from llm_platform.core.clock import from_iso

    assert int(from_iso(subscription["currentPeriodEnd"]).timestamp()) == period_end
    # And a key on it serves inference
    key = api.post(
        "/api/keys/subscription", headers=auth(buyer), json={"name": "my-app", "subscriptionId": subscription["id"]}
    ).json()["data"]["apiKey"]
    assert chat(api, key).status_code == 200


def _subscribed(api, stripe, account) -> tuple[dict, str, dict]:
    session_url = api.post("/api/billing/checkout", headers=auth(account), json={"planSlug": "standard"}).json()[
        "data"
    ]["sessionUrl"]
    pay_on_the_page(session_url)
    [subscription] = subscriptions(api, account)
    key = api.post(
        "/api/keys/subscription", headers=auth(account), json={"name": "k", "subscriptionId": subscription["id"]}
    ).json()["data"]["apiKey"]
    return subscription, key, stripe_subscription_of(stripe, account)


def test_renewal_failed_payment_and_recovery(api, stripe, buyer) -> None:
    subscription, key, stripe_sub = _subscribed(api, stripe, buyer)
    # When Stripe renews it, the period moves forward
    renewed = stripe.renew(stripe_sub["id"])
    assert {e["status"] for e in renewed["events"]} == {200}
    [after] = subscriptions(api, buyer)
    assert after["status"] == "active" and after["currentPeriodEnd"] > subscription["currentPeriodEnd"]
    # When the next renewal's charge fails, it is past due and its keys are refused
    stripe.fail_payment(stripe_sub["id"])
    assert subscriptions(api, buyer)[0]["status"] == "past_due"
    refused = chat(api, key)
    assert refused.status_code == 401 and "not active" in refused.json()["error"]["message"]
    # When a retry of the charge succeeds, it is active and the same key works again
    stripe.retry_payment(stripe_sub["id"])
    assert subscriptions(api, buyer)[0]["status"] == "active"
    assert chat(api, key).status_code == 200


def test_cancel_goes_through_stripe_and_ends_at_period_end(api, stripe, buyer) -> None:
    subscription, key, stripe_sub = _subscribed(api, stripe, buyer)
    # When the customer cancels through the platform
    response = api.post("/api/billing/cancel", headers=auth(buyer), json={"subscriptionId": subscription["id"]})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["cancelAtPeriodEnd"] is True
    # Then Stripe was told, and its confirming webhook changes nothing more
    assert stripe.get(stripe_sub["id"])["cancel_at_period_end"] is True
    assert stripe.drain()
    [updated] = [
        e
        for e in stripe.events("customer.subscription.updated")
        if e["event"]["data"]["object"]["id"] == stripe_sub["id"]
    ]
    assert [d["status"] for d in updated["deliveries"]] == [200]
    assert subscriptions(api, buyer)[0]["cancelAtPeriodEnd"] is True
    # The key works until the period ends
    assert chat(api, key).status_code == 200
    # When the period ends, Stripe deletes it: expired, its key revoked
    stripe.renew(stripe_sub["id"])
    [ended] = subscriptions(api, buyer)
    assert ended["status"] == "expired" and ended["keyCount"] == 0
    assert chat(api, key).status_code == 401


def test_card_topup_credits_the_balance_once(api, stripe, buyer) -> None:
    # Given a $50 card top-up paid on the checkout page
    response = api.post("/api/billing/topup", headers=auth(buyer), json={"amount": 50, "method": "stripe"})
    assert response.status_code == 200, response.text
    pay_on_the_page(response.json()["data"]["sessionUrl"])
    status = api.get("/api/billing/status", headers=auth(buyer)).json()["data"]
    assert status["creditBalance"] == "50.00"
    # When Stripe delivers every event again (its retries), then nothing is credited twice
    for event in stripe.events():
        if event["event"]["data"]["object"].get("client_reference_id") == buyer.account_id:
            assert stripe.resend(event["id"])["status"] == 200
    assert api.get("/api/billing/status", headers=auth(buyer)).json()["data"]["creditBalance"] == "50.00"


def test_a_retried_checkout_returns_the_same_session_and_a_new_one_another(api, stripe, buyer) -> None:
    def checkout(idempotency_key: str | None = None) -> str:
        headers = auth(buyer) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
        response = api.post("/api/billing/checkout", headers=headers, json={"planSlug": "pro"})
        assert response.status_code == 200, response.text
        return response.json()["data"]["sessionUrl"]

    def sessions_of_buyer() -> int:
        return sum(1 for s in stripe.sessions() if s.get("client_reference_id") == buyer.account_id)

    # Given a checkout, when the client retries it (its response was lost), then Stripe gives the same session
    first = checkout()
    assert checkout() == first and sessions_of_buyer() == 1
    # And with the client's own Idempotency-Key: the same key is the same session, a new key a new session
    ordered = checkout("order-41")
    assert checkout("order-41") == ordered != first
    assert checkout("order-42") not in (first, ordered)
    assert sessions_of_buyer() == 3


def test_card_topup_below_the_minimum_is_refused(api, buyer) -> None:
    response = api.post("/api/billing/topup", headers=auth(buyer), json={"amount": 9.99, "method": "stripe"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "amount_below_minimum"


def test_a_webhook_not_signed_by_stripe_is_refused_over_http(api, buyer) -> None:
    body = '{"id": "evt_forged", "type": "checkout.session.completed", "created": 1, "data": {"object": {}}}'
    response = api.post(
        "/api/billing/webhook",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=" + "0" * 64},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"


def test_a_lost_renewal_webhook_is_caught_up_from_stripes_api(api, stripe, buyer) -> None:
    """What the expiry job does once Stripe's word is overdue: ask Stripe (the SDK, over HTTP)."""
    from datetime import timedelta

    from llm_platform.core.clock import from_iso
    from llm_platform.data import subscriptions as subscriptions_table
    from llm_platform.domain import stripe_webhooks

    subscription, key, stripe_sub = _subscribed(api, stripe, buyer)
    # Given Stripe renews it while our webhook endpoint is unreachable
    endpoint, stripe.webhook_url = stripe.webhook_url, "http://127.0.0.1:9/unreachable"
    try:
        renewed = stripe.renew(stripe_sub["id"])
    finally:
        stripe.webhook_url = endpoint
    assert all(event["status"] != 200 for event in renewed["events"])
    assert subscriptions(api, buyer)[0]["currentPeriodEnd"] == subscription["currentPeriodEnd"]
    # When the expiry job asks Stripe, an hour after the period end
    stored = subscriptions_table.get(subscription["id"])
    later = from_iso(subscription["currentPeriodEnd"]) + timedelta(hours=1, seconds=1)
    assert stripe_webhooks.reconcile(stored, later) == "applied"
    # Then the subscription has Stripe's new period, and its key works
    [after] = subscriptions(api, buyer)
    new_end = stripe.get(stripe_sub["id"])["items"]["data"][0]["current_period_end"]
    assert after["status"] == "active" and int(from_iso(after["currentPeriodEnd"]).timestamp()) == new_end
    assert chat(api, key).status_code == 200


def test_a_refund_or_dispute_of_a_paid_topup_debits_it_once_and_a_negative_account_is_refused(
    api, local_stack, stripe, buyer
) -> None:
    # Given a $20 card top-up paid on the page and some of it spent through a credit key
    session_url = api.post("/api/billing/topup", headers=auth(buyer), json={"amount": 20, "method": "stripe"}).json()[
        "data"
    ]["sessionUrl"]
    pay_on_the_page(session_url)
    session_id = session_url.rsplit("/", 1)[-1]
    from llm_platform.domain import accounts

    key = api.post("/api/keys/credit", headers=auth(buyer), json={"name": "spender"}).json()["data"]["apiKey"]
    assert chat(api, key).status_code == 200
    spent = 20_000_000 - accounts.get_account(buyer.account_id).credit_balance_micros
    assert spent > 0
    # When Stripe refunds $5 of it (the simulator's Refund), then $5 is debited, once even when redelivered
    refunded = stripe.refund(session_id, 500)
    assert [e["status"] for e in refunded["events"]] == [200]
    for event in refunded["events"]:
        assert stripe.resend(event["id"])["status"] == 200
    assert accounts.get_account(buyer.account_id).credit_balance_micros == 15_000_000 - spent
    # When the rest is disputed (the simulator's Dispute button, over HTTP), then the disputed $15 is debited
    with httpx.Client(base_url=stripe.base_url, timeout=30) as sim:
        disputed = sim.post(f"/sim/sessions/{session_id}/dispute")
        assert disputed.status_code == 200, disputed.text
        assert disputed.json()["dispute"]["amount"] == 1500
        # And the dashboard shows the buttons for paid top-ups
        assert f"/sim/sessions/{session_id}/refund" in sim.get("/sim").text
    balance = accounts.get_account(buyer.account_id).credit_balance_micros
    assert balance == -spent
    # Then the account, negative by the chargeback, is refused on /v1 (402) and its ledger explains it
    refused = chat(api, key)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_quota"
    ledger = api.get("/api/billing/ledger", headers=auth(buyer)).json()["data"]
    assert sorted(e["kind"] for e in ledger if e["kind"] in ("refund", "chargeback", "topup_stripe")) == [
        "chargeback",
        "refund",
        "topup_stripe",
    ]
    # When the dispute is won, then the $15 comes back once
    stripe.dispute(session_id, "won")
    assert accounts.get_account(buyer.account_id).credit_balance_micros == 15_000_000 - spent
