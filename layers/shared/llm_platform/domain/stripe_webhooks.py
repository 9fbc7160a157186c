"""Stripe webhooks: each verified event applied at most once, in the same transaction as its effect,
whatever the order and however often Stripe delivers it.

Subscription events are reduced to a ``SubscriptionFact`` (what Stripe said about one subscription,
and when) and merged into our copy by rules that make the order irrelevant:
- the paid-through period only moves forward;
- the status and the cancel flag each come from the newest observation (event ``created``) that
  speaks of them; older ones lose;
- a subscription Stripe ended stays ended.
The merge is a read-modify-write guarded by the item's revision, so concurrent deliveries cannot
lose each other's changes; the event's dedup record commits in that same transaction.
Top-ups are credited once per Checkout Session (and once per event), in one transaction with the ledger."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.core.entities import PaymentMethod, Subscription, SubscriptionStatus
from llm_platform.data import accounts as accounts_table
from llm_platform.data import ledger, payments, stripe_api
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import WriteRefused, transact
from llm_platform.domain.api_keys import REVOCATION_BATCH, revoke_subscription_keys
from llm_platform.domain.errors import BadRequest, ServiceUnavailable
from llm_platform.domain.plans import catalog
from llm_platform.domain.stripe_payments import (
    MICROS_PER_CENT,
    PURPOSE_TOPUP,
    stripe_subscription_local_id,
)
from llm_platform.observability import logger

_MERGE_ATTEMPTS = 8


class Outcome(StrEnum):
    APPLIED = "applied"  # changed something
    DUPLICATE = "duplicate"  # this event (or this payment) was applied before
    IGNORED = "ignored"  # nothing for this platform in it (unknown type, not ours, not paid yet)


class InvalidSignature(BadRequest):
    code = "invalid_signature"


class ConcurrentChange(RuntimeError):
    """The subscription kept changing under the merge: Stripe gets a 500 and delivers again."""


# ---------------------------------------------------------------- Stripe's shapes (what we read of them)
class _Stripe(BaseModel):
    # Stripe adds fields in every API version: read what we need, ignore the rest.
    model_config = ConfigDict(extra="ignore")


class _EventData(_Stripe):
    object: dict[str, Any]


class Event(_Stripe):
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(max_length=255)
    created: int
    data: _EventData


class CheckoutSession(_Stripe):
    id: str = Field(max_length=255)
    mode: str
    payment_status: str
    client_reference_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    subscription: str | None = None
    amount_subtotal: int | None = None
    currency: str | None = None
    payment_intent: str | None = None


class Charge(_Stripe):
    id: str = Field(max_length=255)
    amount_refunded: int = Field(ge=0)
    currency: str | None = None
    payment_intent: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class Dispute(_Stripe):
    id: str = Field(max_length=255)
    amount: int = Field(ge=0)
    currency: str | None = None
    charge: str | None = None
    payment_intent: str | None = None
    status: str


class _Period(_Stripe):
    start: int
    end: int


class _SubscriptionItem(_Stripe):
    current_period_start: int | None = None
    current_period_end: int | None = None


class _List(_Stripe):
    data: list[dict[str, Any]] = Field(default_factory=list)


class StripeSubscription(_Stripe):
    id: str = Field(max_length=255)
    status: str
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    items: _List = Field(default_factory=_List)
    # API versions before 2025-03-31 kept the period on the subscription, not its items.
    current_period_start: int | None = None
    current_period_end: int | None = None


class _SubscriptionDetails(_Stripe):
    subscription: str | None = None
    metadata: dict[str, str] | None = None


class _InvoiceParent(_Stripe):
    subscription_details: _SubscriptionDetails | None = None


class _InvoiceLine(_Stripe):
    period: _Period
    parent: dict[str, Any] | None = None


class Invoice(_Stripe):
    id: str = Field(max_length=255)
    parent: _InvoiceParent | None = None
    lines: _List = Field(default_factory=_List)
    # API versions before 2025-03-31: the subscription and its metadata at the top level.
    subscription: str | None = None
    subscription_details: _SubscriptionDetails | None = None


# ---------------------------------------------------------------- facts and the merge
@dataclass(frozen=True, slots=True)
class SubscriptionFact:
    """What one event says about one Stripe subscription, observed at ``observed_at`` (Unix seconds)."""

    stripe_subscription_id: str
    observed_at: int
    account_id: str | None = None
    plan_slug: str | None = None
    status: SubscriptionStatus | None = None  # None: says nothing about it
    period: tuple[int, int] | None = None  # (start, end), Unix seconds
    cancel_at_period_end: bool | None = None
    canceled: bool = False  # Stripe ended it: final
    # An invoice's status speaks only of its own period: a late payment (or failure) of an older
    # invoice must not change the status of a newer period.
    status_of_period_only: bool = False


# Stripe subscription status → ours. "incomplete" (first payment pending) says nothing yet.
_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
}
_ENDED = {"canceled", "incomplete_expired"}


def _iso(seconds: int) -> str:
    return to_iso(datetime.fromtimestamp(seconds, UTC))


def merge(current: Subscription | None, fact: SubscriptionFact, now: datetime) -> Subscription | None:
    """Our subscription after ``fact``; None when there is nothing to keep (unknown and not creatable)."""
    if current is None:
        current = _new_from(fact, now)
        if current is None:
            return None
    if current.stripe_canceled:
        return current  # final: a late "paid" or "updated" never brings it back
    start, end = current.current_period_start, current.current_period_end
    if fact.period is not None and _iso(fact.period[1]) > end:
        start, end = _iso(fact.period[0]), _iso(fact.period[1])
    status, status_at = current.status, current.stripe_status_at
    cancel, cancel_at = current.cancel_at_period_end, current.stripe_cancel_flag_at
    # Each field takes the newest observation that speaks of it (an invoice says nothing of the cancel
    # flag); same-second observations apply in arrival order.
    if fact.canceled:
        status, status_at = SubscriptionStatus.EXPIRED, max(status_at or 0, fact.observed_at)
    elif (
        fact.status is not None
        and (status_at is None or fact.observed_at >= status_at)
        and not (fact.status_of_period_only and fact.period is not None and _iso(fact.period[1]) < end)
    ):
        status, status_at = fact.status, fact.observed_at
    if fact.cancel_at_period_end is not None and (cancel_at is None or fact.observed_at >= cancel_at):
        cancel, cancel_at = fact.cancel_at_period_end, fact.observed_at
    return replace(
        current,
        status=status,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=cancel,
        stripe_status_at=status_at,
        stripe_cancel_flag_at=cancel_at,
        stripe_canceled=current.stripe_canceled or fact.canceled,
    )


def _new_from(fact: SubscriptionFact, now: datetime) -> Subscription | None:
    if not (fact.account_id and fact.plan_slug and fact.period) or (fact.status is None and not fact.canceled):
        return None
    plan = {plan.slug: plan for plan in catalog().plans}.get(fact.plan_slug)
    if plan is None:
        logger.error(
            "stripe subscription for an unknown plan",
            extra={"planSlug": fact.plan_slug, "stripeSubscriptionId": fact.stripe_subscription_id},
        )
        return None
    return Subscription(
        subscription_id=stripe_subscription_local_id(fact.stripe_subscription_id),
        account_id=fact.account_id,
        plan_slug=plan.slug,
        status=SubscriptionStatus.EXPIRED,  # the fact sets the status
        payment_method=PaymentMethod.STRIPE,
        created_at=to_iso(now),
        current_period_start=_iso(fact.period[0]),
        current_period_end=_iso(fact.period[1]),
        rpm=plan.rpm,
        tpm=plan.tpm,
        budget_per_window_micros=plan.budget_per_window_micros,
        stripe_subscription_id=fact.stripe_subscription_id,
    )


def apply_fact(fact: SubscriptionFact, event_key: str | None, event_type: str) -> Outcome:
    """Merge ``fact`` into our copy and record ``event_key`` in one transaction, over the revision read."""
    local_id = stripe_subscription_local_id(fact.stripe_subscription_id)
    now = utc_now()
    for _ in range(_MERGE_ATTEMPTS):
        current = subscriptions_table.get(local_id)
        merged = merge(current, fact, now)
        items = []
        if event_key is not None:
            owner = current or merged
            account = owner.account_id if owner else fact.account_id
            record = payments.record_item(
                event_key, account, kind="stripe_event", now=to_iso(now), details={"eventType": event_type}
            )
            items.append(record)
        revised = None
        if merged is not None and merged != current:
            revised = replace(merged, revision=current.revision + 1 if current else 0)
            items.append(subscriptions_table.write_over_item(revised, current))
        changed = revised is not None
        if not items:
            return Outcome.IGNORED
        try:
            transact(items)
        except WriteRefused as refused:
            if event_key is not None and refused.reasons[0] == "ConditionalCheckFailed":
                _finish_ended(current)
                return Outcome.DUPLICATE
            continue  # the subscription changed since it was read: merge again
        if merged is None:
            logger.info("stripe subscription event not for this platform", extra={"eventType": event_type})
        _finish_ended(revised if changed else current)
        return Outcome.APPLIED if changed else Outcome.IGNORED
    raise ConcurrentChange(f"subscription {local_id} kept changing")


def _finish_ended(subscription: Subscription | None) -> None:
    """Revoke the keys of a subscription Stripe ended: one bounded batch here (admission already refuses
    them, as the subscription is expired); the expiry job revokes any rest, resumably."""
    if subscription is not None and subscription.stripe_canceled:
        revoked = revoke_subscription_keys(subscription.subscription_id, to_iso(utc_now()), REVOCATION_BATCH).revoked
        if revoked:
            logger.info(
                "stripe subscription ended, keys revoked",
                extra={"subscriptionId": subscription.subscription_id, "keysRevoked": revoked},
            )


# ---------------------------------------------------------------- from events to effects
def subscription_fact(
    subscription: StripeSubscription, observed_at: int, defaults: dict[str, str] | None = None
) -> SubscriptionFact:
    metadata = {**(defaults or {}), **subscription.metadata}
    items = [_SubscriptionItem.model_validate(item) for item in subscription.items.data]
    periods = [(i.current_period_start, i.current_period_end) for i in items if i.current_period_end is not None]
    if subscription.current_period_end is not None:
        periods.append(
            (subscription.current_period_start or subscription.current_period_end, subscription.current_period_end)
        )
    period = None
    if periods:
        start, end = max(periods, key=lambda p: p[1])
        period = (start if start is not None else end, end)
    cancel = subscription.cancel_at_period_end or (
        subscription.cancel_at is not None and period is not None and subscription.cancel_at <= period[1]
    )
    return SubscriptionFact(
        stripe_subscription_id=subscription.id,
        observed_at=observed_at,
        account_id=metadata.get("accountId"),
        plan_slug=metadata.get("planSlug"),
        status=_STATUS.get(subscription.status),
        period=period,
        cancel_at_period_end=cancel,
        canceled=subscription.status in _ENDED,
    )


def invoice_fact(invoice: Invoice, observed_at: int, status: SubscriptionStatus) -> SubscriptionFact | None:
    """The subscription an invoice bills (current API: ``invoice.parent.subscription_details``) and the
    period of its subscription lines; None for an invoice of no subscription."""
    details = invoice.parent.subscription_details if invoice.parent else None
    details = details or invoice.subscription_details
    stripe_id = (details.subscription if details else None) or invoice.subscription
    lines = [_InvoiceLine.model_validate(line) for line in invoice.lines.data]
    if stripe_id is None:  # fall back to the lines' own parent
        for line in lines:
            item = (line.parent or {}).get("subscription_item_details") or {}
            stripe_id = stripe_id or item.get("subscription")
    if stripe_id is None:
        return None
    own = [
        line
        for line in lines
        if ((line.parent or {}).get("subscription_item_details") or {}).get("subscription", stripe_id) == stripe_id
    ]
    period = None
    if own:
        latest = max(own, key=lambda line: line.period.end)
        period = (latest.period.start, latest.period.end)
    metadata = (details.metadata if details else None) or {}
    return SubscriptionFact(
        stripe_subscription_id=stripe_id,
        observed_at=observed_at,
        account_id=metadata.get("accountId"),
        plan_slug=metadata.get("planSlug"),
        status=status,
        period=period,
        status_of_period_only=True,
    )


def _checkout_completed(event: Event) -> Outcome:
    session = CheckoutSession.model_validate(event.data.object)
    if session.payment_status not in ("paid", "no_payment_required"):
        return Outcome.IGNORED  # e.g. a bank debit still clearing: async_payment_succeeded follows
    if session.mode == "payment":
        return _credit_topup(event, session)
    if session.mode != "subscription" or not session.subscription:
        return Outcome.IGNORED
    if payments.is_recorded(_event_key(event)):
        return Outcome.DUPLICATE  # without asking Stripe again (a repeat during an outage is still done)
    # The session names the subscription only by id: its state and period come from Stripe itself.
    raw = stripe_api.retrieve_subscription(session.subscription)
    retrieved_at = int(time.time())  # Stripe's state as of now, newer than the event
    defaults = {"accountId": session.client_reference_id or "", **session.metadata}
    fact = subscription_fact(StripeSubscription.model_validate(raw), max(event.created, retrieved_at), defaults)
    return apply_fact(fact, _event_key(event), event.type)


def _credit_topup(event: Event, session: CheckoutSession) -> Outcome:
    account_id = session.client_reference_id or session.metadata.get("accountId")
    if session.metadata.get("purpose") != PURPOSE_TOPUP or not account_id:
        return Outcome.IGNORED  # a payment of something else on the operator's Stripe account
    if session.currency != "usd" or session.amount_subtotal is None or session.amount_subtotal <= 0:
        logger.error(
            "stripe top-up not credited: unexpected amount",
            extra={"checkoutSessionId": session.id, "currency": session.currency},
        )
        return Outcome.IGNORED
    reference = f"stripe#checkout#{session.id}"
    now = to_iso(utc_now())
    details = {"stripeEventId": event.id, "checkoutSessionId": session.id}
    also = []
    if session.payment_intent:  # what a later refund or dispute of its charge finds the account by
        also.append(
            payments.mapping_item(
                _payment_key(session.payment_intent),
                account_id,
                kind="stripe_payment",
                now=now,
                details={**details, "creditMicros": session.amount_subtotal * MICROS_PER_CENT},
            )
        )
    try:
        payments.credit_once(
            [_event_key(event), reference],  # the event once, and the session once whichever event pays it
            account_id,
            session.amount_subtotal * MICROS_PER_CENT,
            kind="topup_stripe",
            reference=reference,
            now=now,
            details=details,
            also=also,
        )
    except WriteRefused as refused:
        if "ConditionalCheckFailed" in refused.reasons[:2]:
            return Outcome.DUPLICATE
        # The account is gone: retrying cannot help, and the money must be refunded by hand.
        logger.error("stripe top-up for an unknown account", extra={"checkoutSessionId": session.id})
        return Outcome.IGNORED
    return Outcome.APPLIED


# ---------------------------------------------------------------- refunds and disputes of card top-ups
def _payment_key(payment_intent: str) -> str:
    return f"stripe#payment#{payment_intent}"


def _topup_account(payment_intent: str | None, metadata: dict[str, str]) -> str | None:
    """The account a card top-up's charge credited: from the payment's record (written with the credit), or
    the charge's own metadata; None for a payment that is not a top-up of this platform."""
    if payment_intent:
        paid = payments.record(_payment_key(payment_intent))
        if paid is not None:
            return paid["accountId"]
    if metadata.get("purpose") == PURPOSE_TOPUP:
        return metadata.get("accountId")
    return None


def _debit(account_id: str, amount_micros: int, *, kind: str, reference: str, now: str) -> list[dict[str, Any]]:
    """The balance change (it may go negative: the money is gone) and its ledger entry."""
    return [
        accounts_table.credit_balance_update(account_id, amount_micros),
        ledger.entry_put(account_id, amount_micros=amount_micros, kind=kind, reference=reference, now=now,
                         unique=reference),
    ]  # fmt: skip


def _charge_refunded(event: Event) -> Outcome:
    """Debit what was refunded of a top-up's charge since the last refund seen: once per refund, whatever
    the order (``amount_refunded`` is cumulative; the charge's record keeps what was debited)."""
    charge = Charge.model_validate(event.data.object)
    account_id = _topup_account(charge.payment_intent, charge.metadata)
    if account_id is None:
        logger.info("stripe refund of a payment that is not a top-up", extra={"chargeId": charge.id})
        return Outcome.IGNORED
    if charge.currency not in (None, "usd"):
        logger.error("stripe refund not debited: unexpected currency", extra={"chargeId": charge.id})
        return Outcome.IGNORED
    refunded = charge.amount_refunded * MICROS_PER_CENT
    key = f"stripe#charge#{charge.id}"
    for _ in range(_MERGE_ATTEMPTS):
        state = payments.record(key)
        debited = int(state.get("refundedMicros", 0)) if state else 0
        if refunded <= debited:
            return Outcome.DUPLICATE
        now = to_iso(utc_now())
        items = [
            payments.record_item(_event_key(event), account_id, kind="stripe_event", now=now,
                                 details={"eventType": event.type}),
            payments.state_item(key, account_id, kind="stripe_charge", now=now,
                                expected=None if state is None else {"refundedMicros": debited},
                                refundedMicros=refunded, chargeId=charge.id),
            *_debit(account_id, debited - refunded, kind="refund", reference=f"{key}#refunded#{refunded}", now=now),
        ]  # fmt: skip
        try:
            transact(items)
        except WriteRefused as refused:
            if refused.reasons[0] == "ConditionalCheckFailed":
                return Outcome.DUPLICATE
            continue  # another refund of this charge was applied meanwhile: read it again
        logger.info("stripe refund debited", extra={"chargeId": charge.id, "debitedMicros": refunded - debited})
        return Outcome.APPLIED
    raise ConcurrentChange(f"charge {charge.id} kept changing")


# A dispute's record: "debited" (funds withdrawn), "reinstated" (won: credited back), "closed" (closed in
# our favour before its opening arrived: nothing to debit).
_DISPUTE_DEBITED, _DISPUTE_REINSTATED, _DISPUTE_CLOSED = "debited", "reinstated", "closed"


def _dispute(event: Event) -> Outcome:
    """``charge.dispute.created``: the disputed amount is debited once (Stripe withdraws it at once).
    ``charge.dispute.closed``: won, it is credited back once; lost, the debit stays (and is made if the
    opening never arrived). Inquiries (``warning_*``) move no money. Nothing else is revoked."""
    dispute = Dispute.model_validate(event.data.object)
    if dispute.status.startswith("warning_"):
        return Outcome.IGNORED
    account_id = _topup_account(dispute.payment_intent, {})
    if account_id is None:
        logger.info("stripe dispute of a payment that is not a top-up", extra={"disputeId": dispute.id})
        return Outcome.IGNORED
    if dispute.currency not in (None, "usd"):
        logger.error("stripe dispute not applied: unexpected currency", extra={"disputeId": dispute.id})
        return Outcome.IGNORED
    key, amount = f"stripe#dispute#{dispute.id}", dispute.amount * MICROS_PER_CENT
    won = event.type == "charge.dispute.closed" and dispute.status == "won"
    for _ in range(_MERGE_ATTEMPTS):
        state = payments.record(key)
        current = state.get("state") if state else None
        now = to_iso(utc_now())
        items = [
            payments.record_item(_event_key(event), account_id, kind="stripe_event", now=now,
                                 details={"eventType": event.type}),
        ]  # fmt: skip
        expected = None if state is None else {"state": current}
        if current is None and won:  # closed in our favour before its opening arrived
            items.append(payments.state_item(key, account_id, kind="stripe_dispute", now=now, expected=None,
                                             state=_DISPUTE_CLOSED, amountMicros=amount))  # fmt: skip
        elif current is None:
            items.append(payments.state_item(key, account_id, kind="stripe_dispute", now=now, expected=None,
                                             state=_DISPUTE_DEBITED, amountMicros=amount))  # fmt: skip
            items.extend(_debit(account_id, -amount, kind="chargeback", reference=key, now=now))
        elif state is not None and current == _DISPUTE_DEBITED and won:
            debited = int(state.get("amountMicros", amount))
            items.append(payments.state_item(key, account_id, kind="stripe_dispute", now=now, expected=expected,
                                             state=_DISPUTE_REINSTATED, amountMicros=debited))  # fmt: skip
            items.extend(_debit(account_id, debited, kind="chargeback_reversed", reference=f"{key}#won", now=now))
        else:
            return Outcome.DUPLICATE
        try:
            transact(items)
        except WriteRefused as refused:
            if refused.reasons[0] == "ConditionalCheckFailed":
                return Outcome.DUPLICATE
            continue
        logger.info("stripe dispute applied", extra={"disputeId": dispute.id, "status": dispute.status})
        return Outcome.APPLIED
    raise ConcurrentChange(f"dispute {dispute.id} kept changing")


def _invoice(status: SubscriptionStatus) -> Any:
    def handle(event: Event) -> Outcome:
        fact = invoice_fact(Invoice.model_validate(event.data.object), event.created, status)
        return Outcome.IGNORED if fact is None else apply_fact(fact, _event_key(event), event.type)

    return handle


def _subscription_changed(event: Event) -> Outcome:
    fact = subscription_fact(StripeSubscription.model_validate(event.data.object), event.created)
    return apply_fact(fact, _event_key(event), event.type)


def _subscription_deleted(event: Event) -> Outcome:
    fact = subscription_fact(StripeSubscription.model_validate(event.data.object), event.created)
    return apply_fact(replace(fact, canceled=True, status=SubscriptionStatus.EXPIRED), _event_key(event), event.type)


def reconcile(subscription: Subscription, now: datetime) -> Outcome:
    """Apply Stripe's current state of ``subscription`` (the expiry job, when Stripe's word about a
    period end is overdue: a lost or very late webhook). Stripe decides; nothing is guessed here."""
    stripe_id = subscription.stripe_subscription_id
    if stripe_id is None:  # not paid through Stripe: nothing to ask it
        return Outcome.IGNORED
    try:
        raw = stripe_api.retrieve_subscription(stripe_id)
    except stripe_api.StripeNotFound:
        # Deleted on Stripe's side (e.g. its test data was wiped): nothing will be paid any more.
        fact = SubscriptionFact(stripe_id, _observed(now), canceled=True)
        return apply_fact(fact, None, "reconcile")
    fact = subscription_fact(StripeSubscription.model_validate(raw), _observed(now))
    return apply_fact(fact, None, "reconcile")


def _observed(now: datetime) -> int:
    """When a state read from Stripe's API was observed: the read itself, or the run's clock if later."""
    return max(int(time.time()), int(now.timestamp()))


def _event_key(event: Event) -> str:
    return f"stripe#event#{event.id}"


HANDLERS = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "invoice.paid": _invoice(SubscriptionStatus.ACTIVE),
    "invoice.payment_failed": _invoice(SubscriptionStatus.PAST_DUE),
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_deleted,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute,
    "charge.dispute.closed": _dispute,
}


def handle(payload: bytes, signature_header: str | None) -> tuple[Event, Outcome]:
    """Verify, parse and apply one webhook delivery. Raises InvalidSignature (nothing read, nothing
    changed), BadRequest for a signed body that is not an event, ServiceUnavailable when Stripe is
    not configured; anything else (DynamoDB, Stripe's API) propagates so Stripe delivers again."""
    try:
        raw = stripe_api.verified_event(payload, signature_header)
    except stripe_api.InvalidSignature as error:
        raise InvalidSignature(f"Stripe signature check failed: {error}.") from error
    except stripe_api.StripeNotConfigured as error:
        raise ServiceUnavailable("Stripe webhooks are not configured.", code="stripe_not_configured") from error
    except ValueError as error:
        raise BadRequest("The body is not a Stripe event.", code="invalid_event") from error
    try:
        event = Event.model_validate(raw)
        handler = HANDLERS.get(event.type)
        if handler is None:
            return event, Outcome.IGNORED
        return event, handler(event)
    except ValidationError as error:
        # Signed by Stripe, yet not the shape we read: log it for the operator; a retry would not help.
        logger.error("stripe event not understood", extra={"errors": error.errors(include_url=False)[:5]})
        raise BadRequest("The event does not have the expected shape.", code="invalid_event") from error
