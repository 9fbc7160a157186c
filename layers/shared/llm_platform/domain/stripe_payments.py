"""Paying through Stripe, the customer-facing half: Checkout Sessions for a plan (subscription mode)
and for a credit top-up (payment mode), and cancelling a Stripe-paid subscription at period end.
What Stripe reports back arrives as webhooks (``stripe_webhooks``): nothing is granted here."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from typing import Any

from llm_platform.config import get_settings
from llm_platform.core.entities import Subscription
from llm_platform.data import stripe_api
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import WriteRefused
from llm_platform.domain.accounts import Caller
from llm_platform.domain.errors import BadRequest, Conflict, ServiceUnavailable
from llm_platform.domain.money import format_usd, usd_to_micros
from llm_platform.domain.plans import Plan, catalog

MICROS_PER_CENT = 10_000
MIN_TOPUP_MICROS = 10 * 1_000_000  # $10, as the public docs say
MAX_TOPUP_MICROS = 999_999_99 * MICROS_PER_CENT  # Stripe's largest USD charge, $999,999.99

# Metadata on every session and subscription we create: the webhook reads the account and plan back.
PURPOSE_SUBSCRIPTION = "subscription"
PURPOSE_TOPUP = "topup"

# A session request is sent to Stripe with an idempotency key, so a client's retry of the same request gets the
# same session back instead of a second one it could pay too. The key is the client's own Idempotency-Key
# header when it sends one; else the same account asking for the same thing within this many seconds.
IDEMPOTENCY_WINDOW_SECONDS = 60
MAX_CLIENT_IDEMPOTENCY_KEY = 255  # Stripe's own limit on the header


def session_idempotency_key(account_id: str, request: str, client_key: str | None, now: float | None = None) -> str:
    """Stripe's idempotency key for ``request`` (purpose and what is bought) of ``account_id``: one per client
    key, or per account, request and window without one. Hashed, so nothing the client sends reaches Stripe."""
    if client_key is not None:
        if not client_key.strip() or len(client_key) > MAX_CLIENT_IDEMPOTENCY_KEY:
            raise BadRequest(
                f"Idempotency-Key must be 1-{MAX_CLIENT_IDEMPOTENCY_KEY} characters.", code="invalid_idempotency_key"
            )
        scope = f"client:{client_key}"
    else:
        scope = f"window:{int(time.time() if now is None else now) // IDEMPOTENCY_WINDOW_SECONDS}"
    digest = hashlib.sha256(f"{account_id}\n{request}\n{scope}".encode()).hexdigest()
    return f"session-{digest[:48]}"


def stripe_subscription_local_id(stripe_subscription_id: str) -> str:
    """Our id of a Stripe subscription, derived from Stripe's: every event about it, in any order and
    in parallel, lands on the same item without a lookup table."""
    return "sub_" + hashlib.sha256(f"stripe:{stripe_subscription_id}".encode()).hexdigest()[:32]


def start_checkout(
    caller: Caller, plan_slug: str, dashboard_url: str | None = None, client_idempotency_key: str | None = None
) -> str:
    """A Checkout Session in subscription mode for ``plan_slug``; its URL. The subscription starts when
    Stripe's webhook says it is paid. Checkout returns to the configured URLs, else to ``dashboard_url``. A
    retry (same Idempotency-Key, or within the window) gets the same session."""
    plan = catalog().plan(plan_slug)
    metadata = {"accountId": caller.account_id, "planSlug": plan.slug}
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [_plan_line_item(plan)],
        "client_reference_id": caller.account_id,
        "metadata": {**metadata, "purpose": PURPOSE_SUBSCRIPTION},
        # Copied onto the subscription and each of its invoices, so renewals find the account too.
        "subscription_data": {"metadata": metadata},
        **_return_urls(dashboard_url),
    }
    key = session_idempotency_key(caller.account_id, f"{PURPOSE_SUBSCRIPTION}:{plan.slug}", client_idempotency_key)
    return _create_session(params, key)["url"]


def start_topup(
    caller: Caller, amount: Decimal, dashboard_url: str | None = None, client_idempotency_key: str | None = None
) -> str:
    """A Checkout Session in payment mode for ``amount`` USD of credit; its URL (returns as start_checkout,
    the same one for a retry)."""
    micros = usd_to_micros(amount)
    if micros < MIN_TOPUP_MICROS:
        raise BadRequest(f"The minimum card top-up is ${format_usd(MIN_TOPUP_MICROS)}.", code="amount_below_minimum")
    if micros > MAX_TOPUP_MICROS:
        raise BadRequest(f"The largest card top-up is ${format_usd(MAX_TOPUP_MICROS)}.", code="amount_too_large")
    if micros % MICROS_PER_CENT:
        raise BadRequest("Card top-ups are in whole cents.", code="invalid_amount")
    metadata = {"accountId": caller.account_id, "purpose": PURPOSE_TOPUP, "creditMicros": str(micros)}
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": micros // MICROS_PER_CENT,
                    "product_data": {"name": f"Credit top-up (${format_usd(micros)})"},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": caller.account_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        **_return_urls(dashboard_url),
    }
    key = session_idempotency_key(caller.account_id, f"{PURPOSE_TOPUP}:{micros}", client_idempotency_key)
    return _create_session(params, key)["url"]


def cancel_at_period_end(caller: Caller, subscription: Subscription) -> Subscription:
    """Tell Stripe to stop renewing, then mark it here at once (Stripe's webhook confirms it later)."""
    _stripe_call(stripe_api.cancel_at_period_end, subscription.stripe_subscription_id)
    try:
        return subscriptions_table.cancel_at_period_end(
            subscription.subscription_id, caller.account_id, stripe_observed_at=int(time.time())
        )
    except WriteRefused as refused:
        # Stripe's own webhook about this cancellation may have landed first: then it is done.
        current = subscriptions_table.get(subscription.subscription_id)
        if current is not None and current.cancel_at_period_end:
            return current
        raise Conflict(f"Subscription {subscription.subscription_id} changed; try again.", code="conflict") from refused


def _plan_line_item(plan: Plan) -> dict[str, Any]:
    if plan.stripe_price_id:
        return {"price": plan.stripe_price_id, "quantity": 1}
    if plan.price_micros % MICROS_PER_CENT:
        raise ServiceUnavailable(f"Plan {plan.slug} has a price Stripe cannot charge.", code="plan_misconfigured")
    # No Stripe price set up for the plan: price it inline from plans.json, which stays the one source.
    return {
        "price_data": {
            "currency": "usd",
            "unit_amount": plan.price_micros // MICROS_PER_CENT,
            "recurring": {"interval": "month", "interval_count": plan.interval_months},
            "product_data": {"name": f"{plan.name} plan"},
        },
        "quantity": 1,
    }


def _return_urls(dashboard_url: str | None) -> dict[str, str]:
    """The operator's CheckoutSuccessUrl/CheckoutCancelUrl, else the dashboard's billing page, which reads
    ``?checkout=`` (Stripe fills in ``{CHECKOUT_SESSION_ID}``)."""
    settings = get_settings()
    success = settings.checkout_success_url
    cancel = settings.checkout_cancel_url
    if dashboard_url:
        success = success or dashboard_url + "?checkout=success&session_id={CHECKOUT_SESSION_ID}#/billing"
        cancel = cancel or dashboard_url + "?checkout=cancelled#/billing"
    if not success:
        raise ServiceUnavailable("Card payments are not configured on this platform.", code="stripe_not_configured")
    return {"success_url": success, "cancel_url": cancel or success}


def _create_session(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    session = _stripe_call(stripe_api.create_checkout_session, params, idempotency_key)
    if not session.get("url"):
        raise ServiceUnavailable("Stripe returned a session without a URL.", code="stripe_unavailable")
    return session


def _stripe_call(operation: Any, *args: Any) -> dict[str, Any]:
    try:
        return operation(*args)
    except stripe_api.StripeNotConfigured as error:
        raise ServiceUnavailable(
            "Card payments are not configured on this platform.", code="stripe_not_configured"
        ) from error
    except stripe_api.StripeUnavailable as error:
        raise ServiceUnavailable("Stripe is not reachable right now; try again.", code="stripe_unavailable") from error
