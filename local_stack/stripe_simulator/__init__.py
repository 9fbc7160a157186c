"""A local Stripe: the slice of the Stripe API the platform uses, a hosted-checkout page and signed webhooks.

The platform's code is the same on AWS and locally; only the API base URL and the keys differ, so this
speaks Stripe's wire format (API version `stripe.api_version`): form-encoded requests, Bearer auth, JSON
objects of the current API (subscription periods on the items, `invoice.parent.subscription_details`),
Stripe's error bodies, idempotent replays, and webhook deliveries signed like Stripe's
(`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of "{t}.{body}" keyed by the endpoint secret).

API (`Authorization: Bearer <api_key>`):
- POST /v1/checkout/sessions, GET /v1/checkout/sessions/{id}, GET …/{id}/line_items, POST …/{id}/expire
- GET|POST|DELETE /v1/subscriptions/{id} (POST: `cancel_at_period_end`, `metadata`, `cancellation_details`)
- POST /v1/prices, POST /v1/products, and GET of any object it holds (prices, products, customers,
  invoices, payment_intents, subscription_items, events); `expand[]` works on the ids it holds.
Events caused by an API call are delivered asynchronously by one background worker, in order: the caller
is often a handler inside the local gateway holding its one-at-a-time lock, which a synchronous delivery
to the gateway would deadlock. `drain()` (or POST /sim/drain) waits until every queued delivery is done.

Pages: GET /c/pay/{session} (the checkout page: what is bought and a **Pay** button), POST /c/pay/{session}
(pays, delivers the events synchronously, then 303 to `success_url`), GET /done and /cancelled (landing
pages for the local stack's success and cancel URLs), GET /sim (a dashboard with Renew / Fail payment /
Retry payment / Cancel buttons, Refund / Dispute / Dispute won buttons on paid top-ups, and the event log).

Test controls (no auth, JSON, deliveries synchronous): POST /sim/sessions/{id}/pay,
POST /sim/sessions/{id}/refund | dispute | dispute-won | dispute-lost (a paid top-up's charge),
POST /sim/subscriptions/{id}/renew | fail-payment | retry-payment | cancel, GET /sim/events,
POST /sim/events/{id}/resend, POST /sim/drain. The same as Python methods of `StripeSimulator`.

The modules: `forms` (form parameters, Stripe's errors, the API version), `state` (the objects, the
operations and controls, the events they emit), `delivery` (the signed webhook deliveries), `api` (the
`/v1` wire API), `pages` (checkout page, dashboard, test controls), `server` (the app over HTTP).
"""

from local_stack.stripe_simulator.delivery import sign_payload
from local_stack.stripe_simulator.forms import STRIPE_API_VERSION, StripeError, parse_params
from local_stack.stripe_simulator.server import StripeSimulatorServer
from local_stack.stripe_simulator.state import StripeSimulator, add_interval

__all__ = [
    "STRIPE_API_VERSION",
    "StripeError",
    "StripeSimulator",
    "StripeSimulatorServer",
    "add_interval",
    "parse_params",
    "sign_payload",
]
