"""``GET /v1/key``: a key reads its own limits, spend and what it may still spend now, from the same
items admission checks (read consistently, so it matches what the next request would meet)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from llm_platform.core.clock import to_iso
from llm_platform.core.entities import KeyKind, KeyStatus
from llm_platform.data import accounts as accounts_table
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data import usage_counters
from llm_platform.domain.money import format_usd
from llm_platform.domain.windows import budget_period, budget_window, budget_window_hours
from llm_platform.proxy.keys import KeySnapshot


def read(snapshot: KeySnapshot, now: datetime) -> dict[str, Any] | None:
    """The key's self-info (plus ``_version``, the key's version as read), or None when it is no longer
    active."""
    key = api_keys_table.get_by_hash(snapshot.key_hash)
    if key is None or key.status != KeyStatus.ACTIVE:
        return None
    window_view = None
    if key.kind == KeyKind.SUBSCRIPTION:
        subscription = subscriptions_table.get(key.subscription_id) if key.subscription_id else None
        if subscription is None:
            return None
        window = budget_window(subscription.created_at, now, budget_window_hours())
        counters = usage_counters.get_many([usage_counters.window_counter(subscription.subscription_id, window.index)])
        counter = next(iter(counters.values()), {})
        budget = subscription.budget_per_window_micros
        remaining = max(0, budget - counter.get("committedMicros", 0)) if subscription.is_active(now) else 0
        window_view = {
            "budget": format_usd(budget),
            "spent": format_usd(counter.get("spendMicros", 0)),
            "resetsAt": to_iso(window.end),
        }
    else:
        account = accounts_table.get(key.account_id)
        remaining = max(0, account.credit_balance_micros if account else 0)
        if key.max_budget_micros is not None:
            spent = key.spend_micros
            if key.budget_reset is not None:
                period = budget_period(key.budget_reset, now)
                counter_id = usage_counters.budget_period_counter(key.key_id, key.budget_reset, period.index)
                spent = usage_counters.get_many([counter_id]).get(counter_id, {}).get("spendMicros", 0)
            remaining = min(remaining, max(0, key.max_budget_micros - spent))
    return {
        "id": key.key_id,
        "name": key.name,
        "type": key.kind.value if isinstance(key.kind, KeyKind) else key.kind,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "maxBudget": format_usd(key.max_budget_micros) if key.max_budget_micros is not None else None,
        "budgetReset": key.budget_reset,
        "expiresAt": key.key_expires_at,
        "spend": format_usd(key.spend_micros),
        "remaining": format_usd(remaining),
        "window": window_view,
        "_version": key.version,
    }
