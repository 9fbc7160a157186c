"""Subscriptions paid from the credit balance: subscribe (one period, atomically), cancel at period
end, and the scheduled expiry run (renew from credits, otherwise revoke the keys and expire)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from llm_platform.config import get_settings
from llm_platform.core.clock import from_iso, to_iso, utc_now
from llm_platform.core.entities import ApiKey, PaymentMethod, Subscription, SubscriptionStatus
from llm_platform.data import accounts as accounts_table
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import ledger
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import WriteRefused, transact
from llm_platform.domain import stripe_payments
from llm_platform.domain.accounts import Caller
from llm_platform.domain.api_keys import (
    account_key_limit,
    new_subscription_key,
    owned_subscription,
    revoke_subscription_keys,
)
from llm_platform.domain.billing import add_months, new_subscription
from llm_platform.domain.errors import Conflict, InsufficientCredit
from llm_platform.domain.money import format_usd
from llm_platform.domain.plans import catalog
from llm_platform.observability import logger


def subscribe_with_credit(
    caller: Caller, plan_slug: str, create_key: bool, key_name: str | None
) -> tuple[Subscription, tuple[ApiKey, str] | None]:
    """Pay one period from the balance. The charge, the subscription, its ledger entry and the optional
    key commit together: a short balance (402) or a concurrent spend leaves nothing behind."""
    plan = catalog().plan(plan_slug)
    subscription = new_subscription(caller.account_id, plan, PaymentMethod.CREDIT, utc_now())
    if create_key:
        subscription = replace(subscription, live_key_count=1)
    key_cap = catalog().account_limits.max_api_keys if create_key else None
    items = [
        accounts_table.charge_item(caller.account_id, plan.price_micros, new_key_cap=key_cap),
        subscriptions_table.put_item(subscription),
        ledger.entry_put(
            caller.account_id,
            amount_micros=-plan.price_micros,
            kind="subscription",
            reference=subscription.subscription_id,
            now=subscription.created_at,
            unique=subscription.subscription_id,
        ),
    ]
    issued = None
    if create_key:
        issued = new_subscription_key(caller.account_id, subscription, key_name or f"{plan.slug}-key")
        items.extend(api_keys_table.put_items(issued[0]))
    try:
        # The token makes a retry after a lost response (botocore retries timeouts) apply once and succeed.
        transact(items, ClientRequestToken=subscription.subscription_id[:36])
    except WriteRefused as refused:
        if refused.reasons[0] != "ConditionalCheckFailed":
            raise
        seen = refused.items[0] or {}
        if key_cap is not None and seen.get("creditBalanceMicros", 0) >= plan.price_micros:
            raise account_key_limit() from refused
        raise InsufficientCredit(
            f"The {plan.slug} plan costs ${format_usd(plan.price_micros)} a period; your credit balance does not "
            "cover it. Top up first.",
        ) from refused
    return subscription, issued


def cancel(caller: Caller, subscription_id: str) -> Subscription:
    subscription = owned_subscription(caller.account_id, subscription_id)
    # A Stripe-paid subscription whose renewal failed can still be cancelled: Stripe stops retrying.
    cancellable = {SubscriptionStatus.ACTIVE}
    if subscription.payment_method == PaymentMethod.STRIPE:
        cancellable.add(SubscriptionStatus.PAST_DUE)
    if subscription.status not in cancellable:
        raise Conflict(f"Subscription {subscription_id} is not active.", code="subscription_not_active")
    if subscription.cancel_at_period_end:
        raise Conflict(f"Subscription {subscription_id} is already cancelled.", code="already_cancelled")
    if subscription.payment_method == PaymentMethod.STRIPE:
        return stripe_payments.cancel_at_period_end(caller, subscription)
    try:
        return subscriptions_table.cancel_at_period_end(subscription_id, caller.account_id)
    except WriteRefused as refused:  # changed since it was read
        raise Conflict(f"Subscription {subscription_id} changed; try again.", code="conflict") from refused


@dataclass
class ExpiryReport:
    renewed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    keys_revoked: int = 0
    revocations_pending: list[str] = field(default_factory=list)  # expired, keys left for the next run


def run_expiry(now: datetime | None = None, deadline: float | None = None) -> ExpiryReport:
    """Idempotent, in two passes. First every due subscription is renewed or marked expired (only if its
    period end is unchanged, so a concurrent renewal wins and keeps its keys): admission checks the
    subscription, so expiring it is what stops its keys, and no customer's key count can delay another's
    renewal. Then the expired ones' keys are revoked in batches, resumably, at most
    ``EXPIRY_REVOCATIONS_PER_RUN`` keys a run and until ``deadline`` (``time.monotonic()``); a
    subscription leaves the due index once all its keys are revoked, so the next run finishes the rest."""
    now = now or utc_now()
    now_iso = to_iso(now)
    report = ExpiryReport()
    failed: list[str] = []
    expired: list[str] = []
    for subscription in subscriptions_table.due(now_iso):
        try:
            if _settle_lapsed(subscription, now, report):
                expired.append(subscription.subscription_id)
        except Exception:
            # One bad subscription must not hold up the others; the run still fails at the end, so
            # Lambda retries it and the on-failure destination and alarm see it.
            logger.exception("expiry failed", extra={"subscriptionId": subscription.subscription_id})
            failed.append(subscription.subscription_id)
    budget = get_settings().expiry_revocations_per_run
    for subscription_id in expired:
        if budget <= 0 or (deadline is not None and time.monotonic() >= deadline):
            report.revocations_pending.append(subscription_id)
            continue
        try:
            revocation = revoke_subscription_keys(subscription_id, now_iso, budget, deadline)
        except Exception:
            logger.exception("revocation failed", extra={"subscriptionId": subscription_id})
            failed.append(subscription_id)
            continue
        budget -= revocation.examined
        report.keys_revoked += revocation.revoked
        if not revocation.done:
            report.revocations_pending.append(subscription_id)
    if failed:
        raise ExpiryIncomplete(failed, report)
    return report


class ExpiryIncomplete(RuntimeError):
    def __init__(self, failed: list[str], report: ExpiryReport) -> None:
        super().__init__(f"{len(failed)} subscription(s) could not be renewed or expired: {failed}")
        self.failed, self.report = failed, report


def _settle_lapsed(subscription: Subscription, now: datetime, report: ExpiryReport) -> bool:
    """Renew or expire one due subscription; True when it is expired and its keys are to be revoked."""
    if subscription.payment_method == PaymentMethod.STRIPE and subscription.status != SubscriptionStatus.EXPIRED:
        _ask_stripe(subscription, now, report)
        after = subscriptions_table.get(subscription.subscription_id)
        return after is not None and after.status == SubscriptionStatus.EXPIRED
    now_iso = to_iso(now)
    renewal = _renews_from_credit(subscription, now)
    if renewal is not None:
        outcome = _renew(subscription, *renewal, now_iso)
        if outcome == "renewed":
            report.renewed.append(subscription.subscription_id)
        if outcome != "short":
            return False  # renewed, or changed by someone else: leave it to the next run
    # (Repeated for one an earlier run or Stripe expired: harmless, and it is still due for its keys.)
    if not subscriptions_table.mark_expired(subscription):
        return False  # renewed or changed since it was read
    report.expired.append(subscription.subscription_id)
    return True


def _ask_stripe(subscription: Subscription, now: datetime, report: ExpiryReport) -> None:
    """Stripe renews, fails or ends its subscriptions and says so by webhook, moments after the period
    ends. Only when that word is overdue by the grace period does the job ask Stripe and apply its
    answer: it never ends a subscription Stripe may still be charging for."""
    grace = timedelta(seconds=get_settings().stripe_renewal_grace_seconds)
    if from_iso(subscription.current_period_end) + grace > now:
        return
    from llm_platform.domain import stripe_webhooks  # the Stripe SDK only when a Stripe subscription is due

    stripe_webhooks.reconcile(subscription, now)
    after = subscriptions_table.get(subscription.subscription_id)
    if after is not None and after.current_period_end > subscription.current_period_end:
        report.renewed.append(subscription.subscription_id)
    elif after is not None and after.stripe_canceled:
        report.expired.append(subscription.subscription_id)


def _renews_from_credit(subscription: Subscription, now: datetime) -> tuple[int, str, str] | None:
    """(price, new period start, new period end) when this subscription should renew from credits.
    Periods stay back to back, except after a lapse longer than a period (e.g. the job was down):
    the proxy refused its keys meanwhile, so the new period starts now instead of charging for it."""
    if subscription.payment_method != PaymentMethod.CREDIT or subscription.cancel_at_period_end:
        return None
    if subscription.status != SubscriptionStatus.ACTIVE:  # e.g. expired by a run that stopped half-way
        return None
    plans = {plan.slug: plan for plan in catalog().plans}
    plan = plans.get(subscription.plan_slug)
    if plan is None:  # the operator withdrew the plan: it runs out
        return None
    start = from_iso(subscription.current_period_end)
    if add_months(start, plan.interval_months) <= now:
        start = now
    return plan.price_micros, to_iso(start), to_iso(add_months(start, plan.interval_months))


def _renew(subscription: Subscription, price: int, new_start: str, new_end: str, now_iso: str) -> str:
    period = f"{subscription.subscription_id}@{subscription.current_period_end}"
    try:
        transact(
            [
                accounts_table.charge_item(subscription.account_id, price),
                subscriptions_table.renew_item(subscription, new_start, new_end),
                ledger.entry_put(
                    subscription.account_id,
                    amount_micros=-price,
                    kind="subscription_renewal",
                    reference=period,
                    now=now_iso,
                    unique=period,
                ),
            ],
            # One renewal per period, even when botocore retries a request whose answer was lost.
            ClientRequestToken=hashlib.sha256(period.encode()).hexdigest()[:36],
        )
    except WriteRefused as refused:
        if refused.reasons[0] == "ConditionalCheckFailed" and refused.reasons[1] != "ConditionalCheckFailed":
            return "short"  # only the balance said no
        return "changed"  # renewed or cancelled meanwhile: never expire on a stale read
    return "renewed"
