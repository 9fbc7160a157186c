"""Stripe, the payment provider: the one place that talks to it. The SDK is imported on first use
(never by the proxy or the functions that take no payments) and the client is built from secrets read
at run time: the secret key and webhook signing secret live in SSM / Secrets Manager.

Plain dicts in and out, so the domain never sees SDK objects."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from llm_platform import secrets
from llm_platform.config import get_settings

# Seconds a signed webhook stays valid: Stripe's own default; older replays of a captured body are refused.
SIGNATURE_TOLERANCE_SECONDS = 300


class StripeNotConfigured(RuntimeError):
    """No Stripe secret key / webhook secret configured (or it could not be read)."""


class StripeUnavailable(RuntimeError):
    """Stripe did not answer or refused the call; the caller may retry."""


class StripeNotFound(StripeUnavailable):
    """Stripe has no such object."""


class InvalidSignature(ValueError):
    """The webhook body was not signed with this platform's secret, or the signature is too old."""


def _secret(reference: str | None, what: str) -> str:
    if not reference:
        raise StripeNotConfigured(f"{what} is not configured")
    try:
        value = secrets.resolve(reference)
    except Exception as error:  # a missing SSM parameter means "not set up", not a crash
        raise StripeNotConfigured(f"{what} could not be read: {error}") from error
    if not value:
        raise StripeNotConfigured(f"{what} is empty")
    return value


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str | None) -> Any:
    import stripe  # ~190 ms: only the functions that take payments pay for it

    # Well inside the functions' own timeouts (10-20 s): a slow Stripe is a clear 503, not a gateway 504.
    http = stripe.RequestsClient(timeout=(3, 6))
    return stripe.StripeClient(
        api_key, base_addresses={"api": api_base} if api_base else None, max_network_retries=1, http_client=http
    )


def _client() -> Any:
    settings = get_settings()
    # Keyed by the key's value: a rotated key (the secret cache refreshes) gets a new client.
    return _client_for(_secret(settings.stripe_secret_key_secret, "The Stripe secret key"), settings.stripe_api_base)


def _call(operation: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    from stripe import InvalidRequestError, StripeError

    try:
        return operation(*args, **kwargs).to_dict()
    except InvalidRequestError as error:
        if error.code == "resource_missing":
            raise StripeNotFound(str(error)) from error
        raise StripeUnavailable(f"Stripe refused the call: {error}") from error
    except StripeError as error:
        raise StripeUnavailable(f"Stripe refused or did not answer: {error.__class__.__name__}: {error}") from error


def create_checkout_session(params: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
    options = {"idempotency_key": idempotency_key} if idempotency_key else None
    return _call(_client().v1.checkout.sessions.create, params=params, options=options)


def retrieve_subscription(stripe_subscription_id: str) -> dict[str, Any]:
    return _call(_client().v1.subscriptions.retrieve, stripe_subscription_id)


def cancel_at_period_end(stripe_subscription_id: str) -> dict[str, Any]:
    return _call(_client().v1.subscriptions.update, stripe_subscription_id, params={"cancel_at_period_end": True})


def verified_event(payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """The event in ``payload`` if ``signature_header`` signs exactly these bytes with the webhook secret
    within the tolerance; raises InvalidSignature otherwise (and ValueError for a body that is not JSON)."""
    from stripe import SignatureVerificationError, WebhookSignature

    secret = _secret(get_settings().stripe_webhook_secret_secret, "The Stripe webhook secret")
    try:
        WebhookSignature.verify_header(payload, signature_header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except SignatureVerificationError as error:
        raise InvalidSignature(str(error).split(".")[0]) from error
    except UnicodeDecodeError as error:
        raise InvalidSignature("The body is not UTF-8") from error
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("the event is not a JSON object")
    return event
