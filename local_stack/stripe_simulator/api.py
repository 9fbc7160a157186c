"""The simulator's Stripe API over HTTP (``/v1/…``), in Stripe's wire format: Bearer (or Basic) auth with the
API key, form-encoded bodies, idempotent replays by ``Idempotency-Key``, ``expand[]``, Stripe's error bodies
and ``Request-Id``/``Stripe-Version`` headers. The operations themselves are ``StripeSimulator``'s."""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from local_stack.stripe_simulator.forms import STRIPE_API_VERSION, StripeError, check_keys, invalid, parse_params
from local_stack.stripe_simulator.state import ALNUM, Context, StripeSimulator

_IDEMPOTENCY_KEEP = 1000


class StripeApi:
    def __init__(self, simulator: StripeSimulator) -> None:
        self.simulator = simulator
        self._lock = threading.Lock()
        # idempotency key -> (method, path, body) it was first used with, and the answer then
        self._idempotent: dict[str, tuple[tuple[str, str, bytes], int, bytes]] = {}

    async def endpoint(self, request: Request) -> Response:
        self.simulator.remember_base_url(str(request.base_url))
        body = await request.body()
        status, payload, headers = await run_in_threadpool(
            self.handle, request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        request_id = "req_" + "".join(secrets.choice(ALNUM) for _ in range(14))
        response_headers = {"Request-Id": request_id, "Stripe-Version": STRIPE_API_VERSION}
        idempotency_key = headers.get("idempotency-key")
        try:
            self._authenticate(headers.get("authorization"))
            cache_key = f"{self.simulator.api_key}:{idempotency_key}" if idempotency_key and method != "GET" else None
            fingerprint = (method, path, body)
            if cache_key:
                with self._lock:
                    cached = self._idempotent.get(cache_key)
                if cached is not None:
                    if cached[0] != fingerprint:
                        raise StripeError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                            "execute a different request.",
                            type="idempotency_error",
                        )
                    response_headers.update({"Idempotent-Replayed": "true", "Idempotency-Key": idempotency_key})
                    return cached[1], cached[2], response_headers
            if method == "POST":
                content_type = headers.get("content-type", "")
                if body and not content_type.startswith("application/x-www-form-urlencoded"):
                    raise StripeError(
                        400, "Invalid request: the body must be form-encoded (application/x-www-form-urlencoded)"
                    )
                pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(
                    body.decode("utf-8"), keep_blank_values=True
                )
            else:
                pairs = parse_qsl(query, keep_blank_values=True)
            params = parse_params(pairs)
            context = Context(request_id, idempotency_key)
            result = self._route(method, path, params, context)
            expand = params.get("expand")
            if expand:
                if not isinstance(expand, list):
                    raise invalid("expand", "Invalid array: expand must be an array")
                result = self.simulator.expand(result, expand)
            payload = json.dumps(result, indent=2).encode("utf-8")
            if cache_key:
                response_headers["Idempotency-Key"] = idempotency_key or ""
                with self._lock:
                    self._idempotent[cache_key] = (fingerprint, 200, payload)
                    while len(self._idempotent) > _IDEMPOTENCY_KEEP:
                        self._idempotent.pop(next(iter(self._idempotent)))
            return 200, payload, response_headers
        except StripeError as error:
            return error.status, json.dumps(error.body(request_id), indent=2).encode("utf-8"), response_headers

    def _authenticate(self, authorization: str | None) -> None:
        key = None
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                key = credentials.strip()
            elif scheme.lower() == "basic":  # curl -u sk_test_…:
                import base64

                try:
                    key = base64.b64decode(credentials).decode().partition(":")[0]
                except ValueError:
                    key = ""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#"
                "authentication for details, or we can help at https://support.stripe.com/.",
            )
        if not hmac.compare_digest(key.encode(), self.simulator.api_key.encode()):
            masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "*" * len(key)
            raise StripeError(401, f"Invalid API Key provided: {masked}")

    _RESOURCES = {
        "checkout/sessions": "checkout.session",
        "subscriptions": "subscription",
        "subscription_items": "subscription_item",
        "invoices": "invoice",
        "customers": "customer",
        "payment_intents": "payment_intent",
        "prices": "price",
        "products": "product",
        "events": "event",
    }

    def _route(self, method: str, path: str, params: dict[str, Any], context: Context) -> dict[str, Any]:
        parts = path.removeprefix("/v1/").strip("/").split("/")
        resource = "/".join(parts[:2]) if parts[0] == "checkout" else parts[0]
        rest = parts[2:] if parts[0] == "checkout" else parts[1:]
        if method == "POST" and resource == "checkout/sessions" and not rest:
            return self.simulator.create_checkout_session(params, context)
        if resource == "checkout/sessions" and len(rest) == 2:
            if method == "GET" and rest[1] == "line_items":
                check_keys(params, ("expand", "limit", "starting_after", "ending_before"))
                return self.simulator.session_line_items(rest[0])
            if method == "POST" and rest[1] == "expire":
                check_keys(params, ("expand",))
                return self.simulator.expire_session(rest[0], context)
        if method == "POST" and resource == "prices" and not rest:
            return self.simulator.create_price(params)
        if method == "POST" and resource == "products" and not rest:
            return self.simulator.create_product(params)
        if resource == "subscriptions" and len(rest) == 1:
            if method == "POST":
                return self.simulator.update_subscription(rest[0], params, context)
            if method == "DELETE":
                return self.simulator.cancel_subscription(rest[0], params, context)[0]
        if method == "GET" and resource in self._RESOURCES and len(rest) == 1:
            check_keys(params, ("expand",))
            return self.simulator.lookup(self._RESOURCES[resource], rest[0])
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
            "https://support.stripe.com/.",
        )
