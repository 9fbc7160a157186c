"""Consumption keys (``sk_live_…``): subscription keys share their subscription's budget, credit keys
spend the account's prepaid balance (optionally capped by ``maxBudget``). RPM/TPM are per key."""

from __future__ import annotations

from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import WriteRefused
from llm_platform.domain.accounts import Caller
from llm_platform.domain.clock import to_iso, utc_now
from llm_platform.domain.credentials import API_KEY_PREFIX, is_id, issue_secret, new_id
from llm_platform.domain.entities import ApiKey, KeyKind, KeyStatus, Subscription
from llm_platform.domain.errors import Conflict, NotFound
from llm_platform.domain.plans import catalog


def _new_key(account_id: str, name: str, kind: KeyKind, rpm: int, tpm: int, **extra) -> tuple[ApiKey, str]:
    secret = issue_secret(API_KEY_PREFIX)
    key = ApiKey(
        key_hash=secret.key_hash,
        key_id=new_id("key"),
        account_id=account_id,
        name=name,
        display_prefix=secret.display_prefix,
        kind=kind,
        status=KeyStatus.ACTIVE,
        created_at=to_iso(utc_now()),
        rpm=rpm,
        tpm=tpm,
        **extra,
    )
    return key, secret.plaintext


def create_credit_key(
    caller: Caller, name: str, max_budget_micros: int | None, rpm: int | None, tpm: int | None
) -> tuple[ApiKey, str]:
    policy = catalog().credit_keys
    key, plaintext = _new_key(
        caller.account_id,
        name,
        KeyKind.CREDIT,
        rpm=rpm or policy.default_rpm,
        tpm=tpm or policy.default_tpm,
        max_budget_micros=max_budget_micros,
    )
    api_keys_table.add(key)
    return key, plaintext


def owned_subscription(account_id: str, subscription_id: str) -> Subscription:
    subscription = subscriptions_table.get(subscription_id) if is_id(subscription_id, "sub") else None
    if subscription is None or subscription.account_id != account_id:
        raise NotFound(f"Subscription {subscription_id} not found.")
    return subscription


def new_subscription_key(account_id: str, subscription: Subscription, name: str) -> tuple[ApiKey, str]:
    """A key on ``subscription`` with its plan's limits, not yet stored."""
    return _new_key(
        account_id,
        name,
        KeyKind.SUBSCRIPTION,
        rpm=subscription.rpm,
        tpm=subscription.tpm,
        subscription_id=subscription.subscription_id,
    )


def issue_subscription_key(account_id: str, subscription: Subscription, name: str) -> tuple[ApiKey, str]:
    """Mint a key on an active subscription; the insert is conditional on the subscription still being
    active, so a key can never be created on a subscription that lapses concurrently."""
    now = utc_now()
    if not subscription.is_active(now):
        raise Conflict(f"Subscription {subscription.subscription_id} is not active.", code="subscription_not_active")
    key, plaintext = new_subscription_key(account_id, subscription, name)
    try:
        api_keys_table.add(key, subscriptions_table.active_check(subscription.subscription_id, account_id, to_iso(now)))
    except WriteRefused as refused:
        raise Conflict(
            f"Subscription {subscription.subscription_id} is not active.", code="subscription_not_active"
        ) from refused
    return key, plaintext


def create_subscription_key(caller: Caller, name: str, subscription_id: str) -> tuple[ApiKey, str]:
    subscription = owned_subscription(caller.account_id, subscription_id)
    return issue_subscription_key(caller.account_id, subscription, name)


def list_keys(caller: Caller) -> list[ApiKey]:
    """The account's keys that still exist (revoked ones only show up in usage)."""
    keys = api_keys_table.list_for_account(caller.account_id)
    return sorted((k for k in keys if k.status != KeyStatus.REVOKED), key=lambda k: k.created_at)


def _owned_live_key(caller: Caller, key_id: str) -> ApiKey:
    key = api_keys_table.find_for_account(caller.account_id, key_id) if is_id(key_id, "key") else None
    if key is None or key.status == KeyStatus.REVOKED:
        raise NotFound(f"Key {key_id} not found.")
    return key


def update_key(caller: Caller, key_id: str, *, name: str | None, disabled: bool | None) -> ApiKey:
    key = _owned_live_key(caller, key_id)
    status = None if disabled is None else (KeyStatus.DISABLED if disabled else KeyStatus.ACTIVE)
    try:
        return api_keys_table.update(key, now=to_iso(utc_now()), name=name, status=status)
    except WriteRefused as refused:  # revoked between the read and the write
        raise NotFound(f"Key {key_id} not found.") from refused


def revoke_key(caller: Caller, key_id: str) -> ApiKey:
    key = _owned_live_key(caller, key_id)
    try:
        return api_keys_table.update(key, now=to_iso(utc_now()), status=KeyStatus.REVOKED)
    except WriteRefused as refused:
        raise NotFound(f"Key {key_id} not found.") from refused
