"""Response shapes of the management API (camelCase JSON, money as decimal strings)."""

from __future__ import annotations

from typing import Any

from llm_platform.domain.billing import BillingStatus
from llm_platform.domain.clock import to_iso
from llm_platform.domain.entities import ApiKey, KeyStatus, ManagementKey, Subscription
from llm_platform.domain.money import format_usd
from llm_platform.domain.usage import KeyUsage


def _usd(micros: int | None) -> str | None:
    return None if micros is None else format_usd(micros)


def created_api_key(key: ApiKey, plaintext: str) -> dict[str, Any]:
    return {"id": key.key_id, "name": key.name, "apiKey": plaintext}


def api_key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "type": key.kind,
        "prefix": key.display_prefix,
        "status": key.status,
        "disabled": key.status == KeyStatus.DISABLED,
        "subscriptionId": key.subscription_id,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "maxBudget": _usd(key.max_budget_micros),
        "spend": format_usd(key.spend_micros),
        "createdAt": key.created_at,
    }


def management_key(key: ManagementKey, current_key_id: str) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "prefix": key.display_prefix,
        "createdAt": key.created_at,
        "current": key.key_id == current_key_id,
    }


def created_management_key(key: ManagementKey, plaintext: str) -> dict[str, Any]:
    return {"id": key.key_id, "name": key.name, "managementKey": plaintext}


def subscription_summary(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.subscription_id,
        "planSlug": subscription.plan_slug,
        "status": subscription.status,
        "currentPeriodEnd": subscription.current_period_end,
        "cancelAtPeriodEnd": subscription.cancel_at_period_end,
    }


def billing_status(status: BillingStatus) -> dict[str, Any]:
    return {
        "subscriptions": [
            {
                **subscription_summary(subscription),
                "keyCount": len(keys),
                "keys": [{"id": k.key_id, "name": k.name} for k in keys],
            }
            for subscription, keys in status.subscriptions
        ],
        "creditBalance": format_usd(status.credit_balance_micros),
    }


def key_usage(entry: KeyUsage) -> dict[str, Any]:
    key, subscription = entry.key, entry.subscription
    minute_tokens = entry.minute_counters.get("tokens", 0)
    budget_window = None
    if entry.budget_window is not None and subscription is not None:
        spent = entry.budget_counters.get("spendMicros", 0)
        budget_window = {
            "start": to_iso(entry.budget_window.start),
            "end": to_iso(entry.budget_window.end),
            "requests": entry.budget_counters.get("requests", 0),
            "tokens": entry.budget_counters.get("tokens", 0),
            "spend": format_usd(spent),
            "budget": format_usd(subscription.budget_per_window_micros),
            "remaining": format_usd(max(0, subscription.budget_per_window_micros - spent)),
        }
    return {
        "id": key.key_id,
        "name": key.name,
        "type": key.kind,
        "status": key.status,
        "subscription": subscription_summary(subscription) if subscription else None,
        "limits": {
            "rpm": key.rpm,
            "tpm": key.tpm,
            "maxBudget": _usd(key.max_budget_micros),
            "budgetPer5h": _usd(subscription.budget_per_window_micros) if subscription else None,
        },
        "usage": {
            "lifetime": {
                "requests": key.request_count,
                "inputTokens": key.input_tokens,
                "outputTokens": key.output_tokens,
                "totalTokens": key.input_tokens + key.output_tokens,
                "spend": format_usd(key.spend_micros),
            },
            "currentMinute": {
                "start": to_iso(entry.minute.start),
                "end": to_iso(entry.minute.end),
                "requests": entry.minute_counters.get("requests", 0),
                "tokens": minute_tokens,
            },
            "currentBudgetWindow": budget_window,
        },
    }


def wallet(binding: dict[str, Any]) -> dict[str, Any]:
    return {"address": binding["address"], "boundAt": binding["boundAt"]}


def topup_result(result: Any) -> dict[str, Any]:
    if result.pending:
        return {
            "txHash": result.tx_hash,
            "status": "pending",
            "confirmations": result.confirmations,
            "requiredConfirmations": result.required,
        }
    return {
        "txHash": result.tx_hash,
        "credited": format_usd(result.credited_micros),
        "creditBalance": format_usd(result.balance_micros),
    }
