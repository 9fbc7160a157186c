"""Subscriptions and the credit balance as the customer sees them; operator grants of a plan."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.core.entities import ApiKey, PaymentMethod, Subscription, SubscriptionStatus
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data import usage_counters
from llm_platform.domain.accounts import Caller, get_account
from llm_platform.domain.credentials import new_id
from llm_platform.domain.plans import Plan, catalog
from llm_platform.domain.windows import Window, budget_window


@dataclass(frozen=True, slots=True)
class BudgetWindowUse:
    """A subscription's current 5-hour budget window and what its keys spent in it (the proxy's counter)."""

    window: Window
    spent_micros: int


@dataclass(frozen=True, slots=True)
class BillingStatus:
    subscriptions: list[tuple[Subscription, list[ApiKey], int]]  # with some of its live keys, and their count
    credit_balance_micros: int
    budget_windows: dict[str, BudgetWindowUse]  # by subscription id; expired subscriptions have none


STATUS_KEYS_READ = 1000  # live keys of the account read by GET /api/billing/status, at most
STATUS_KEYS_PER_SUBSCRIPTION = 100  # listed under each subscription, at most


def add_months(moment: datetime, months: int) -> datetime:
    """Same day next month, clamped to the month's last day (Jan 31 → Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def new_subscription(account_id: str, plan: Plan, payment_method: PaymentMethod, start: datetime) -> Subscription:
    return Subscription(
        subscription_id=new_id("sub"),
        account_id=account_id,
        plan_slug=plan.slug,
        status=SubscriptionStatus.ACTIVE,
        payment_method=payment_method,
        created_at=to_iso(start),
        current_period_start=to_iso(start),
        current_period_end=to_iso(add_months(start, plan.interval_months)),
        rpm=plan.rpm,
        tpm=plan.tpm,
        budget_per_window_micros=plan.budget_per_window_micros,
    )


def grant_subscription(account_id: str, plan_slug: str) -> Subscription:
    """Operator-granted plan for one period (bin/admin grant-subscription): no payment involved."""
    get_account(account_id)
    subscription = new_subscription(account_id, catalog().plan(plan_slug), PaymentMethod.GRANT, utc_now())
    subscriptions_table.add(subscription)
    return subscription


def status(caller: Caller) -> BillingStatus:
    now = utc_now()
    account = get_account(caller.account_id)
    subscriptions = sorted(
        subscriptions_table.list_for_account(caller.account_id), key=lambda s: s.created_at, reverse=True
    )
    # Bounded: one page of the account's live keys (at most STATUS_KEYS_READ read), at most
    # STATUS_KEYS_PER_SUBSCRIPTION of them listed under each subscription; keyCount is the subscription's counter.
    live, _ = api_keys_table.page_for_account(caller.account_id, None, STATUS_KEYS_READ, live_only=True)
    live_keys: dict[str, list[ApiKey]] = {}
    for key in sorted(live, key=lambda k: k.created_at):
        if key.subscription_id:
            listed = live_keys.setdefault(key.subscription_id, [])
            if len(listed) < STATUS_KEYS_PER_SUBSCRIPTION:
                listed.append(key)
    # Each subscription's current window, as GET /api/usage and the proxy compute it, even without a key (so the
    # dashboard can say when the budget resets); one batch read of the window counters of those not expired.
    hours = catalog().budget_window_hours
    windows = {
        s.subscription_id: budget_window(s.created_at, now, hours)
        for s in subscriptions
        if s.status != SubscriptionStatus.EXPIRED
    }
    counters = usage_counters.get_many([usage_counters.window_counter(sid, w.index) for sid, w in windows.items()])
    budget_windows = {
        sid: BudgetWindowUse(w, counters.get(usage_counters.window_counter(sid, w.index), {}).get("spendMicros", 0))
        for sid, w in windows.items()
    }
    return BillingStatus(
        subscriptions=[
            (s, keys, max(s.live_key_count, len(keys)))
            for s in subscriptions
            for keys in [live_keys.get(s.subscription_id, [])]
        ],
        credit_balance_micros=account.credit_balance_micros,
        budget_windows=budget_windows,
    )
