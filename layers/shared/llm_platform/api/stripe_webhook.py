"""The Stripe webhook endpoint: no management key (Stripe's signature is the authentication), the raw
body exactly as sent (API Gateway may hand it over base64-encoded), errors in the platform's format."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from llm_platform.api.app import error_body, header, raw_body, status_for
from llm_platform.domain import stripe_webhooks
from llm_platform.domain.errors import DomainError, PayloadTooLarge
from llm_platform.observability import logger

# Stripe's events are a few KiB; an invoice with many lines stays far below this.
MAX_WEBHOOK_BYTES = 512 * 1024


def _response(status: HTTPStatus, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def handle(event: Mapping[str, Any]) -> dict[str, Any]:
    """API Gateway proxy event in, proxy response out. A 2xx tells Stripe the event is done (applied,
    a repeat, or nothing for us); 4xx: refused and nothing changed; 5xx: Stripe delivers it again."""
    try:
        payload = raw_body(event)
        if len(payload) > MAX_WEBHOOK_BYTES:
            raise PayloadTooLarge(f"Webhook body is larger than {MAX_WEBHOOK_BYTES} bytes.")
        stripe_event, outcome = stripe_webhooks.handle(payload, header(event, "stripe-signature"))
    except DomainError as error:
        status = status_for(error)
        logger.warning("stripe webhook refused", extra={"status": status.value, "code": error.code})
        return _response(status, error_body(error.code, error.message))
    except Exception:
        # DynamoDB or Stripe's API failed: nothing was recorded as done, so Stripe delivers it again.
        logger.exception("stripe webhook failed")
        return _response(
            HTTPStatus.INTERNAL_SERVER_ERROR, error_body("internal_error", "Not applied; deliver it again.")
        )
    logger.info(
        "stripe webhook handled",
        extra={"eventId": stripe_event.id, "eventType": stripe_event.type, "outcome": outcome.value},
    )
    return _response(HTTPStatus.OK, {"data": {"received": True, "outcome": outcome.value}})
