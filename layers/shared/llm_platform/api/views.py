"""Response shapes of the management API (camelCase JSON, money as decimal strings).

Each shape is a TypedDict too: the view functions are typed with them, and the routes name them in their
OpenAPI ``responses`` (``llm_platform.api.openapi.responses``). ``bin/generate-openapi`` turns them into
the document's schemas, closed (no other properties): a field added to a view but not to its shape fails
the contract test (tests/integration/test_api_contract.py). TypedDicts are plain classes at run time: no
model is built unless the document is generated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic reads only this one on Python < 3.12

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.core.entities import (
    ApiKey,
    BudgetReset,
    KeyKind,
    KeyStatus,
    ManagementKey,
    Subscription,
    SubscriptionStatus,
)
from llm_platform.domain.money import format_usd

if TYPE_CHECKING:  # argument types only: every handler imports the views, few of them bill (cold starts)
    from llm_platform.domain.billing import BillingStatus
    from llm_platform.domain.plans import Plan
    from llm_platform.domain.usage import KeyUsage

Usd = str  # US dollars as a decimal string: "25.00"; usage spend may carry 6 decimals
Timestamp = str  # ISO 8601 UTC with Z

# The entities' enums as the shapes' literal types (the document lists these values); tests/unit/test_views.py
# fails when an enum gains a member that is missing here.
KEY_TYPES: dict[KeyKind, Literal["subscription", "credit"]] = {
    KeyKind.SUBSCRIPTION: "subscription",
    KeyKind.CREDIT: "credit",
}
KEY_STATUSES: dict[KeyStatus, Literal["active", "disabled", "revoked"]] = {
    KeyStatus.ACTIVE: "active",
    KeyStatus.DISABLED: "disabled",
    KeyStatus.REVOKED: "revoked",
}
SUBSCRIPTION_STATUSES: dict[SubscriptionStatus, Literal["active", "past_due", "expired"]] = {
    SubscriptionStatus.ACTIVE: "active",
    SubscriptionStatus.PAST_DUE: "past_due",
    SubscriptionStatus.EXPIRED: "expired",
}
BUDGET_RESETS: dict[BudgetReset, Literal["daily", "weekly", "monthly"]] = {
    BudgetReset.DAILY: "daily",
    BudgetReset.WEEKLY: "weekly",
    BudgetReset.MONTHLY: "monthly",
}


# ---------------------------------------------------------------------------------- shapes


class ErrorDetail(TypedDict):
    code: str  # snake_case, stable
    message: str


class ErrorResponse(TypedDict):
    error: ErrorDetail


class CreatedApiKey(TypedDict):
    id: str
    name: str
    apiKey: str  # the secret, shown only here


class ApiKeyView(TypedDict):
    id: str
    name: str
    type: Literal["subscription", "credit"]
    prefix: str  # of the current secret
    status: Literal["active", "disabled", "revoked", "expired"]  # expired: past expiresAt
    disabled: bool
    subscriptionId: str | None
    rpm: int
    tpm: int
    maxBudget: Usd | None
    budgetReset: Literal["daily", "weekly", "monthly"] | None
    expiresAt: Timestamp | None
    spend: Usd  # lifetime
    createdAt: Timestamp


class RotatedApiKey(TypedDict):
    id: str
    name: str
    apiKey: str  # the new secret, shown only here
    previousKeyExpiresAt: Timestamp  # the old secret works until then


class RequestRecord(TypedDict):
    id: str  # the x-request-id of the response
    keyId: str
    model: str
    provider: str | None  # None when no provider answered
    status: int  # the HTTP status the client got
    stream: bool
    promptTokens: int
    completionTokens: int
    cost: Usd
    createdAt: Timestamp
    durationMs: int


class DailyUsageRow(TypedDict):
    date: str  # YYYY-MM-DD, UTC
    keyId: str
    model: str
    requests: int
    promptTokens: int
    completionTokens: int
    spend: Usd


class LedgerEntry(TypedDict):
    id: str
    createdAt: Timestamp
    kind: str  # grant, topup, usage, subscription, …
    amount: Usd  # signed
    reference: str


class RevokedApiKey(TypedDict):
    id: str
    revoked: Literal[True]


class ManagementKeyView(TypedDict):
    id: str
    name: str
    prefix: str
    createdAt: Timestamp
    current: bool  # the key this request was made with


class CreatedManagementKey(TypedDict):
    id: str
    name: str
    managementKey: str  # the secret, shown only here


class DeletedManagementKey(TypedDict):
    id: str
    deleted: Literal[True]


class SubscriptionSummary(TypedDict):
    id: str
    planSlug: str
    status: Literal["active", "past_due", "expired"]
    currentPeriodEnd: Timestamp
    cancelAtPeriodEnd: bool


class KeyRef(TypedDict):
    id: str
    name: str


class SubscriptionBudgetWindow(TypedDict):
    start: Timestamp
    resetsAt: Timestamp  # the window's end: the next window starts with nothing spent
    budget: Usd
    spent: Usd  # by all the subscription's keys in this window


class BillingSubscription(SubscriptionSummary):
    keyCount: int
    keys: list[KeyRef]
    budgetWindow: SubscriptionBudgetWindow | None  # the current 5-hour window; None once expired


class PlanView(TypedDict):
    slug: str
    name: str
    price: Usd  # per interval
    intervalMonths: int
    rpm: int  # per key
    tpm: int  # per key
    budgetPer5h: Usd  # per subscription, each 5-hour window


class BillingStatusView(TypedDict):
    subscriptions: list[BillingSubscription]
    creditBalance: Usd


class Subscribed(TypedDict):
    subscription: SubscriptionSummary
    key: NotRequired[CreatedApiKey]  # with createKey: true


class CancelledSubscription(TypedDict):
    id: str
    cancelAtPeriodEnd: Literal[True]
    currentPeriodEnd: Timestamp


class CheckoutSession(TypedDict):
    sessionUrl: str  # Stripe Checkout: send the customer there


class UsdcWalletBinding(TypedDict):
    challenge: str  # "POST /api/billing/wallets/challenge": a message for the wallet to sign
    bind: str  # "POST /api/billing/wallets": the address and its signature bind the wallet
    verify: str  # "POST /api/billing/verify-topup": claim the transfer
    hint: str  # the steps in words


class UsdcInstructions(TypedDict):
    address: str  # the deposit address
    chain: str  # "base"
    amount: str  # the amount to send, in USDC (= USD)
    walletBinding: UsdcWalletBinding  # only USDC from a wallet bound to the account is credited


class WalletChallenge(TypedDict):
    message: str  # the EIP-4361 message to sign with personal_sign
    expiresAt: Timestamp


class WalletView(TypedDict):
    address: str  # EIP-55 checksummed
    boundAt: Timestamp


class TopupCredited(TypedDict):
    txHash: str
    credited: Usd
    creditBalance: Usd


class TopupPending(TypedDict):
    txHash: str
    status: Literal["pending"]
    confirmations: int
    requiredConfirmations: int


class UsageLimits(TypedDict):
    rpm: int
    tpm: int
    maxBudget: Usd | None
    budgetPer5h: Usd | None


class LifetimeUsage(TypedDict):
    requests: int
    inputTokens: int
    outputTokens: int
    totalTokens: int
    spend: Usd


class MinuteUsage(TypedDict):
    start: Timestamp
    end: Timestamp
    requests: int
    tokens: int


class BudgetWindowUsage(TypedDict):
    start: Timestamp
    end: Timestamp
    requests: int
    tokens: int
    spend: Usd
    budget: Usd
    remaining: Usd


class KeyUsageCounters(TypedDict):
    lifetime: LifetimeUsage
    currentMinute: MinuteUsage
    currentBudgetWindow: BudgetWindowUsage | None  # subscription keys only


class KeyUsageView(TypedDict):
    id: str
    name: str
    type: Literal["subscription", "credit"]
    status: Literal["active", "disabled", "revoked"]
    subscription: SubscriptionSummary | None
    limits: UsageLimits
    usage: KeyUsageCounters


class SignInStarted(TypedDict):
    sent: Literal[True]  # for every well-formed address, known or not


class SignedIn(TypedDict):
    accountId: str
    created: bool  # true when this sign-in created the account


class SignedOut(TypedDict):
    signedOut: Literal[True]


class WebhookReceipt(TypedDict):
    received: Literal[True]
    outcome: Literal["applied", "duplicate", "ignored"]


# ---------------------------------------------------------------------------------- views


def _usd(micros: int | None) -> str | None:
    return None if micros is None else format_usd(micros)


def created_api_key(key: ApiKey, plaintext: str) -> CreatedApiKey:
    return {"id": key.key_id, "name": key.name, "apiKey": plaintext}


def api_key(key: ApiKey) -> ApiKeyView:
    expired = key.status == KeyStatus.ACTIVE and key.is_expired(utc_now())
    return {
        "id": key.key_id,
        "name": key.name,
        "type": KEY_TYPES[key.kind],
        "prefix": key.display_prefix,
        "status": "expired" if expired else KEY_STATUSES[key.status],
        "disabled": key.status == KeyStatus.DISABLED,
        "subscriptionId": key.subscription_id,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "maxBudget": _usd(key.max_budget_micros),
        "budgetReset": BUDGET_RESETS[key.budget_reset] if key.budget_reset else None,
        "expiresAt": key.key_expires_at,
        "spend": format_usd(key.spend_micros),
        "createdAt": key.created_at,
    }


def rotated_api_key(key: ApiKey, plaintext: str, previous_expires_at: str) -> RotatedApiKey:
    return {"id": key.key_id, "name": key.name, "apiKey": plaintext, "previousKeyExpiresAt": previous_expires_at}


def request_record(record: dict[str, Any]) -> RequestRecord:
    return {
        "id": record["requestId"],
        "keyId": record["keyId"],
        "model": record["model"],
        "provider": record.get("provider"),
        "status": record["status"],
        "stream": record["stream"],
        "promptTokens": record["promptTokens"],
        "completionTokens": record["completionTokens"],
        "cost": format_usd(record["costMicros"]),
        "createdAt": record["createdAt"],
        "durationMs": record["durationMs"],
    }


def daily_usage_row(row: dict[str, Any]) -> DailyUsageRow:
    return {
        "date": row["date"],
        "keyId": row["keyId"],
        "model": row["model"],
        "requests": row.get("requests", 0),
        "promptTokens": row.get("promptTokens", 0),
        "completionTokens": row.get("completionTokens", 0),
        "spend": format_usd(row.get("spendMicros", 0)),
    }


def ledger_entry(entry: dict[str, Any]) -> LedgerEntry:
    return {
        "id": entry["entryId"],
        "createdAt": entry["createdAt"],
        "kind": entry["kind"],
        "amount": format_usd(entry["amountMicros"]),
        "reference": entry.get("reference", ""),
    }


def management_key(key: ManagementKey, current_key_id: str | None) -> ManagementKeyView:
    return {
        "id": key.key_id,
        "name": key.name,
        "prefix": key.display_prefix,
        "createdAt": key.created_at,
        "current": key.key_id == current_key_id,
    }


def created_management_key(key: ManagementKey, plaintext: str) -> CreatedManagementKey:
    return {"id": key.key_id, "name": key.name, "managementKey": plaintext}


def subscription_summary(subscription: Subscription) -> SubscriptionSummary:
    return {
        "id": subscription.subscription_id,
        "planSlug": subscription.plan_slug,
        "status": SUBSCRIPTION_STATUSES[subscription.status],
        "currentPeriodEnd": subscription.current_period_end,
        "cancelAtPeriodEnd": subscription.cancel_at_period_end,
    }


def plan(entry: Plan) -> PlanView:
    return {
        "slug": entry.slug,
        "name": entry.name,
        "price": format_usd(entry.price_micros),
        "intervalMonths": entry.interval_months,
        "rpm": entry.rpm,
        "tpm": entry.tpm,
        "budgetPer5h": format_usd(entry.budget_per_window_micros),
    }


def billing_status(status: BillingStatus) -> BillingStatusView:
    def budget_window(subscription: Subscription) -> SubscriptionBudgetWindow | None:
        use = status.budget_windows.get(subscription.subscription_id)
        if use is None:
            return None
        return {
            "start": to_iso(use.window.start),
            "resetsAt": to_iso(use.window.end),
            "budget": format_usd(subscription.budget_per_window_micros),
            "spent": format_usd(use.spent_micros),
        }

    return {
        "subscriptions": [
            {
                **subscription_summary(subscription),
                "keyCount": key_count,
                "keys": [{"id": k.key_id, "name": k.name} for k in keys],
                "budgetWindow": budget_window(subscription),
            }
            for subscription, keys, key_count in status.subscriptions
        ],
        "creditBalance": format_usd(status.credit_balance_micros),
    }


def key_usage(entry: KeyUsage) -> KeyUsageView:
    key, subscription = entry.key, entry.subscription
    minute_tokens = entry.minute_counters.get("tokens", 0)
    budget_window: BudgetWindowUsage | None = None
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
        "type": KEY_TYPES[key.kind],
        "status": KEY_STATUSES[key.status],
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


def wallet(binding: dict[str, Any]) -> WalletView:
    return {"address": binding["address"], "boundAt": binding["boundAt"]}


def topup_result(result: Any) -> TopupCredited | TopupPending:
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
