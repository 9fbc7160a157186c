"""Checkout, card top-ups and cancelling Stripe-paid subscriptions, with Stripe's API replaced by a
recorder (the real SDK against the local Stripe simulator: tests/integration/test_stripe_http.py)."""

from __future__ import annotations

import pytest

from llm_platform.data import stripe_api
from llm_platform.domain.stripe_payments import stripe_subscription_local_id
from tests.support.stripe_events import sample


@pytest.fixture
def stripe_calls(tables, monkeypatch):
    """Stripe configured; each API call is recorded and answered like Stripe would."""
    monkeypatch.setenv("STRIPE_SECRET_KEY_SECRET", "env:UNIT_STRIPE_SECRET_KEY")
    monkeypatch.setenv("UNIT_STRIPE_SECRET_KEY", "sk_test_unit")
    monkeypatch.setenv("CHECKOUT_SUCCESS_URL", "https://shop.example/ok?session={CHECKOUT_SESSION_ID}")
    monkeypatch.setenv("CHECKOUT_CANCEL_URL", "https://shop.example/back")
    from llm_platform.config import get_settings

    get_settings.cache_clear()
    calls: list[tuple[str, object]] = []

    def create(params, idempotency_key=None):
        calls.append(("checkout", params))
        return {"id": "cs_test_1", "url": "https://checkout.stripe.com/c/pay/cs_test_1"}

    def cancel(stripe_id):
        calls.append(("cancel", stripe_id))
        return {"id": stripe_id, "cancel_at_period_end": True}

    monkeypatch.setattr(stripe_api, "create_checkout_session", create)
    monkeypatch.setattr(stripe_api, "cancel_at_period_end", cancel)
    yield calls
    get_settings.cache_clear()


def test_checkout_creates_a_subscription_session_tied_to_the_account(invoke, account, stripe_calls) -> None:
    status, body = invoke(
        "checkout", "POST", "/api/billing/checkout", key=account.management_key, body={"planSlug": "pro"}
    )
    assert status == 200
    assert body == {"data": {"sessionUrl": "https://checkout.stripe.com/c/pay/cs_test_1"}}
    [(kind, params)] = stripe_calls
    assert kind == "checkout" and params["mode"] == "subscription"
    assert params["client_reference_id"] == account.account_id
    assert params["subscription_data"]["metadata"] == {"accountId": account.account_id, "planSlug": "pro"}
    # No Stripe price id in plans.json: the plan's own price, monthly, in cents
    price = params["line_items"][0]["price_data"]
    assert (price["unit_amount"], price["currency"], price["recurring"]["interval"]) == (6000, "usd", "month")
    assert params["success_url"] == "https://shop.example/ok?session={CHECKOUT_SESSION_ID}"


def test_checkout_uses_the_plans_stripe_price_when_set(invoke, account, stripe_calls, monkeypatch) -> None:
    from llm_platform.domain import plans

    catalog = plans.catalog()
    priced = catalog.model_copy(
        update={"plans": tuple(p.model_copy(update={"stripe_price_id": f"price_{p.slug}"}) for p in catalog.plans)}
    )
    monkeypatch.setattr(plans, "catalog", lambda: priced)
    import llm_platform.domain.stripe_payments as module

    monkeypatch.setattr(module, "catalog", lambda: priced)
    invoke("checkout", "POST", "/api/billing/checkout", key=account.management_key, body={"planSlug": "standard"})
    assert stripe_calls[0][1]["line_items"] == [{"price": "price_standard", "quantity": 1}]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"planSlug": "platinum"}, 400, "unknown_plan"),
        ({}, 422, "validation_error"),
        ({"planSlug": "pro", "extra": 1}, 422, "validation_error"),
    ],
)
def test_bad_checkout_requests_are_refused_without_calling_stripe(
    invoke, account, stripe_calls, body, status, code
) -> None:
    got_status, got = invoke("checkout", "POST", "/api/billing/checkout", key=account.management_key, body=body)
    assert (got_status, got["error"]["code"]) == (status, code)
    assert stripe_calls == []


def test_checkout_without_stripe_configured_is_503(invoke, account, tables) -> None:
    status, body = invoke(
        "checkout", "POST", "/api/billing/checkout", key=account.management_key, body={"planSlug": "pro"}
    )
    assert (status, body["error"]["code"]) == (503, "stripe_not_configured")


def test_checkout_needs_a_management_key(invoke, stripe_calls) -> None:
    status, body = invoke("checkout", "POST", "/api/billing/checkout", body={"planSlug": "pro"})
    assert status == 401 and stripe_calls == []


def test_a_stripe_outage_is_503_not_500(invoke, account, stripe_calls, monkeypatch) -> None:
    def down(params, idempotency_key=None):
        raise stripe_api.StripeUnavailable("connection refused")

    monkeypatch.setattr(stripe_api, "create_checkout_session", down)
    status, body = invoke(
        "checkout", "POST", "/api/billing/checkout", key=account.management_key, body={"planSlug": "pro"}
    )
    assert (status, body["error"]["code"]) == (503, "stripe_unavailable")


def test_card_topup_is_a_payment_session_for_the_exact_amount(invoke, account, stripe_calls) -> None:
    status, body = invoke(
        "topup", "POST", "/api/billing/topup", key=account.management_key, body={"amount": "12.34", "method": "stripe"}
    )
    assert status == 200 and body["data"]["sessionUrl"].startswith("https://checkout.stripe.com/")
    [(_, params)] = stripe_calls
    assert params["mode"] == "payment" and params["line_items"][0]["price_data"]["unit_amount"] == 1234
    assert params["metadata"] == {"accountId": account.account_id, "purpose": "topup", "creditMicros": "12340000"}


@pytest.mark.parametrize(
    ("amount", "status", "code"),
    [
        (9.99, 400, "amount_below_minimum"),
        (10.001, 400, "invalid_amount"),
        (1_000_000, 400, "amount_too_large"),
        (0, 422, "validation_error"),
        (-10, 422, "validation_error"),
        ("ten", 422, "validation_error"),
        (True, 422, "validation_error"),
    ],
)
def test_bad_card_topup_amounts_are_refused_without_calling_stripe(
    invoke, account, stripe_calls, amount, status, code
) -> None:
    got_status, body = invoke(
        "topup", "POST", "/api/billing/topup", key=account.management_key, body={"amount": amount, "method": "stripe"}
    )
    assert (got_status, body["error"]["code"]) == (status, code)
    assert stripe_calls == []


def test_the_minimum_card_topup_is_accepted(invoke, account, stripe_calls) -> None:
    body = {"amount": 10, "method": "stripe"}
    assert invoke("topup", "POST", "/api/billing/topup", key=account.management_key, body=body)[0] == 200


def cancel(invoke, account, subscription_id: str) -> tuple[int, dict]:
    return invoke(
        "cancel_subscription",
        "POST",
        "/api/billing/cancel",
        key=account.management_key,
        body={"subscriptionId": subscription_id},
    )


@pytest.fixture
def stripe_subscription_of(tables, monkeypatch):
    """An active Stripe-paid subscription of ``account``, as its invoice.paid webhook leaves it."""
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_SECRET", "env:UNIT_STRIPE_WEBHOOK_SECRET")
    monkeypatch.setenv("UNIT_STRIPE_WEBHOOK_SECRET", "whsec_x")
    from llm_platform.domain import stripe_webhooks

    def make(account):
        event = stripe_webhooks.Event.model_validate(sample("invoice.paid", account_id=account.account_id))
        stripe_webhooks.HANDLERS[event.type](event)
        return stripe_subscription_local_id("sub_1SampleStripeSub")

    return make


def test_cancel_of_a_stripe_subscription_goes_through_stripe(
    invoke, account, stripe_calls, stripe_subscription_of
) -> None:
    subscription_id = stripe_subscription_of(account)
    status, body = cancel(invoke, account, subscription_id)
    assert status == 200 and body["data"]["cancelAtPeriodEnd"] is True
    assert stripe_calls == [("cancel", "sub_1SampleStripeSub")]
    # A second cancel is a conflict and does not call Stripe again
    status, body = cancel(invoke, account, subscription_id)
    assert (status, body["error"]["code"]) == (409, "already_cancelled") and len(stripe_calls) == 1


def test_cancel_when_stripe_is_down_is_503_and_changes_nothing(
    invoke, account, stripe_calls, stripe_subscription_of, monkeypatch
) -> None:
    subscription_id = stripe_subscription_of(account)

    def down(stripe_id):
        raise stripe_api.StripeUnavailable("timeout")

    monkeypatch.setattr(stripe_api, "cancel_at_period_end", down)
    status, body = cancel(invoke, account, subscription_id)
    assert (status, body["error"]["code"]) == (503, "stripe_unavailable")
    from llm_platform.data import subscriptions as subscriptions_table

    assert subscriptions_table.get(subscription_id).cancel_at_period_end is False


def test_a_past_due_stripe_subscription_can_still_be_cancelled(
    invoke, account, stripe_calls, stripe_subscription_of
) -> None:
    # Given the renewal's charge failed (past due): the customer wants Stripe to stop retrying
    subscription_id = stripe_subscription_of(account)
    from llm_platform.domain import stripe_webhooks

    failed = sample("invoice.payment_failed", account_id=account.account_id, created=10**10 // 5)
    stripe_webhooks.HANDLERS[failed["type"]](stripe_webhooks.Event.model_validate(failed))
    status, body = cancel(invoke, account, subscription_id)
    assert status == 200 and body["data"]["cancelAtPeriodEnd"] is True
    assert stripe_calls == [("cancel", "sub_1SampleStripeSub")]


def test_a_cancel_overtaken_by_stripes_own_webhook_still_succeeds(
    invoke, account, stripe_calls, stripe_subscription_of, monkeypatch
) -> None:
    # Given Stripe's customer.subscription.updated (cancel flag set) lands before the local update
    subscription_id = stripe_subscription_of(account)
    from llm_platform.domain import stripe_webhooks

    def cancel_and_deliver_the_webhook(stripe_id):
        update = sample(
            "customer.subscription.updated.cancel_at_period_end", account_id=account.account_id, created=10**10 // 5
        )
        stripe_webhooks.HANDLERS[update["type"]](stripe_webhooks.Event.model_validate(update))
        return {"id": stripe_id, "cancel_at_period_end": True}

    monkeypatch.setattr(stripe_api, "cancel_at_period_end", cancel_and_deliver_the_webhook)
    # When the customer's cancel finishes, then it reports success, not a conflict
    status, body = cancel(invoke, account, subscription_id)
    assert status == 200 and body["data"]["cancelAtPeriodEnd"] is True


def test_without_configured_return_urls_checkout_returns_to_the_dashboard_of_this_api(
    invoke, account, stripe_calls, monkeypatch
) -> None:
    # Given an operator who left CheckoutSuccessUrl/CheckoutCancelUrl empty (the template's default)
    from llm_platform.config import get_settings

    monkeypatch.delenv("CHECKOUT_SUCCESS_URL")
    monkeypatch.delenv("CHECKOUT_CANCEL_URL")
    get_settings.cache_clear()
    headers = {
        "Content-Type": "application/json",
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "X-Forwarded-Proto": "https",
    }
    # When a plan and a top-up are bought on the prod stage
    for function, path, body in (
        ("checkout", "/api/billing/checkout", {"planSlug": "pro"}),
        ("topup", "/api/billing/topup", {"amount": 20, "method": "stripe"}),
    ):
        status, _ = invoke(function, "POST", path, key=account.management_key, body=body, headers=headers)
        assert status == 200, function
    # Then Checkout sends the customer back to the dashboard served by this API, under its stage
    dashboard = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"
    for _, params in stripe_calls:
        assert params["success_url"] == dashboard + "?checkout=success&session_id={CHECKOUT_SESSION_ID}#/billing"
        assert params["cancel_url"] == dashboard + "?checkout=cancelled#/billing"


def test_with_a_dashboard_on_its_own_domain_checkout_returns_there(invoke, account, stripe_calls, monkeypatch) -> None:
    from llm_platform.config import get_settings

    monkeypatch.delenv("CHECKOUT_SUCCESS_URL")
    monkeypatch.delenv("CHECKOUT_CANCEL_URL")
    monkeypatch.setenv("DASHBOARD_ORIGIN", "https://console.example.com")
    get_settings.cache_clear()
    status, _ = invoke(
        "checkout", "POST", "/api/billing/checkout", key=account.management_key, body={"planSlug": "pro"}
    )
    assert status == 200
    [(_, params)] = stripe_calls
    assert params["success_url"].startswith("https://console.example.com/?checkout=success&session_id=")


@pytest.fixture
def idempotency_keys(stripe_calls, monkeypatch):
    """The idempotency key of each session request sent to Stripe."""
    keys: list[str | None] = []

    def create(params, idempotency_key=None):
        keys.append(idempotency_key)
        return {"id": "cs_test_1", "url": "https://checkout.stripe.com/c/pay/cs_test_1"}

    monkeypatch.setattr(stripe_api, "create_checkout_session", create)
    return keys


def _session_request(invoke, account, path: str, body: dict, idempotency_key: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    function = path.rsplit("/", 1)[-1]
    return invoke(function, "POST", path, key=account.management_key, body=body, headers=headers)[0]


def test_a_retried_session_request_sends_stripe_the_same_idempotency_key(invoke, account, idempotency_keys) -> None:
    # Given the same checkout and the same top-up, each asked for twice in a row (a client's retry)
    requests = [
        ("/api/billing/checkout", {"planSlug": "pro"}),
        ("/api/billing/topup", {"amount": 20, "method": "stripe"}),
    ]
    for path, body in requests:
        assert _session_request(invoke, account, path, body) == 200
        assert _session_request(invoke, account, path, body) == 200
    # Then each pair shares its key (Stripe answers the retry with the same session), the two differ
    checkout_first, checkout_retry, topup_first, topup_retry = idempotency_keys
    assert checkout_first == checkout_retry and topup_first == topup_retry
    assert checkout_first != topup_first and checkout_first.startswith("session-")


def test_a_different_request_or_account_gets_another_idempotency_key(invoke, account, idempotency_keys) -> None:
    from llm_platform.domain.accounts import create_account

    other = create_account("other")
    topup = "/api/billing/topup"
    _session_request(invoke, account, topup, {"amount": 20, "method": "stripe"})
    _session_request(invoke, account, topup, {"amount": 21, "method": "stripe"})  # another amount
    _session_request(invoke, other, topup, {"amount": 20, "method": "stripe"})  # another account
    _session_request(invoke, account, "/api/billing/checkout", {"planSlug": "standard"})  # another plan
    assert len(set(idempotency_keys)) == 4


def test_the_clients_idempotency_key_decides_when_it_sends_one(invoke, account, idempotency_keys) -> None:
    checkout = "/api/billing/checkout"
    _session_request(invoke, account, checkout, {"planSlug": "pro"}, idempotency_key="order-1")
    _session_request(invoke, account, checkout, {"planSlug": "pro"}, idempotency_key="order-1")
    _session_request(invoke, account, checkout, {"planSlug": "pro"}, idempotency_key="order-2")
    first, retry, second = idempotency_keys
    assert first == retry != second
    assert "order-1" not in first  # hashed: nothing the client sends reaches Stripe as is


def test_a_session_request_without_a_client_key_is_a_new_one_after_the_window() -> None:
    from llm_platform.domain.stripe_payments import IDEMPOTENCY_WINDOW_SECONDS, session_idempotency_key

    start = 1_800_000_000 // IDEMPOTENCY_WINDOW_SECONDS * IDEMPOTENCY_WINDOW_SECONDS
    same = session_idempotency_key("acct_1", "topup:20000000", None, now=start + IDEMPOTENCY_WINDOW_SECONDS - 1)
    assert session_idempotency_key("acct_1", "topup:20000000", None, now=start) == same
    later = session_idempotency_key("acct_1", "topup:20000000", None, now=start + IDEMPOTENCY_WINDOW_SECONDS)
    assert later != same


@pytest.mark.parametrize("bad", ["", "   ", "x" * 256])
def test_an_unusable_idempotency_key_is_400_and_nothing_is_asked_of_stripe(
    invoke, account, idempotency_keys, bad
) -> None:
    status = _session_request(invoke, account, "/api/billing/checkout", {"planSlug": "pro"}, idempotency_key=bad)
    assert status == 400 and idempotency_keys == []
