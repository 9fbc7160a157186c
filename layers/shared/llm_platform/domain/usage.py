"""Per-key usage: lifetime totals (on the key) and the current windows (the key's minute, the
subscription's 5-hour budget window), read from the same counters the proxy enforces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_platform.core.clock import utc_now
from llm_platform.core.entities import ApiKey, Subscription
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data import usage_counters
from llm_platform.domain import listing
from llm_platform.domain.accounts import Caller
from llm_platform.domain.plans import catalog
from llm_platform.domain.windows import Window, budget_window, minute_window


@dataclass(frozen=True, slots=True)
class KeyUsage:
    key: ApiKey
    subscription: Subscription | None
    minute: Window
    minute_counters: dict[str, Any]
    budget_window: Window | None
    budget_counters: dict[str, Any]


def usage_report(
    caller: Caller, limit: int = listing.DEFAULT_LIMIT, cursor: str | None = None
) -> listing.Listing[KeyUsage]:
    """A page of every key's usage (revoked keys included): pages follow key ids, each page in creation order;
    only the subscriptions of the page's keys are read."""
    now = utc_now()
    after = listing.after(caller.account_id, "usage", cursor)
    page, next_after = api_keys_table.page_for_account(caller.account_id, after, limit)
    keys = sorted(page, key=lambda k: k.created_at)
    subscriptions: dict[str, Subscription] = {}
    for subscription_id in dict.fromkeys(k.subscription_id for k in keys if k.subscription_id):
        subscription = subscriptions_table.get(subscription_id)
        if subscription is not None and subscription.account_id == caller.account_id:
            subscriptions[subscription_id] = subscription
    minute = minute_window(now)
    hours = catalog().budget_window_hours
    windows = {sub_id: budget_window(sub.created_at, now, hours) for sub_id, sub in subscriptions.items()}
    counters = usage_counters.get_many(
        [usage_counters.minute_counter(k.key_id, minute.index) for k in keys]
        + [usage_counters.window_counter(sub_id, w.index) for sub_id, w in windows.items()]
    )

    report = []
    for key in keys:
        subscription = subscriptions.get(key.subscription_id) if key.subscription_id else None
        window = windows.get(subscription.subscription_id) if subscription else None
        window_counters: dict[str, Any] = {}
        if subscription is not None and window is not None:
            window_counters = counters.get(
                usage_counters.window_counter(subscription.subscription_id, window.index), {}
            )
        report.append(
            KeyUsage(
                key=key,
                subscription=subscription,
                minute=minute,
                minute_counters=counters.get(usage_counters.minute_counter(key.key_id, minute.index), {}),
                budget_window=window,
                budget_counters=window_counters,
            )
        )
    return listing.Listing(report, listing.cursor(caller.account_id, "usage", next_after))
