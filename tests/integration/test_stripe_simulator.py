"""The local Stripe simulator on its own, over real HTTP: driven by the official SDK as the platform drives
Stripe, paid through its checkout page, delivering signed webhooks to a small recording receiver."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from local_stack.server_thread import ServerThread
from local_stack.stripe_simulator import StripeSimulatorServer, add_interval

PAY_BUTTON = '<button id="pay" type="submit">Pay</button>'


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint that records raw bodies and headers; answers `status`; holds requests while `gate`
    is cleared (a gateway busy with another request)."""

    status: int = 200
    requests: list[Received] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        await run_in_threadpool(self.gate.wait, 30)
        self.requests.append(Received(body, dict(request.headers)))
        return PlainTextResponse("ok" if self.status < 300 else "failed", status_code=self.status)

    def types(self) -> list[str]:
        return [received.event["type"] for received in self.requests]

    def last(self, type: str) -> dict[str, Any]:  # noqa: A002
        return [r.event for r in self.requests if r.event["type"] == type][-1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ServerThread(Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])]))
    server.start()
    receiver.url = server.url + "/hook"  # type: ignore[attr-defined]
    try:
        yield receiver
    finally:
        receiver.gate.set()
        server.stop()


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[StripeSimulatorServer]:
    with StripeSimulatorServer(webhook_url=receiver.url) as server:  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def client(sim: StripeSimulatorServer) -> stripe.StripeClient:
    return stripe.StripeClient(sim.api_key, base_addresses={"api": sim.url}, max_network_retries=0)


@pytest.fixture
def http(sim: StripeSimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        yield client


def subscription_params(sim: StripeSimulatorServer, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "subscription",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 2000,
                    "product_data": {"name": "Pro plan"},
                    "recurring": {"interval": "month"},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": "acct_123",
        "metadata": {"accountId": "acct_123", "planId": "pro"},
        "subscription_data": {"metadata": {"accountId": "acct_123", "planId": "pro"}},
        "success_url": sim.url + "/done?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": sim.url + "/cancelled",
        **extra,
    }


def pay(http: httpx.Client, session_url: str) -> httpx.Response:
    return http.post(session_url, data={"email": "buyer@example.com"})


def paid_subscription(
    client: stripe.StripeClient, sim: StripeSimulatorServer, http: httpx.Client, receiver: Receiver
) -> str:
    session = client.v1.checkout.sessions.create(params=subscription_params(sim))
    assert pay(http, session.url).status_code == 303
    return receiver.last("checkout.session.completed")["data"]["object"]["subscription"]


def period(subscription: dict[str, Any]) -> tuple[int, int]:
    item = subscription["items"]["data"][0]
    return item["current_period_start"], item["current_period_end"]


def test_subscription_checkout_from_page_to_signed_webhooks(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a subscription checkout session created with the SDK, as the platform creates it
    session = client.v1.checkout.sessions.create(params=subscription_params(sim))
    assert session.id.startswith("cs_test_")
    assert (session.object, session.mode, session.status, session.payment_status) == (
        "checkout.session",
        "subscription",
        "open",
        "unpaid",
    )
    assert session.url == f"{sim.url}/c/pay/{session.id}"
    assert (session.amount_subtotal, session.amount_total, session.currency) == (2000, 2000, "usd")
    assert session.client_reference_id == "acct_123"
    assert session.metadata.to_dict() == {"accountId": "acct_123", "planId": "pro"}
    assert session.subscription is None and session.customer is None and session.livemode is False
    assert session.expires_at > session.created
    assert client.v1.checkout.sessions.retrieve(session.id).id == session.id

    # When a customer opens its page
    page = http.get(session.url)

    # Then it shows what is bought and a Pay button
    assert page.status_code == 200
    assert PAY_BUTTON in page.text
    assert "Pro plan" in page.text and "$20.00 per month" in page.text
    assert f'href="{sim.url}/cancelled"' in page.text

    # When the customer pays
    paid = pay(http, session.url)

    # Then the browser goes to success_url with the session id filled in, after the webhooks were delivered
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{sim.url}/done?session_id={session.id}"
    assert receiver.types() == [
        "customer.subscription.created",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ]
    for received in receiver.requests:
        # signed as Stripe signs: the SDK's verification accepts it, with the right secret only
        event = stripe.Webhook.construct_event(received.body, received.headers["stripe-signature"], sim.webhook_secret)
        stripe.WebhookSignature.verify_header(received.body, received.headers["stripe-signature"], sim.webhook_secret)
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(received.body, received.headers["stripe-signature"], "whsec_wrong")
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", received.headers["stripe-signature"])
        assert received.headers["content-type"] == "application/json; charset=utf-8"
        assert received.headers["user-agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
        assert received.body.decode() == json.dumps(json.loads(received.body), indent=2)  # pretty-printed
        assert event.id.startswith("evt_") and event.object == "event"
        assert event.api_version == stripe.api_version
        assert event.livemode is False and event.pending_webhooks == 1
        assert set(received.event) >= {"id", "object", "api_version", "created", "data", "request", "type"}

    # And the objects have the current API's shapes
    subscription = receiver.last("customer.subscription.created")["data"]["object"]
    invoice = receiver.last("invoice.paid")["data"]["object"]
    completed = receiver.last("checkout.session.completed")["data"]["object"]
    assert subscription["id"].startswith("sub_") and subscription["object"] == "subscription"
    assert subscription["status"] == "active" and subscription["cancel_at_period_end"] is False
    assert subscription["metadata"] == {"accountId": "acct_123", "planId": "pro"}
    assert "current_period_end" not in subscription and "current_period_start" not in subscription
    item = subscription["items"]["data"][0]
    assert item["id"].startswith("si_") and item["object"] == "subscription_item"
    assert item["price"]["unit_amount"] == 2000 and item["price"]["currency"] == "usd"
    assert item["price"]["recurring"]["interval"] == "month" and item["price"]["recurring"]["interval_count"] == 1
    assert item["current_period_start"] == subscription["start_date"]
    assert item["current_period_end"] == add_interval(subscription["start_date"], "month", 1)
    assert subscription["latest_invoice"] == invoice["id"]
    assert invoice["id"].startswith("in_") and invoice["object"] == "invoice"
    assert (invoice["status"], invoice["billing_reason"], invoice["amount_paid"]) == (
        "paid",
        "subscription_create",
        2000,
    )
    assert invoice["customer"] == subscription["customer"]
    assert "subscription" not in invoice  # moved to parent.subscription_details in the current API
    assert invoice["parent"]["type"] == "subscription_details"
    assert invoice["parent"]["subscription_details"] == {
        "metadata": {"accountId": "acct_123", "planId": "pro"},
        "subscription": subscription["id"],
    }
    line = invoice["lines"]["data"][0]
    assert line["period"] == {"start": item["current_period_start"], "end": item["current_period_end"]}
    assert line["parent"]["subscription_item_details"]["subscription"] == subscription["id"]
    assert line["pricing"]["price_details"]["price"] == item["price"]["id"]
    assert invoice["status_transitions"]["paid_at"] is not None
    assert completed["id"] == session.id and completed["subscription"] == subscription["id"]
    assert (completed["status"], completed["payment_status"]) == ("complete", "paid")
    assert completed["customer"].startswith("cus_") and completed["customer"] == subscription["customer"]
    assert completed["client_reference_id"] == "acct_123"
    assert completed["metadata"] == {"accountId": "acct_123", "planId": "pro"}

    # When the customer comes back to the page and pays again
    again_page, again = http.get(session.url), pay(http, session.url)

    # Then it says it is paid, and paying again only redirects
    assert "paid" in again_page.text and PAY_BUTTON not in again_page.text
    assert again.status_code == 303 and len(receiver.requests) == 4

    # And the success page names the session
    done = http.get(paid.headers["location"])
    assert "Payment complete" in done.text and session.id in done.text


def test_payment_mode_checkout_delivers_the_payment_intent_then_the_session(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a one-time payment session (a credit top-up)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {"currency": "usd", "unit_amount": 1000, "product_data": {"name": "Credit top-up"}},
                    "quantity": 1,
                }
            ],
            "client_reference_id": "acct_9",
            "metadata": {"accountId": "acct_9", "kind": "topup"},
            "payment_intent_data": {"metadata": {"accountId": "acct_9"}},
            "success_url": sim.url + "/done?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": sim.url + "/cancelled",
        }
    )
    page = http.get(session.url)
    assert PAY_BUTTON in page.text and "$10.00" in page.text and "per month" not in page.text

    # When it is paid
    paid = pay(http, session.url)

    # Then the platform is told, the intent first (an event it ignores), then the completed session
    assert paid.headers["location"] == f"{sim.url}/done?session_id={session.id}"
    assert receiver.types() == ["payment_intent.succeeded", "checkout.session.completed"]
    intent = receiver.last("payment_intent.succeeded")["data"]["object"]
    completed = receiver.last("checkout.session.completed")["data"]["object"]
    assert intent["id"].startswith("pi_") and intent["status"] == "succeeded"
    assert intent["amount"] == 1000 and intent["metadata"] == {"accountId": "acct_9"}
    assert completed["payment_intent"] == intent["id"] and completed["customer"].startswith("cus_")
    assert (completed["status"], completed["payment_status"], completed["subscription"]) == ("complete", "paid", None)
    assert completed["amount_total"] == 1000 and completed["metadata"] == {"accountId": "acct_9", "kind": "topup"}
    retrieved = client.v1.checkout.sessions.retrieve(session.id)
    assert retrieved.status == "complete" and retrieved.payment_intent == intent["id"]


def test_subscription_retrieve_update_and_cancel_through_the_sdk(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a paid subscription
    subscription_id = paid_subscription(client, sim, http, receiver)

    # When the platform retrieves it
    subscription = client.v1.subscriptions.retrieve(subscription_id)

    # Then it is active, with its period on its items
    assert subscription.status == "active" and subscription.metadata.to_dict()["accountId"] == "acct_123"
    assert subscription["items"].data[0].current_period_end > subscription.start_date

    # When the platform asks to cancel at the period end
    updated = client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": True})
    assert sim.simulator.drain()

    # Then the answer and the customer.subscription.updated event say so, with the previous values
    assert updated.cancel_at_period_end is True and updated.status == "active"
    assert updated.cancel_at == updated["items"].data[0].current_period_end
    event = receiver.last("customer.subscription.updated")
    assert event["data"]["object"]["cancel_at_period_end"] is True
    assert event["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert event["request"]["id"].startswith("req_") and event["request"]["idempotency_key"]

    # When it cancels now (DELETE)
    canceled = client.v1.subscriptions.cancel(subscription_id)
    assert sim.simulator.drain()

    # Then it has ended, and customer.subscription.deleted is delivered
    assert canceled.status == "canceled" and canceled.ended_at is not None and canceled.canceled_at is not None
    assert receiver.types()[-1] == "customer.subscription.deleted"
    assert receiver.last("customer.subscription.deleted")["data"]["object"]["status"] == "canceled"
    assert client.v1.subscriptions.retrieve(subscription_id).status == "canceled"
    # and, as on Stripe, a canceled subscription cannot be canceled again nor updated
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.subscriptions.cancel(subscription_id)
    assert again.value.http_status == 404 and again.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as update:
        client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": False})
    assert update.value.http_status == 400


def test_api_calls_answer_before_their_webhooks_are_delivered(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a paid subscription and a webhook endpoint that is busy (the gateway serving another request)
    subscription_id = paid_subscription(client, sim, http, receiver)
    delivered_before = len(receiver.requests)
    receiver.gate.clear()

    # When the API updates the subscription
    answered: list[Any] = []
    call = threading.Thread(
        target=lambda: answered.append(
            client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": True})
        )
    )
    call.start()
    call.join(timeout=20)

    # Then the API has answered while the delivery is still pending
    assert answered and answered[0].cancel_at_period_end is True
    assert len(receiver.requests) == delivered_before
    assert sim.simulator.drain(timeout=0.2) is False

    # When the endpoint is free again, drain waits for the delivery
    receiver.gate.set()
    drained = http.post("/sim/drain")

    # Then it has arrived
    assert drained.status_code == 200 and drained.json() == {"drained": True}
    assert receiver.types()[-1] == "customer.subscription.updated"


def test_renewal_advances_the_period_and_delivers_the_paid_invoice(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a paid subscription
    subscription_id = paid_subscription(client, sim, http, receiver)
    old_start, old_end = period(sim.simulator.get(subscription_id))

    # When its period ends and the renewal is paid (over HTTP, as the dashboard does)
    renewed = http.post(f"/sim/subscriptions/{subscription_id}/renew")

    # Then the period advances, and the events were delivered (synchronously) with their statuses
    assert renewed.status_code == 200
    result = renewed.json()
    assert [(e["type"], e["status"]) for e in result["events"]] == [
        ("customer.subscription.updated", 200),
        ("invoice.paid", 200),
        ("invoice.payment_succeeded", 200),
    ]
    assert receiver.types()[-3:] == ["customer.subscription.updated", "invoice.paid", "invoice.payment_succeeded"]
    new_start, new_end = period(result["subscription"])
    assert new_start == old_end and new_end == add_interval(old_start, "month", 1, 2)
    updated = receiver.last("customer.subscription.updated")
    assert period(updated["data"]["object"]) == (new_start, new_end)
    previous_item = updated["data"]["previous_attributes"]["items"]["data"][0]
    assert (previous_item["current_period_start"], previous_item["current_period_end"]) == (old_start, old_end)
    invoice = receiver.last("invoice.paid")["data"]["object"]
    assert invoice["billing_reason"] == "subscription_cycle" and invoice["status"] == "paid"
    assert invoice["lines"]["data"][0]["period"] == {"start": new_start, "end": new_end}
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription_id
    assert client.v1.subscriptions.retrieve(subscription_id).latest_invoice == invoice["id"]


def test_failed_renewal_makes_the_subscription_past_due_until_a_retry_succeeds(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a paid subscription
    subscription_id = paid_subscription(client, sim, http, receiver)
    _, old_end = period(sim.simulator.get(subscription_id))

    # When the renewal's charge fails
    failed = http.post(f"/sim/subscriptions/{subscription_id}/fail-payment").json()

    # Then the invoice stays open after one attempt and the subscription is past_due on the next period
    assert [e["type"] for e in failed["events"]] == ["invoice.payment_failed", "customer.subscription.updated"]
    invoice = receiver.last("invoice.payment_failed")["data"]["object"]
    assert (invoice["status"], invoice["attempt_count"], invoice["amount_paid"]) == ("open", 1, 0)
    assert invoice["amount_remaining"] == invoice["amount_due"] == 2000
    assert invoice["billing_reason"] == "subscription_cycle" and invoice["status_transitions"]["paid_at"] is None
    updated = receiver.last("customer.subscription.updated")
    assert updated["data"]["object"]["status"] == "past_due"
    assert updated["data"]["previous_attributes"]["status"] == "active"
    assert period(failed["subscription"])[0] == old_end

    # When a retry succeeds (Python API)
    retried = sim.simulator.retry_payment(subscription_id)

    # Then the same invoice is paid and the subscription is active again, on the same period
    assert [e["type"] for e in retried["events"]] == [
        "invoice.paid",
        "invoice.payment_succeeded",
        "customer.subscription.updated",
    ]
    assert retried["invoice"]["id"] == invoice["id"] and retried["invoice"]["status"] == "paid"
    assert retried["subscription"]["status"] == "active"
    assert period(retried["subscription"]) == period(failed["subscription"])


def test_a_subscription_set_to_cancel_ends_at_its_period_end(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a subscription the platform set to cancel at the period end
    subscription_id = paid_subscription(client, sim, http, receiver)
    client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": True})
    assert sim.simulator.drain()
    _, end = period(sim.simulator.get(subscription_id))

    # When its period ends
    result = sim.simulator.renew(subscription_id)

    # Then it is not renewed: it ends at the period end
    assert [(e["type"], e["status"]) for e in result["events"]] == [("customer.subscription.deleted", 200)]
    assert result["invoice"] is None
    assert result["subscription"]["status"] == "canceled" and result["subscription"]["ended_at"] == end


def test_resend_redelivers_the_same_body_with_a_fresh_signature(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a delivered checkout.session.completed
    paid_subscription(client, sim, http, receiver)
    first = [r for r in receiver.requests if r.event["type"] == "checkout.session.completed"][0]

    # When it is resent
    resent = http.post(f"/sim/events/{first.event['id']}/resend")

    # Then the same body arrives again, signed again, and both deliveries are in the event log
    assert resent.status_code == 200 and resent.json()["events"][0]["status"] == 200
    second = receiver.requests[-1]
    assert second.body == first.body
    stripe.Webhook.construct_event(second.body, second.headers["stripe-signature"], sim.webhook_secret)
    log = {e["id"]: e for e in http.get("/sim/events").json()["events"]}
    deliveries = log[first.event["id"]]["deliveries"]
    assert [d["attempt"] for d in deliveries] == [1, 2] and [d["status"] for d in deliveries] == [200, 200]


def test_delivery_failures_are_recorded(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given an endpoint that answers 500
    receiver.status = 500
    session = client.v1.checkout.sessions.create(params=subscription_params(sim))

    # When the session is paid (Python API)
    result = sim.simulator.pay(session.id)

    # Then every delivery's status is reported and logged
    assert [e["status"] for e in result["events"]] == [500, 500, 500, 500]
    assert all(e["deliveries"][0]["status"] == 500 for e in sim.simulator.events())

    # When there is no webhook URL at all
    sim.simulator.webhook_url = None
    cancel = sim.simulator.cancel(result["session"]["subscription"])

    # Then the event is recorded as not delivered
    assert cancel["events"][0]["status"] is None and "not delivered" in cancel["events"][0]["error"]


def test_the_api_requires_the_secret_key(sim: StripeSimulatorServer, http: httpx.Client) -> None:
    # Given a client with a wrong key, and a request without any
    wrong = stripe.StripeClient("sk_test_wrong_0123456789", base_addresses={"api": sim.url}, max_network_retries=0)

    # When they call the API
    with pytest.raises(stripe.AuthenticationError) as raised:
        wrong.v1.subscriptions.retrieve("sub_123")
    anonymous = http.get("/v1/subscriptions/sub_123")

    # Then both get Stripe's 401
    assert raised.value.http_status == 401
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    assert "API key" in anonymous.json()["error"]["message"]


def test_invalid_requests_get_stripe_errors(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client
) -> None:
    # Given requests Stripe would refuse
    cases = {
        "unknown price": (subscription_params(sim, line_items=[{"price": "price_nope", "quantity": 1}]), 404),
        "missing mode": ({k: v for k, v in subscription_params(sim).items() if k != "mode"}, 400),
        "recurring price in payment mode": (
            {k: v for k, v in subscription_params(sim, mode="payment").items() if k != "subscription_data"},
            400,
        ),
        "unknown parameter": (subscription_params(sim, colour="blue"), 400),
        "bad amount": (
            subscription_params(
                sim,
                line_items=[
                    {
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": "ten",
                            "product_data": {"name": "x"},
                            "recurring": {"interval": "month"},
                        },
                        "quantity": 1,
                    }
                ],
            ),
            400,
        ),
    }
    for name, (params, status) in cases.items():
        # When they are sent; Then they fail as on Stripe
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.checkout.sessions.create(params=params)
        assert raised.value.http_status == status, name
    assert raised.value.code is None or raised.value.code.startswith("parameter_")
    with pytest.raises(stripe.InvalidRequestError) as unknown_price:
        client.v1.checkout.sessions.create(
            params=subscription_params(sim, line_items=[{"price": "price_nope", "quantity": 1}])
        )
    assert unknown_price.value.code == "resource_missing" and unknown_price.value.param == "line_items[0][price]"
    assert http.get("/c/pay/cs_test_nope").status_code == 404
    assert sim.simulator.sessions() == []  # nothing half-created


def test_prices_created_through_the_api_can_be_sold(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a price created with POST /v1/prices
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 4900,
            "product_data": {"name": "Team plan"},
            "recurring": {"interval": "month", "interval_count": 3},
        }
    )
    assert price.id.startswith("price_") and price.type == "recurring"

    # When a session sells it by id, and is paid
    session = client.v1.checkout.sessions.create(
        params=subscription_params(sim, line_items=[{"price": price.id, "quantity": 2}])
    )
    assert "every 3 months" in http.get(session.url).text
    pay(http, session.url)

    # Then the subscription is on that price, for three months
    subscription = receiver.last("customer.subscription.created")["data"]["object"]
    item = subscription["items"]["data"][0]
    assert item["price"]["id"] == price.id and item["quantity"] == 2 and session.amount_total == 9800
    assert item["current_period_end"] == add_interval(item["current_period_start"], "month", 3)


def test_idempotent_requests_are_replayed(sim: StripeSimulatorServer, client: stripe.StripeClient) -> None:
    # Given a session created with an idempotency key
    params = subscription_params(sim)
    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "checkout-acct_123-1"})

    # When the same request is retried, and the key is reused for another request
    replay = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "checkout-acct_123-1"})
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(
            params=subscription_params(sim, client_reference_id="acct_other"),
            options={"idempotency_key": "checkout-acct_123-1"},
        )

    # Then the retry got the same session, and only one exists
    assert replay.id == first.id and len(sim.simulator.sessions()) == 1


def test_dashboard_lists_and_controls_subscriptions(
    sim: StripeSimulatorServer, client: stripe.StripeClient, http: httpx.Client, receiver: Receiver
) -> None:
    # Given a paid subscription
    subscription_id = paid_subscription(client, sim, http, receiver)

    # When someone opens the dashboard and presses Renew
    dashboard = http.get("/sim")
    pressed = http.post(f"/sim/subscriptions/{subscription_id}/renew", data={"next": "/sim"})

    # Then the subscription is listed with its buttons, and the button leads back to the dashboard
    assert dashboard.status_code == 200 and subscription_id in dashboard.text
    assert "Renew" in dashboard.text and "Fail payment" in dashboard.text and "Cancel" in dashboard.text
    assert pressed.status_code == 303 and pressed.headers["location"] == "/sim"
    assert receiver.types()[-1] == "invoice.payment_succeeded"


@pytest.mark.parametrize(
    ("anchor", "periods", "expected"),
    [
        ("2025-01-31T10:00:00", 1, "2025-02-28T10:00:00"),
        ("2025-01-31T10:00:00", 2, "2025-03-31T10:00:00"),
        ("2024-01-31T10:00:00", 1, "2024-02-29T10:00:00"),
        ("2025-11-15T00:00:00", 2, "2026-01-15T00:00:00"),
    ],
)
def test_monthly_periods_keep_the_anchor_day_clamped_to_the_month_end(anchor: str, periods: int, expected: str) -> None:
    # Given a billing anchor; When it is moved by whole months; Then it lands on the same day, or the month's end
    def ts(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())

    assert add_interval(ts(anchor), "month", 1, periods) == ts(expected)
