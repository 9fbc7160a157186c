"""What the platform stores. Field names map 1:1 to DynamoDB attributes (snake_case ↔ camelCase)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from llm_platform.core.clock import from_iso


class KeyKind(StrEnum):
    SUBSCRIPTION = "subscription"
    CREDIT = "credit"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    EXPIRED = "expired"


class BudgetReset(StrEnum):
    """When a credit key's ``maxBudget`` spend restarts: calendar-aligned UTC periods."""

    DAILY = "daily"
    WEEKLY = "weekly"  # ISO weeks, from Monday 00:00 UTC
    MONTHLY = "monthly"


class PaymentMethod(StrEnum):
    STRIPE = "stripe"
    CREDIT = "credit"
    GRANT = "grant"  # given by the operator (bin/admin grant-subscription)


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    created_at: str
    credit_balance_micros: int = 0
    management_key_count: int = 0
    api_key_count: int = 0  # keys not revoked (capped per account); absent on accounts from before the cap
    # A hot account's request log and day counters are spread over this many shards (data/log_shards.py).
    log_shards: int | None = None


@dataclass(frozen=True, slots=True)
class ManagementKey:
    key_hash: str
    key_id: str
    account_id: str
    name: str
    display_prefix: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_hash: str
    key_id: str
    account_id: str
    name: str
    display_prefix: str
    kind: KeyKind
    status: KeyStatus
    created_at: str
    rpm: int
    tpm: int
    subscription_id: str | None = None
    max_budget_micros: int | None = None
    # Lifetime usage, added to by the proxy's settle step.
    request_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_micros: int = 0
    updated_at: str | None = None
    revoked_at: str | None = None
    # Credit keys: the maxBudget spend restarts at each calendar boundary (None: a lifetime budget).
    budget_reset: BudgetReset | None = None
    # After this time the key is refused (401 key_expired); None: never.
    key_expires_at: str | None = None
    # Bumped by every change the proxy caches (limits, expiry, rotation): admission proves the cached
    # version is current, so a change applies to the very next request even on a warm instance.
    version: int = 0
    # A hot key's requests write their log record and day counter on one of this many shards
    # (data/log_shards.py); None: unsharded. Only ever raised.
    log_shards: int | None = None
    # Rotation: the item stays keyed by the key's first secret; later secrets are alias items. The
    # current secret's hash, and when this item's own secret stops working (set once rotated away).
    current_secret_hash: str | None = None
    secret_expires_at: str | None = None
    # A hot credit key's number of key shards (issue 16, ``domain.hot_keys``); None: not in shard mode.
    shards: int | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.key_expires_at is not None and from_iso(self.key_expires_at) <= now


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    account_id: str
    plan_slug: str
    status: SubscriptionStatus
    payment_method: PaymentMethod
    created_at: str
    current_period_start: str
    current_period_end: str
    rpm: int
    tpm: int
    budget_per_window_micros: int
    cancel_at_period_end: bool = False
    stripe_subscription_id: str | None = None
    # Stripe-paid only: when the status and the cancel flag applied were observed (event ``created``,
    # Unix seconds: an older observation never overwrites them), and whether Stripe ended it (final).
    stripe_status_at: int | None = None
    stripe_cancel_flag_at: int | None = None
    stripe_canceled: bool = False
    # Bumped by every change, so a read-modify-write (the Stripe webhook) applies only over what it read.
    revision: int = 0
    live_key_count: int = 0  # its keys not revoked (capped by the plan's maxKeys)
    # Once expired: where the revocation of its keys stands (the bySubscription index's last key, JSON).
    revoke_cursor: str | None = None

    def is_active(self, now: datetime) -> bool:
        return self.status == SubscriptionStatus.ACTIVE and from_iso(self.current_period_end) > now
