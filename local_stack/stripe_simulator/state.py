"""The simulator's state: every Stripe object it holds (sessions, subscriptions, invoices, payment intents,
charges, customers, prices, products, events), the API operations that change them, the test controls
(pay, renew, fail a payment, refund, dispute, …) and the events each change emits, in order."""

from __future__ import annotations

import calendar
import copy
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_stack.stripe_simulator.delivery import (
    EventRecord,
    Job,
    WebhookDeliveries,
    delivery_summary,
    wait_for_deliveries,
)
from local_stack.stripe_simulator.forms import (
    STRIPE_API_VERSION,
    StripeError,
    as_bool,
    as_dict,
    as_int,
    as_metadata,
    as_str,
    as_url,
    check_keys,
    diff,
    invalid,
    missing,
    no_such,
    param_name,
)

SESSION_LIFETIME_SECONDS = 24 * 3600
ACCOUNT_NAME = "Local Stripe simulator"
ALNUM = string.ascii_letters + string.digits
_INTERVALS = ("day", "week", "month", "year")


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: the prefix and random alphanumerics (test-mode ids start with "1" after it)."""
    return prefix + "1" + "".join(secrets.choice(ALNUM) for _ in range(length - 1))


def format_amount(amount: int, currency: str) -> str:
    if currency.lower() == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def add_interval(anchor: int, interval: str, count: int, periods: int = 1) -> int:
    """`anchor` moved by `periods` billing periods, as Stripe bills: months keep the anchor's day of the
    month and clamp to the month's end (Jan 31 -> Feb 28/29 -> Mar 31), in UTC."""
    if interval == "day":
        return anchor + 86_400 * count * periods
    if interval == "week":
        return anchor + 7 * 86_400 * count * periods
    start = datetime.fromtimestamp(anchor, UTC)
    years, month0 = divmod(start.month - 1 + count * periods * (12 if interval == "year" else 1), 12)
    year, month = start.year + years, month0 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


@dataclass
class _SessionState:
    line_items: list[dict[str, Any]]  # {"price": price object, "quantity": int}
    subscription_metadata: dict[str, str]
    subscription_description: str | None
    payment_intent_metadata: dict[str, str]
    payment_intent_description: str | None


@dataclass
class _SubscriptionState:
    anchor: int
    interval: str
    interval_count: int
    cycle: int = 0  # billing periods elapsed since the anchor


@dataclass
class Context:
    request_id: str | None = None
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        return {"id": self.request_id, "idempotency_key": self.idempotency_key}


class StripeSimulator:
    """The simulator's objects, the operations of its API and its test controls, and the events they
    cause. Thread-safe: state under one lock. Served over HTTP by ``server.StripeSimulatorServer``.

    `webhook_url` may be set after construction; `base_url` (this server's URL, used for checkout page
    URLs) is set by `StripeSimulatorServer`, and otherwise taken from the first request's Host.
    """

    def __init__(
        self, api_key: str, webhook_secret: str, webhook_url: str | None = None, base_url: str | None = None
    ) -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.webhook_url = webhook_url
        self.base_url = base_url
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, Any]] = {}  # every object by id
        self._sessions: dict[str, _SessionState] = {}
        self._subscriptions: dict[str, _SubscriptionState] = {}
        self._events: dict[str, EventRecord] = {}  # in creation order
        self._invoice_numbers = 0
        self._invoice_prefix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
        # One worker delivers every event, in order (delivery.py).
        self._deliveries = WebhookDeliveries(lambda: (self.webhook_url, self.webhook_secret), self._lock)

    def close(self, timeout: float = 10.0) -> None:
        """Stops the delivery worker (after the deliveries already queued)."""
        self._deliveries.close(timeout)

    # ----------------------------------------------------------------------------------------- queries

    def get(self, object_id: str) -> dict[str, Any]:
        """A copy of any object by id (KeyError if unknown)."""
        with self._lock:
            return copy.deepcopy(self._objects[object_id])

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._objects[sid]) for sid in self._sessions]

    def subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._objects[sid]) for sid in self._subscriptions]

    def events(self, type: str | None = None) -> list[dict[str, Any]]:  # noqa: A002 - Stripe's word
        """Every event so far (oldest first), with its deliveries: {"id", "type", "deliveries", "event"}."""
        with self._lock:
            return [
                copy.deepcopy(record.to_json())
                for record in self._events.values()
                if type is None or record.event["type"] == type
            ]

    # ---------------------------------------------------------------------------------- webhook delivery

    def session(self, session_id: str) -> dict[str, Any] | None:
        """A copy of a checkout session, or None if there is none by that id."""
        with self._lock:
            return copy.deepcopy(self._objects[session_id]) if session_id in self._sessions else None

    def checkout_lines(
        self, session_id: str
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any], int]], dict[str, Any] | None] | None:
        """A checkout session, its lines as (product name, price, quantity) and its first price's
        `recurring`, for its page; None if there is no session by that id."""
        with self._lock:
            if session_id not in self._sessions:
                return None
            session = copy.deepcopy(self._objects[session_id])
            lines = []
            for item in self._sessions[session_id].line_items:
                price, quantity = item["price"], item["quantity"]
                name = self._objects.get(price["product"], {}).get("name", price["product"])
                lines.append((name, copy.deepcopy(price), quantity))
            recurring = copy.deepcopy(self._sessions[session_id].line_items[0]["price"]["recurring"])
        return session, lines, recurring

    def lookup(self, kind: str, object_id: str) -> dict[str, Any]:
        """A copy of the object `object_id` when it is a `kind` (GET /v1/<resource>/<id>); else Stripe's 404."""
        with self._lock:
            obj = self._objects.get(object_id)
            if obj is None or obj.get("object") != kind:
                raise no_such(kind, object_id, "session" if kind == "checkout.session" else "id")
            return copy.deepcopy(obj)

    def expand(self, obj: dict[str, Any], paths: list[Any]) -> dict[str, Any]:
        """A copy of `obj` with the ids at `paths` (`expand[]`, dotted) replaced by the objects they name."""
        with self._lock:
            obj = copy.deepcopy(obj)
            for path in paths:
                if not isinstance(path, str) or not path:
                    raise invalid("expand", "Invalid expand: expected a list of strings")
                self._expand_path(obj, path.split("."), path)
            return obj

    def _expand_path(self, node: Any, parts: list[str], path: str) -> None:
        if isinstance(node, list):
            for element in node:
                self._expand_path(element, parts, path)
            return
        if not isinstance(node, dict):
            return
        key = parts[0]
        if key == "line_items" and node.get("object") == "checkout.session":
            node[key] = self.session_line_items(node["id"])
        elif key not in node:
            raise invalid("expand", f"This property cannot be expanded ({path}).")
        elif isinstance(node[key], str):
            target = self._objects.get(node[key])
            if target is None:
                raise invalid("expand", f"This property cannot be expanded ({path}).")
            node[key] = copy.deepcopy(target)
        if len(parts) > 1:
            self._expand_path(node[key], parts[1:], path)

    def remember_base_url(self, url: str) -> None:
        """This server's URL as a request reached it, unless it is known already (checkout page URLs)."""
        if self.base_url is None:
            self.base_url = url.rstrip("/")

    # ---------------------------------------------------------------------------------- webhook delivery

    def drain(self, timeout: float = 10.0) -> bool:
        """Blocks until every queued delivery is done; False if that takes longer than `timeout` seconds."""
        return self._deliveries.drain(timeout)

    def resend(self, event_id: str) -> dict[str, Any]:
        """Delivers an event again (same body, fresh signature timestamp), synchronously.
        Returns {"id", "type", "status", "error"}; StripeError 404 if the event is unknown."""
        with self._lock:
            if event_id not in self._events:
                raise no_such("event", event_id)
            record = self._events[event_id]
            job = self._deliveries.enqueue(record)
        job.done.wait()
        return delivery_summary(job)

    def _emit(
        self,
        type: str,  # noqa: A002 - Stripe's word
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        context: Context | None = None,
    ) -> Job:
        """Records an event (a snapshot of `obj`) and queues its delivery. Call with the lock held, so the
        queue order is the creation order."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": (context or Context()).request(),
            "type": type,
        }
        record = EventRecord(event=event, body=json.dumps(event, indent=2))
        self._events[record.id] = record
        self._objects[record.id] = event
        return self._deliveries.enqueue(record)

    # ---------------------------------------------------------------------------------- object builders

    def _product(self, params: dict[str, Any], prefix: str) -> dict[str, Any]:
        check_keys(params, ("name", "description", "metadata", "images", "tax_code", "unit_label"), prefix)
        now = int(time.time())
        product = {
            "id": new_id("prod_", 14),
            "object": "product",
            "active": True,
            "created": now,
            "default_price": None,
            "description": as_str(params, "description", prefix),
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": as_metadata(params, prefix=prefix),
            "name": as_str(params, "name", prefix, required=True),
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": as_str(params, "unit_label", prefix),
            "updated": now,
            "url": None,
        }
        self._objects[product["id"]] = product
        return product

    def _price(self, params: dict[str, Any], prefix: str, *, inline: bool) -> dict[str, Any]:
        """A price from `POST /v1/prices` params or a line item's `price_data` (inline: archived, as Stripe
        does, so it cannot be reused by id)."""
        allowed = ["currency", "unit_amount", "product", "product_data", "recurring", "tax_behavior", "metadata"]
        if not inline:
            allowed += ["nickname", "lookup_key", "active", "expand"]
        check_keys(params, allowed, prefix)
        currency = as_str(params, "currency", prefix, required=True)
        assert currency is not None
        if not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise invalid(param_name(prefix, "currency"), f"Invalid currency: {currency}")
        unit_amount = as_int(params, "unit_amount", prefix, required=True)
        product_id = as_str(params, "product", prefix)
        product_data = as_dict(params, "product_data", prefix)
        if product_id and product_data:
            raise StripeError(
                400,
                f"You may only specify one of these parameters: {param_name(prefix, 'product')}, "
                f"{param_name(prefix, 'product_data')}.",
            )
        if product_id:
            if self._objects.get(product_id, {}).get("object") != "product":
                raise no_such("product", product_id, param_name(prefix, "product"))
        elif product_data:
            product_id = self._product(product_data, param_name(prefix, "product_data"))["id"]
        else:
            raise missing(param_name(prefix, "product_data") if inline else param_name(prefix, "product"))
        recurring = None
        recurring_params = as_dict(params, "recurring", prefix)
        if recurring_params:
            rprefix = param_name(prefix, "recurring")
            check_keys(recurring_params, ("interval", "interval_count"), rprefix)
            interval = as_str(recurring_params, "interval", rprefix, required=True)
            if interval not in _INTERVALS:
                raise invalid(
                    param_name(rprefix, "interval"),
                    f"Invalid {param_name(rprefix, 'interval')}: must be one of day, week, month, or year",
                )
            count = as_int(recurring_params, "interval_count", rprefix, minimum=1) or 1
            limit = {"day": 365, "week": 52, "month": 12, "year": 1}[interval]
            if count > limit:
                raise invalid(param_name(rprefix, "interval_count"), "The maximum billing interval is one year.")
            recurring = {
                "interval": interval,
                "interval_count": count,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        active = as_bool(params, "active", prefix)
        price = {
            "id": new_id("price_"),
            "object": "price",
            "active": False if inline else active is not False,
            "billing_scheme": "per_unit",
            "created": int(time.time()),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None if inline else as_str(params, "lookup_key", prefix),
            "metadata": as_metadata(params, prefix=prefix),
            "nickname": None if inline else as_str(params, "nickname", prefix),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": as_str(params, "tax_behavior", prefix) or "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        self._objects[price["id"]] = price
        return price

    def _customer(self, email: str | None) -> dict[str, Any]:
        customer = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": int(time.time()),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": email,
            "invoice_prefix": self._invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self._objects[customer["id"]] = customer
        return customer

    @staticmethod
    def _plan(price: dict[str, Any]) -> dict[str, Any]:
        recurring = price["recurring"] or {}
        return {
            "id": price["id"],
            "object": "plan",
            "active": price["active"],
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": "per_unit",
            "created": price["created"],
            "currency": price["currency"],
            "interval": recurring.get("interval"),
            "interval_count": recurring.get("interval_count"),
            "livemode": False,
            "metadata": price["metadata"],
            "meter": None,
            "nickname": price["nickname"],
            "product": price["product"],
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }

    def _invoice(
        self,
        subscription: dict[str, Any],
        *,
        billing_reason: str,
        period: tuple[int, int],
        line_period: tuple[int, int],
        paid: bool,
    ) -> dict[str, Any]:
        """An invoice of a subscription's items, finalized; paid, or open after one failed attempt.
        `period` is the invoice's own period_start/period_end, which Stripe sets to the period that just
        ended (equal start and end on a subscription's first invoice); the lines carry the billed period."""
        now = int(time.time())
        invoice_id = new_id("in_")
        lines = []
        for item in subscription["items"]["data"]:
            price, quantity = item["price"], item["quantity"]
            amount = price["unit_amount"] * quantity
            product = self._objects.get(price["product"], {})
            lines.append(
                {
                    "id": new_id("il_"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": price["currency"],
                    "description": f"{quantity} × {product.get('name', price['product'])} (at "
                    f"{format_amount(price['unit_amount'], price['currency'])} / {price['recurring']['interval']})",
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": invoice_id,
                    "livemode": False,
                    "metadata": dict(subscription["metadata"]),
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": subscription["id"],
                            "subscription_item": item["id"],
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": line_period[1], "start": line_period[0]},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "quantity": quantity,
                    "subscription": subscription["id"],
                    "subtotal": amount,
                    "taxes": [],
                }
            )
        total = sum(line["amount"] for line in lines)
        customer = self._objects.get(subscription["customer"], {})
        self._invoice_numbers += 1
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": ACCOUNT_NAME,
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 1,
            "attempted": True,
            "auto_advance": not paid,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": subscription["currency"],
            "custom_fields": None,
            "customer": subscription["customer"],
            "customer_address": None,
            "customer_email": customer.get("email"),
            "customer_name": None,
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "due_date": None,
            "effective_at": now,
            "ending_balance": 0,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * 86_400,
            "number": f"{self._invoice_prefix}-{self._invoice_numbers:04d}",
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
                "type": "subscription_details",
            },
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": period[1],
            "period_start": period[0],
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": now if paid else None,
                "voided_at": None,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": now,
        }
        self._objects[invoice_id] = invoice
        return invoice

    def _require_subscription(self, subscription_id: str) -> tuple[dict[str, Any], _SubscriptionState]:
        if subscription_id not in self._subscriptions:
            raise no_such("subscription", subscription_id)
        return self._objects[subscription_id], self._subscriptions[subscription_id]

    def _set_period(self, subscription: dict[str, Any], state: _SubscriptionState) -> None:
        start = add_interval(state.anchor, state.interval, state.interval_count, state.cycle)
        end = add_interval(state.anchor, state.interval, state.interval_count, state.cycle + 1)
        for item in subscription["items"]["data"]:
            item["current_period_start"], item["current_period_end"] = start, end

    # --------------------------------------------------------------------------------------- Stripe API

    def _atomic(self, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Runs `action` under the lock; objects it created are dropped if it raises (a request that fails
        validation creates nothing, as on Stripe)."""
        with self._lock:
            count = len(self._objects)
            try:
                return action()
            except BaseException:
                for key in list(self._objects)[count:]:
                    del self._objects[key]
                raise

    def create_checkout_session(self, params: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        """POST /v1/checkout/sessions (params as parsed from the form body)."""
        return self._atomic(lambda: self._create_checkout_session(params))

    def _create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(
            params,
            (
                "mode",
                "line_items",
                "client_reference_id",
                "metadata",
                "subscription_data",
                "payment_intent_data",
                "success_url",
                "cancel_url",
                "customer_email",
                "customer",
                "customer_creation",
                "expires_at",
                "expand",
                "ui_mode",
                "locale",
                "payment_method_types",
                "allow_promotion_codes",
                "billing_address_collection",
                "submit_type",
                "automatic_tax",
                "payment_method_collection",
                "invoice_creation",
                "consent_collection",
                "phone_number_collection",
                "tax_id_collection",
                "custom_text",
            ),
        )
        mode = as_str(params, "mode", required=True)
        if mode not in ("payment", "subscription", "setup"):
            raise invalid("mode", f"Invalid mode: must be one of payment, setup, or subscription (got {mode!r})")
        if mode == "setup":
            raise invalid("mode", "The Stripe simulator does not implement `setup` mode")
        ui_mode = as_str(params, "ui_mode") or "hosted"
        if ui_mode != "hosted":
            raise invalid("ui_mode", "The Stripe simulator implements only ui_mode `hosted`")
        if mode == "payment" and "subscription_data" in params:
            raise invalid("subscription_data", "You can not pass `subscription_data` in `payment` mode.")
        if mode == "subscription" and "payment_intent_data" in params:
            raise invalid("payment_intent_data", "You can not pass `payment_intent_data` in `subscription` mode.")
        client_reference_id = as_str(params, "client_reference_id")
        if client_reference_id is not None and len(client_reference_id) > 200:
            raise invalid("client_reference_id", "client_reference_id can be up to 200 characters long")
        subscription_data = as_dict(params, "subscription_data")
        check_keys(subscription_data, ("metadata", "description"), "subscription_data")
        payment_intent_data = as_dict(params, "payment_intent_data")
        check_keys(payment_intent_data, ("metadata", "description"), "payment_intent_data")
        customer_id = as_str(params, "customer")
        customer_email = as_str(params, "customer_email")
        if customer_id is not None:
            if self._objects.get(customer_id, {}).get("object") != "customer":
                raise no_such("customer", customer_id, "customer")
            if customer_email is not None:
                raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.")
        now = int(time.time())
        expires_at = as_int(params, "expires_at") or now + SESSION_LIFETIME_SECONDS
        if not now + 30 * 60 - 60 <= expires_at <= now + SESSION_LIFETIME_SECONDS:
            raise invalid("expires_at", "expires_at must be between 30 minutes and 24 hours from now")

        raw_items = params.get("line_items")
        if not raw_items:
            raise missing("line_items")
        if not isinstance(raw_items, list):
            raise invalid("line_items", "Invalid array: line_items must be an array")
        line_items = []
        for index, raw in enumerate(raw_items):
            prefix = f"line_items[{index}]"
            if not isinstance(raw, dict):
                raise invalid(prefix, f"Invalid object: {prefix} must be a hash")
            check_keys(raw, ("price", "price_data", "quantity"), prefix)
            quantity = as_int(raw, "quantity", prefix, minimum=1)
            if quantity is None:
                raise missing(f"{prefix}[quantity]")
            price_id, price_data = as_str(raw, "price", prefix), as_dict(raw, "price_data", prefix)
            if price_id and price_data:
                raise StripeError(
                    400, f"You may only specify one of these parameters: {prefix}[price], {prefix}[price_data]."
                )
            if price_id:
                price = self._objects.get(price_id)
                if price is None or price.get("object") != "price":
                    raise no_such("price", price_id, f"{prefix}[price]")
                if not price["active"]:
                    raise invalid(
                        f"{prefix}[price]", "The price specified is inactive. This field only accepts active prices."
                    )
            elif price_data:
                price = self._price(price_data, f"{prefix}[price_data]", inline=True)
            else:
                raise missing(f"{prefix}[price]")
            line_items.append({"price": price, "quantity": quantity})
        currencies = {item["price"]["currency"] for item in line_items}
        if len(currencies) > 1:
            raise invalid("line_items", "All line items must use the same currency.")
        recurring = [item["price"]["recurring"] for item in line_items if item["price"]["recurring"]]
        if mode == "payment" and recurring:
            raise invalid(
                "line_items",
                "You specified `payment` mode but passed a recurring price. Either switch to `subscription` "
                "mode or use only one-time prices.",
            )
        if mode == "subscription":
            if not recurring:
                raise invalid(
                    "line_items",
                    "You must provide at least one recurring price in `subscription` mode when using prices.",
                )
            if len(recurring) != len(line_items):
                raise invalid(
                    "line_items", "The Stripe simulator supports only recurring prices in `subscription` mode"
                )
            if len({(r["interval"], r["interval_count"]) for r in recurring}) > 1:
                raise invalid(
                    "line_items", "Checkout does not support multiple prices with different billing intervals."
                )

        amount = sum(item["price"]["unit_amount"] * item["quantity"] for item in line_items)
        session_id = "cs_test_a1" + "".join(secrets.choice(ALNUM) for _ in range(56))
        session = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": as_url(params, "cancel_url"),
            "client_reference_id": client_reference_id,
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": line_items[0]["price"]["currency"],
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": customer_id,
            "customer_creation": None if customer_id else as_str(params, "customer_creation") or "if_required",
            "customer_details": None,
            "customer_email": customer_email,
            "discounts": [],
            "expires_at": expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": as_str(params, "locale"),
            "metadata": as_metadata(params),
            "mode": mode,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always" if mode == "subscription" else None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": as_url(params, "success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        state = _SessionState(
            line_items=line_items,
            subscription_metadata=as_metadata(subscription_data, prefix="subscription_data"),
            subscription_description=as_str(subscription_data, "description", "subscription_data"),
            payment_intent_metadata=as_metadata(payment_intent_data, prefix="payment_intent_data"),
            payment_intent_description=as_str(payment_intent_data, "description", "payment_intent_data"),
        )
        self._objects[session_id] = session
        self._sessions[session_id] = state
        return copy.deepcopy(session)

    def session_line_items(self, session_id: str) -> dict[str, Any]:
        """GET /v1/checkout/sessions/{id}/line_items."""
        with self._lock:
            if session_id not in self._sessions:
                raise no_such("checkout.session", session_id, "session")
            data = []
            for item in self._sessions[session_id].line_items:
                price, quantity = item["price"], item["quantity"]
                amount = price["unit_amount"] * quantity
                data.append(
                    {
                        "id": new_id("li_"),
                        "object": "item",
                        "amount_discount": 0,
                        "amount_subtotal": amount,
                        "amount_tax": 0,
                        "amount_total": amount,
                        "currency": price["currency"],
                        "description": self._objects.get(price["product"], {}).get("name"),
                        "price": copy.deepcopy(price),
                        "quantity": quantity,
                    }
                )
            return {
                "object": "list",
                "data": data,
                "has_more": False,
                "url": f"/v1/checkout/sessions/{session_id}/line_items",
            }

    def expire_session(self, session_id: str, context: Context | None = None) -> dict[str, Any]:
        """POST /v1/checkout/sessions/{id}/expire: emits checkout.session.expired (asynchronously)."""
        with self._lock:
            if session_id not in self._sessions:
                raise no_such("checkout.session", session_id, "session")
            session = self._objects[session_id]
            if session["status"] != "open":
                raise StripeError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a '
                    f'status of "{session["status"]}".',
                )
            session.update(status="expired", url=None)
            self._emit("checkout.session.expired", session, context=context)
            return copy.deepcopy(session)

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """POST /v1/subscriptions/{id}: emits customer.subscription.updated (asynchronously) if anything changed."""
        check_keys(params, ("cancel_at_period_end", "metadata", "cancellation_details", "proration_behavior", "expand"))
        with self._lock:
            subscription, _state = self._require_subscription(subscription_id)
            before = copy.deepcopy(subscription)
            if subscription["status"] == "canceled" and set(params) - {"metadata", "cancellation_details", "expand"}:
                raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
            cancel_at_period_end = as_bool(params, "cancel_at_period_end")
            details = as_dict(params, "cancellation_details")
            check_keys(details, ("comment", "feedback"), "cancellation_details")
            metadata = as_metadata(params)
            if cancel_at_period_end is not None and cancel_at_period_end != subscription["cancel_at_period_end"]:
                period_end = subscription["items"]["data"][0]["current_period_end"]
                # As Stripe does: a pending cancellation sets cancel_at, and canceled_at to the request's time.
                subscription.update(
                    cancel_at_period_end=cancel_at_period_end,
                    cancel_at=period_end if cancel_at_period_end else None,
                    canceled_at=int(time.time()) if cancel_at_period_end else None,
                )
                subscription["cancellation_details"]["reason"] = (
                    "cancellation_requested" if cancel_at_period_end else None
                )
            for key in ("comment", "feedback"):
                if key in details:
                    subscription["cancellation_details"][key] = details[key] or None
            for key, value in metadata.items():  # an empty value removes the key, as on Stripe
                if value == "":
                    subscription["metadata"].pop(key, None)
                else:
                    subscription["metadata"][key] = value
            previous = diff(before, subscription)
            if previous:
                self._emit("customer.subscription.updated", subscription, previous, context)
            return copy.deepcopy(subscription)

    def cancel_subscription(
        self, subscription_id: str, params: dict[str, Any] | None = None, context: Context | None = None
    ) -> tuple[dict[str, Any], Job]:
        """DELETE /v1/subscriptions/{id}: canceled now; customer.subscription.deleted is queued (the job)."""
        params = params or {}
        check_keys(params, ("cancellation_details", "invoice_now", "prorate", "expand"))
        details = as_dict(params, "cancellation_details")
        check_keys(details, ("comment", "feedback"), "cancellation_details")
        with self._lock:
            subscription, _state = self._require_subscription(subscription_id)
            if subscription["status"] == "canceled":
                raise no_such("subscription", subscription_id)  # what Stripe answers
            now = int(time.time())
            subscription.update(status="canceled", canceled_at=now, ended_at=now)
            subscription["cancellation_details"]["reason"] = "cancellation_requested"
            for key in ("comment", "feedback"):
                if key in details:
                    subscription["cancellation_details"][key] = details[key] or None
            job = self._emit("customer.subscription.deleted", subscription, context=context)
            return copy.deepcopy(subscription), job

    def create_price(self, params: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/prices: currency, unit_amount, product or product_data[name], recurring[interval…]."""
        return self._atomic(lambda: copy.deepcopy(self._price(params, "", inline=False)))

    def create_product(self, params: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/products: name, description, metadata."""
        check_keys(params, ("name", "description", "metadata", "active", "expand"))
        rest = {k: v for k, v in params.items() if k not in ("active", "expand")}
        return self._atomic(lambda: copy.deepcopy(self._product(rest, "")))

    # ---------------------------------------------------------------------------- checkout and controls

    def pay(self, session_id: str, email: str | None = None) -> dict[str, Any]:
        """Completes a checkout session as a customer paying on the page, delivering the events synchronously.
        Returns {"session", "redirect_url", "events": [{"id", "type", "status", "error"}]}; paying a completed
        session again returns no events. StripeError: 404 if unknown, 400 if expired."""
        with self._lock:
            if session_id not in self._sessions:
                raise no_such("checkout.session", session_id, "session")
            session, state = self._objects[session_id], self._sessions[session_id]
            jobs: list[Job] = []
            if session["status"] == "expired":
                raise StripeError(400, f"Checkout session {session_id} has expired.")
            if session["status"] == "open":
                jobs = self._complete(session, state, email)
            result = {"session": copy.deepcopy(session), "redirect_url": self._success_url(session)}
        result["events"] = wait_for_deliveries(jobs)
        return result

    def _success_url(self, session: dict[str, Any]) -> str:
        url = session["success_url"] or f"{self.base_url}/done?session_id={{CHECKOUT_SESSION_ID}}"
        return url.replace("{CHECKOUT_SESSION_ID}", session["id"])

    def _complete(self, session: dict[str, Any], state: _SessionState, email: str | None) -> list[Job]:
        now = int(time.time())
        if session["customer"]:
            customer = self._objects[session["customer"]]
        else:
            customer = self._customer(email or session["customer_email"] or "customer@example.com")
        payment_method = new_id("pm_")
        session.update(
            status="complete",
            payment_status="paid",
            customer=customer["id"],
            customer_details={
                "address": None,
                "email": customer["email"],
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
            url=None,  # Stripe: only present while the session is open
        )
        if session["mode"] == "payment":
            intent = {
                "id": new_id("pi_"),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_capturable": 0,
                "amount_received": session["amount_total"],
                "application": None,
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": "automatic_async",
                "client_secret": None,
                "confirmation_method": "automatic",
                "created": now,
                "currency": session["currency"],
                "customer": customer["id"],
                "description": state.payment_intent_description,
                "last_payment_error": None,
                "latest_charge": new_id("ch_"),
                "livemode": False,
                "metadata": dict(state.payment_intent_metadata),
                "next_action": None,
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "receipt_email": None,
                "status": "succeeded",
            }
            self._objects[intent["id"]] = intent
            session["payment_intent"] = intent["id"]
            return [
                self._emit("payment_intent.succeeded", intent),
                self._emit("checkout.session.completed", session),
            ]

        subscription_id = new_id("sub_")
        first = state.line_items[0]["price"]["recurring"]
        sub_state = _SubscriptionState(anchor=now, interval=first["interval"], interval_count=first["interval_count"])
        items = [
            {
                "id": new_id("si_", 14),
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": now,
                "current_period_end": 0,
                "current_period_start": 0,
                "discounts": [],
                "metadata": {},
                "plan": self._plan(item["price"]),
                "price": copy.deepcopy(item["price"]),
                "quantity": item["quantity"],
                "subscription": subscription_id,
                "tax_rates": [],
            }
            for item in state.line_items
        ]
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible", "updated_at": now},
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": session["currency"],
            "customer": customer["id"],
            "days_until_due": None,
            "default_payment_method": payment_method,
            "default_source": None,
            "default_tax_rates": [],
            "description": state.subscription_description,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(state.subscription_metadata),
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "active",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        }
        self._set_period(subscription, sub_state)
        for item in items:
            self._objects[item["id"]] = item
        self._objects[subscription_id] = subscription
        self._subscriptions[subscription_id] = sub_state
        start, end = items[0]["current_period_start"], items[0]["current_period_end"]
        invoice = self._invoice(
            subscription, billing_reason="subscription_create", period=(now, now), line_period=(start, end), paid=True
        )
        subscription["latest_invoice"] = invoice["id"]
        session.update(subscription=subscription_id, invoice=invoice["id"])
        return [
            self._emit("customer.subscription.created", subscription),
            self._emit("invoice.paid", invoice),
            self._emit("invoice.payment_succeeded", invoice),
            self._emit("checkout.session.completed", session),
        ]

    def _advance(self, subscription_id: str, *, paid: bool) -> tuple[dict[str, Any], dict[str, Any] | None, list[Job]]:
        """The subscription reaches its period end: renewed (the next period's invoice, paid or failed), or
        ended when cancel_at_period_end is set. Lock held by the caller."""
        subscription, state = self._require_subscription(subscription_id)
        if subscription["status"] == "canceled":
            raise StripeError(400, f"Subscription {subscription_id} is canceled: it cannot renew.")
        if subscription["cancel_at_period_end"]:
            subscription.update(status="canceled", ended_at=subscription["items"]["data"][0]["current_period_end"])
            return subscription, None, [self._emit("customer.subscription.deleted", subscription)]
        before = copy.deepcopy(subscription)
        old_start = before["items"]["data"][0]["current_period_start"]
        old_end = before["items"]["data"][0]["current_period_end"]
        state.cycle += 1
        self._set_period(subscription, state)
        new_end = subscription["items"]["data"][0]["current_period_end"]
        invoice = self._invoice(
            subscription,
            billing_reason="subscription_cycle",
            period=(old_start, old_end),
            line_period=(old_end, new_end),
            paid=paid,
        )
        subscription["latest_invoice"] = invoice["id"]
        subscription["status"] = "active" if paid else "past_due"
        previous = diff(before, subscription)
        if paid:
            jobs = [
                self._emit("customer.subscription.updated", subscription, previous),
                self._emit("invoice.paid", invoice),
                self._emit("invoice.payment_succeeded", invoice),
            ]
        else:
            jobs = [
                self._emit("invoice.payment_failed", invoice),
                self._emit("customer.subscription.updated", subscription, previous),
            ]
        return subscription, invoice, jobs

    def renew(self, subscription_id: str) -> dict[str, Any]:
        """The period ends and the renewal is paid: the period advances (new start = old end), status active;
        events customer.subscription.updated, invoice.paid, invoice.payment_succeeded (billing_reason
        subscription_cycle). With cancel_at_period_end set the subscription ends instead
        (customer.subscription.deleted). Delivered synchronously.
        Returns {"subscription", "invoice" (None when it ended), "events": [{"id", "type", "status", "error"}]}."""
        return self._control(lambda: self._advance(subscription_id, paid=True))

    def fail_payment(self, subscription_id: str) -> dict[str, Any]:
        """The period ends and the renewal's charge fails: the period advances anyway (as on Stripe), status
        past_due, the invoice stays open (attempt_count 1); events invoice.payment_failed then
        customer.subscription.updated. Same return value as `renew`."""
        return self._control(lambda: self._advance(subscription_id, paid=False))

    def retry_payment(self, subscription_id: str) -> dict[str, Any]:
        """A retry of a past_due subscription's open invoice succeeds (Stripe's smart retries): the invoice is
        paid, the subscription active again, the period unchanged; events invoice.paid,
        invoice.payment_succeeded, customer.subscription.updated. Same return value as `renew`."""

        def retry() -> tuple[dict[str, Any], dict[str, Any] | None, list[Job]]:
            subscription, _state = self._require_subscription(subscription_id)
            invoice = self._objects.get(subscription["latest_invoice"] or "")
            if subscription["status"] != "past_due" or not invoice or invoice["status"] != "open":
                raise StripeError(400, f"Subscription {subscription_id} has no open invoice to retry.")
            before = copy.deepcopy(subscription)
            now = int(time.time())
            invoice.update(
                status="paid",
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                attempt_count=invoice["attempt_count"] + 1,
                auto_advance=False,
                next_payment_attempt=None,
            )
            invoice["status_transitions"]["paid_at"] = now
            subscription["status"] = "active"
            jobs = [
                self._emit("invoice.paid", invoice),
                self._emit("invoice.payment_succeeded", invoice),
                self._emit("customer.subscription.updated", subscription, diff(before, subscription)),
            ]
            return subscription, invoice, jobs

        return self._control(retry)

    def cancel(self, subscription_id: str) -> dict[str, Any]:
        """Cancels now, as DELETE /v1/subscriptions/{id} does, but delivers customer.subscription.deleted
        synchronously. Same return value as `renew` (invoice None)."""

        def cancel() -> tuple[dict[str, Any], dict[str, Any] | None, list[Job]]:
            subscription, job = self.cancel_subscription(subscription_id)
            return subscription, None, [job]

        return self._control(cancel)

    # Refunds and disputes of a paid top-up (payment mode) ----------------------------------------------

    def _paid_charge(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The charge of a paid payment-mode session (made on first use from its PaymentIntent), and the intent."""
        if session_id not in self._sessions:
            raise no_such("checkout.session", session_id, "session")
        session = self._objects[session_id]
        intent = self._objects.get(session.get("payment_intent") or "")
        if session["mode"] != "payment" or session["payment_status"] != "paid" or intent is None:
            raise StripeError(400, f"Checkout session {session_id} has no paid charge.")
        charge_id = intent["latest_charge"]
        if charge_id not in self._objects:
            self._objects[charge_id] = {
                "id": charge_id,
                "object": "charge",
                "amount": intent["amount"],
                "amount_captured": intent["amount"],
                "amount_refunded": 0,
                "captured": True,
                "created": intent["created"],
                "currency": intent["currency"],
                "customer": intent["customer"],
                "disputed": False,
                "livemode": False,
                "metadata": {},
                "paid": True,
                "payment_intent": intent["id"],
                "refunded": False,
                "status": "succeeded",
            }
        return self._objects[charge_id], intent

    def refund(self, session_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refunds ``amount`` (smallest currency unit; default: all that is left) of a paid top-up's charge, as
        the Dashboard's Refund does: ``amount_refunded`` grows (cumulative); event charge.refunded, delivered
        synchronously. Returns {"charge", "events"}. StripeError 400 when nothing is left to refund."""
        with self._lock:
            charge, _intent = self._paid_charge(session_id)
            left = charge["amount"] - charge["amount_refunded"]
            amount = left if amount is None else amount
            if amount <= 0 or amount > left:
                raise StripeError(400, f"Refund amount must be between 1 and {left}.", param="amount")
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            jobs = [self._emit("charge.refunded", charge)]
            result: dict[str, Any] = {"charge": copy.deepcopy(charge)}
        result["events"] = wait_for_deliveries(jobs)
        return result

    def dispute(self, session_id: str, outcome: str | None = None) -> dict[str, Any]:
        """The cardholder disputes a paid top-up's charge (event charge.dispute.created: the amount is withdrawn
        at once), or with ``outcome`` "won" / "lost" its dispute closes (charge.dispute.closed). Delivered
        synchronously. Returns {"dispute", "events"}."""
        with self._lock:
            charge, intent = self._paid_charge(session_id)
            dispute_id = "dp_" + charge["id"].removeprefix("ch_")
            dispute = self._objects.get(dispute_id)
            if outcome is None:
                if dispute is not None:
                    raise StripeError(400, f"Charge {charge['id']} is already disputed.")
                dispute = {
                    "id": dispute_id,
                    "object": "dispute",
                    "amount": charge["amount"] - charge["amount_refunded"],
                    "charge": charge["id"],
                    "created": int(time.time()),
                    "currency": charge["currency"],
                    "is_charge_refundable": False,
                    "livemode": False,
                    "metadata": {},
                    "payment_intent": intent["id"],
                    "reason": "fraudulent",
                    "status": "needs_response",
                }
                self._objects[dispute_id] = dispute
                charge["disputed"] = True
                jobs = [self._emit("charge.dispute.created", dispute)]
            else:
                if outcome not in ("won", "lost"):
                    raise StripeError(400, f"Unknown dispute outcome {outcome!r}.", param="outcome")
                if dispute is None or dispute["status"] in ("won", "lost"):
                    raise StripeError(400, f"Charge {charge['id']} has no open dispute.")
                dispute["status"] = outcome
                jobs = [self._emit("charge.dispute.closed", dispute)]
            result: dict[str, Any] = {"dispute": copy.deepcopy(dispute)}
        result["events"] = wait_for_deliveries(jobs)
        return result

    def _control(self, action: Callable[[], tuple[dict[str, Any], dict[str, Any] | None, list[Job]]]) -> dict[str, Any]:
        with self._lock:
            subscription, invoice, jobs = action()
            result: dict[str, Any] = {"subscription": copy.deepcopy(subscription), "invoice": copy.deepcopy(invoice)}
        result["events"] = wait_for_deliveries(jobs)
        return result
