"""The simulator's web pages and test controls: the hosted checkout page (``/c/pay/{session}``, with its
**Pay** button), the landing pages of the local stack's success and cancel URLs, the dashboard (``/sim``)
with its buttons, and the JSON test controls under ``/sim/…``."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from local_stack.stripe_simulator.forms import STRIPE_API_VERSION, StripeError
from local_stack.stripe_simulator.state import StripeSimulator, format_amount


def format_interval(recurring: dict[str, Any] | None) -> str:
    if not recurring:
        return ""
    interval, count = recurring["interval"], recurring["interval_count"]
    return f"per {interval}" if count == 1 else f"every {count} {interval}s"


def _describe(simulator: StripeSimulator, session_id: str) -> tuple[dict[str, Any], list[tuple[str, str]], str] | None:
    """The session, its lines as (what, price) and the total as text, for the page; None if unknown."""
    found = simulator.checkout_lines(session_id)
    if found is None:
        return None
    session, items, recurring = found
    lines = []
    for name, price, quantity in items:
        what = f"{name} × {quantity}" if quantity != 1 else name
        amount = format_amount(price["unit_amount"] * quantity, price["currency"])
        lines.append((what, f"{amount} {format_interval(price['recurring'])}".strip()))
    total = format_amount(session["amount_total"], session["currency"])
    return session, lines, f"{total} {format_interval(recurring)}".strip()


class SimulatorPages:
    """The route handlers of the pages and test controls, over one simulator."""

    def __init__(self, simulator: StripeSimulator) -> None:
        self.simulator = simulator

    async def checkout_page(self, request: Request) -> Response:
        self.simulator.remember_base_url(str(request.base_url))
        session_id = request.path_params["session_id"]
        described = _describe(self.simulator, session_id)
        if described is None:
            return _page("Checkout session not found", "<h1>Not found</h1><p>No such checkout session.</p>", 404)
        session, lines, total_text = described
        rows = "".join(
            f'<tr><td class="what">{html.escape(what)}</td><td class="price">{html.escape(price)}</td></tr>'
            for what, price in lines
        )
        summary = (
            f'<table id="items">{rows}</table>'
            f'<p id="total">Total due today: <strong>{html.escape(total_text)}</strong></p>'
        )
        cancel = (
            f'<p><a id="cancel" href="{html.escape(session["cancel_url"])}">Cancel and go back</a></p>'
            if session["cancel_url"]
            else ""
        )
        if session["status"] == "complete":
            body = f'<h1>Paid</h1>{summary}<p id="status">This checkout session is paid.</p>'
        elif session["status"] == "expired":
            body = f'<h1>Expired</h1>{summary}<p id="status">This checkout session has expired.</p>{cancel}'
        else:
            email = session["customer_email"] or ""
            body = (
                f"<h1>{'Subscribe' if session['mode'] == 'subscription' else 'Pay'}</h1>{summary}"
                f'<form method="post" action="/c/pay/{html.escape(session_id)}">'
                f'<label>Email <input name="email" type="email" value="{html.escape(email)}" '
                f'placeholder="customer@example.com"></label>'
                '<p class="card">Card: 4242 4242 4242 4242 (test mode, nothing is charged)</p>'
                '<button id="pay" type="submit">Pay</button></form>'
                f"{cancel}"
            )
        return _page(f"Pay {total_text} — Stripe simulator", body)

    async def checkout_pay(self, request: Request) -> Response:
        self.simulator.remember_base_url(str(request.base_url))
        session_id = request.path_params["session_id"]
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        try:
            result = await run_in_threadpool(self.simulator.pay, session_id, form.get("email") or None)
        except StripeError as error:
            if error.status == 404:
                return _page("Checkout session not found", "<h1>Not found</h1><p>No such checkout session.</p>", 404)
            return _page("Checkout session expired", "<h1>Expired</h1><p>This checkout session has expired.</p>", 400)
        return RedirectResponse(result["redirect_url"], status_code=303)

    async def done_page(self, request: Request) -> Response:
        session_id = request.query_params.get("session_id", "")
        session = self.simulator.session(session_id)
        status = f" ({session['status']}, payment {session['payment_status']})" if session else ""
        sent = (
            f"Its events were sent to {self.simulator.webhook_url}."
            if self.simulator.webhook_url
            else "No webhook URL is set: its events were recorded, not delivered."
        )
        return _page(
            "Payment complete",
            f'<h1>Payment complete</h1><p>Checkout session <code id="session-id">{html.escape(session_id)}</code>'
            f"{html.escape(status)}</p><p>{html.escape(sent)}"
            ' See the <a href="/sim">simulator dashboard</a>.</p>',
        )

    async def cancelled_page(self, request: Request) -> Response:
        return _page("Payment cancelled", "<h1>Payment cancelled</h1><p>Nothing was charged.</p>")

    # Test controls ------------------------------------------------------------------------------------

    async def sim_events(self, request: Request) -> Response:
        return JSONResponse({"events": self.simulator.events(request.query_params.get("type"))})

    async def sim_resend(self, request: Request) -> Response:
        try:
            delivery = await run_in_threadpool(self.simulator.resend, request.path_params["event_id"])
        except StripeError as error:
            return JSONResponse(error.body(), error.status)
        return await _control_response(request, {"events": [delivery]})

    async def sim_drain(self, request: Request) -> Response:
        timeout = float(request.query_params.get("timeout", "10"))
        drained = await run_in_threadpool(self.simulator.drain, timeout)
        return JSONResponse({"drained": drained}, 200 if drained else 504)

    async def sim_pay(self, request: Request) -> Response:
        self.simulator.remember_base_url(str(request.base_url))
        try:
            result = await run_in_threadpool(self.simulator.pay, request.path_params["session_id"])
        except StripeError as error:
            return JSONResponse(error.body(), error.status)
        return JSONResponse(result)

    async def sim_chargeback(self, request: Request) -> Response:
        actions: dict[str, Callable[[str], dict[str, Any]]] = {
            "refund": self.simulator.refund,
            "dispute": self.simulator.dispute,
            "dispute-won": lambda session_id: self.simulator.dispute(session_id, "won"),
            "dispute-lost": lambda session_id: self.simulator.dispute(session_id, "lost"),
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": {"message": "Unknown action", "type": "invalid_request_error"}}, 404)
        try:
            result = await run_in_threadpool(action, request.path_params["session_id"])
        except StripeError as error:
            return JSONResponse(error.body(), error.status)
        return await _control_response(request, result)

    async def sim_subscription(self, request: Request) -> Response:
        actions = {
            "renew": self.simulator.renew,
            "fail-payment": self.simulator.fail_payment,
            "retry-payment": self.simulator.retry_payment,
            "cancel": self.simulator.cancel,
        }
        action = actions.get(request.path_params["action"])
        if action is None:
            return JSONResponse({"error": {"message": "Unknown action", "type": "invalid_request_error"}}, 404)
        try:
            result = await run_in_threadpool(action, request.path_params["subscription_id"])
        except StripeError as error:
            return JSONResponse(error.body(), error.status)
        return await _control_response(request, result)

    async def dashboard(self, request: Request) -> Response:
        self.simulator.remember_base_url(str(request.base_url))
        sessions = list(reversed(self.simulator.sessions()))
        subscriptions = list(reversed(self.simulator.subscriptions()))
        events = list(reversed(self.simulator.events()))[:100]
        esc = html.escape

        def when(ts: int | None) -> str:
            return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else ""

        def button(path: str, label: str) -> str:
            return (
                f'<form method="post" action="{esc(path)}" class="inline"><input type="hidden" name="next" '
                f'value="/sim"><button type="submit">{esc(label)}</button></form>'
            )

        session_rows = "".join(
            f'<tr><td><a href="/c/pay/{esc(s["id"])}">{esc(s["id"][:24])}…</a></td><td>{esc(s["mode"])}</td>'
            f"<td>{esc(s['status'])} / {esc(s['payment_status'])}</td>"
            f"<td>{esc(format_amount(s['amount_total'], s['currency']))}</td>"
            f"<td>{esc(s['client_reference_id'] or '')}</td><td>{esc(json.dumps(s['metadata']))}</td>"
            f"<td>{esc(s['subscription'] or s['payment_intent'] or '')}</td><td>"
            + (
                button(f"/sim/sessions/{s['id']}/refund", "Refund")
                + button(f"/sim/sessions/{s['id']}/dispute", "Dispute")
                + button(f"/sim/sessions/{s['id']}/dispute-won", "Dispute won")
                if s["mode"] == "payment" and s["payment_status"] == "paid"
                else ""
            )
            + "</td></tr>"
            for s in sessions
        )
        subscription_rows = "".join(
            f"<tr><td>{esc(s['id'])}</td><td>{esc(s['status'])}</td>"
            f"<td>{esc(when(s['items']['data'][0]['current_period_start']))} → "
            f"{esc(when(s['items']['data'][0]['current_period_end']))}</td>"
            f"<td>{'yes' if s['cancel_at_period_end'] else 'no'}</td><td>{esc(json.dumps(s['metadata']))}</td><td>"
            + (
                ""
                if s["status"] == "canceled"
                else button(f"/sim/subscriptions/{s['id']}/renew", "Renew")
                + button(f"/sim/subscriptions/{s['id']}/fail-payment", "Fail payment")
                + (
                    button(f"/sim/subscriptions/{s['id']}/retry-payment", "Retry payment")
                    if s["status"] == "past_due"
                    else ""
                )
                + button(f"/sim/subscriptions/{s['id']}/cancel", "Cancel")
            )
            + "</td></tr>"
            for s in subscriptions
        )

        def statuses(deliveries: list[dict[str, Any]]) -> str:
            return ", ".join(str(d["status"] or d["error"]) for d in deliveries) or "queued"

        event_rows = "".join(
            f"<tr><td>{esc(e['id'])}</td><td>{esc(e['type'])}</td><td>{esc(when(e['event']['created']))}</td>"
            f"<td>{esc(statuses(e['deliveries']))}</td><td>{button('/sim/events/' + e['id'] + '/resend', 'Resend')}"
            "</td></tr>"
            for e in events
        )
        body = (
            "<h1>Stripe simulator</h1>"
            f"<p>API base: <code>{esc(self.simulator.base_url or '')}</code> · webhooks to "
            f"<code>{esc(self.simulator.webhook_url or '(not set)')}</code> · "
            f"API version <code>{esc(STRIPE_API_VERSION)}</code></p>"
            "<h2>Checkout sessions</h2><table><tr><th>id</th><th>mode</th><th>status</th><th>amount</th>"
            f"<th>client_reference_id</th><th>metadata</th><th>result</th><th></th></tr>{session_rows}</table>"
            "<h2>Subscriptions</h2><table><tr><th>id</th><th>status</th><th>current period</th>"
            f"<th>cancel at period end</th><th>metadata</th><th></th></tr>{subscription_rows}</table>"
            "<h2>Events (newest first)</h2><table><tr><th>id</th><th>type</th><th>created</th><th>deliveries</th>"
            f"<th></th></tr>{event_rows}</table>"
        )
        return _page("Stripe simulator", body)


async def _control_response(request: Request, result: dict[str, Any]) -> Response:
    """JSON, or back to the dashboard for its forms (they send next=/sim)."""
    body = (await request.body()).decode("utf-8", "replace")
    target = dict(parse_qsl(body)).get("next") if body else None
    if target and target.startswith("/"):
        return RedirectResponse(target, status_code=303)
    return JSONResponse(result)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem;color:#1a1f36}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{border-bottom:1px solid #e3e8ee;padding:.3rem .6rem;"
    "text-align:left;font-size:.9rem}button{background:#635bff;color:#fff;border:0;border-radius:4px;"
    "padding:.5rem 1.2rem;font-size:1rem;cursor:pointer}form.inline{display:inline-block;margin:.1rem .3rem .1rem 0}"
    "form.inline button{font-size:.8rem;padding:.2rem .6rem}.card{color:#697386}label{display:block;margin:.5rem 0}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>",
        status_code=status,
    )
