"""Consumption keys (``sk_live_…``): subscription keys share their subscription's budget, credit keys
spend the account's prepaid balance (optionally capped by ``maxBudget``). RPM/TPM are per key."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.core.entities import ApiKey, BudgetReset, KeyKind, KeyStatus, Subscription
from llm_platform.data import accounts as accounts_table
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import WriteRefused, transact
from llm_platform.domain import listing
from llm_platform.domain.accounts import Caller
from llm_platform.domain.credentials import API_KEY_PREFIX, is_id, issue_secret, new_id
from llm_platform.domain.errors import Conflict, NotFound, Unprocessable
from llm_platform.domain.hot_keys import revoke_key_shards
from llm_platform.domain.leases import revoke_key_leases
from llm_platform.domain.plans import catalog

MAX_ROTATION_GRACE_SECONDS = 86_400
KEY_LIMIT_CODE = "key_limit_reached"


def account_key_limit() -> Conflict:
    cap = catalog().account_limits.max_api_keys
    return Conflict(
        f"This account already has {cap} API keys, the most it may have; delete keys it no longer needs.",
        code=KEY_LIMIT_CODE,
    )


def subscription_key_limit(subscription_id: str, cap: int) -> Conflict:
    return Conflict(
        f"Subscription {subscription_id} already has {cap} keys, the most its plan allows; delete keys it no "
        "longer needs.",
        code=KEY_LIMIT_CODE,
    )


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


def _future(expires_at: datetime | None, now: datetime) -> str | None:
    if expires_at is None:
        return None
    if expires_at <= now:
        raise Unprocessable("expiresAt must be in the future.")
    return to_iso(expires_at)


def create_credit_key(
    caller: Caller,
    name: str,
    max_budget_micros: int | None,
    rpm: int | None,
    tpm: int | None,
    budget_reset: BudgetReset | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    policy = catalog().credit_keys
    key, plaintext = _new_key(
        caller.account_id,
        name,
        KeyKind.CREDIT,
        rpm=rpm or policy.default_rpm,
        tpm=tpm or policy.default_tpm,
        max_budget_micros=max_budget_micros,
        budget_reset=budget_reset,
        key_expires_at=_future(expires_at, utc_now()),
    )
    try:
        api_keys_table.add(key, accounts_table.key_slot_item(caller.account_id, catalog().account_limits.max_api_keys))
    except WriteRefused as refused:
        if refused.reasons[0] == "ConditionalCheckFailed":
            raise account_key_limit() from refused
        raise
    return key, plaintext


def owned_subscription(account_id: str, subscription_id: str) -> Subscription:
    subscription = subscriptions_table.get(subscription_id) if is_id(subscription_id, "sub") else None
    if subscription is None or subscription.account_id != account_id:
        raise NotFound(f"Subscription {subscription_id} not found.")
    return subscription


def new_subscription_key(
    account_id: str, subscription: Subscription, name: str, expires_at: str | None = None
) -> tuple[ApiKey, str]:
    """A key on ``subscription`` with its plan's limits, not yet stored."""
    return _new_key(
        account_id,
        name,
        KeyKind.SUBSCRIPTION,
        rpm=subscription.rpm,
        tpm=subscription.tpm,
        subscription_id=subscription.subscription_id,
        key_expires_at=expires_at,
    )


def issue_subscription_key(
    account_id: str, subscription: Subscription, name: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Mint a key on an active subscription; the insert is conditional on the subscription still being
    active, so a key can never be created on a subscription that lapses concurrently."""
    now = utc_now()
    expiry = _future(expires_at, now)
    if not subscription.is_active(now):
        raise Conflict(f"Subscription {subscription.subscription_id} is not active.", code="subscription_not_active")
    key, plaintext = new_subscription_key(account_id, subscription, name, expiry)
    cap = catalog().max_keys_of(subscription.plan_slug)
    try:
        api_keys_table.add(
            key,
            subscriptions_table.key_slot_item(subscription.subscription_id, account_id, to_iso(now), cap),
            accounts_table.key_slot_item(account_id, catalog().account_limits.max_api_keys),
        )
    except WriteRefused as refused:
        if refused.reasons[1] == "ConditionalCheckFailed":
            raise account_key_limit() from refused
        seen = refused.items[0] or {}
        still_active = seen.get("status") == "active" and seen.get("currentPeriodEnd", "") > to_iso(now)
        if refused.reasons[0] == "ConditionalCheckFailed" and still_active and seen.get("liveKeyCount", 0) >= cap:
            raise subscription_key_limit(subscription.subscription_id, cap) from refused
        raise Conflict(
            f"Subscription {subscription.subscription_id} is not active.", code="subscription_not_active"
        ) from refused
    return key, plaintext


def create_subscription_key(
    caller: Caller, name: str, subscription_id: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    subscription = owned_subscription(caller.account_id, subscription_id)
    return issue_subscription_key(caller.account_id, subscription, name, expires_at)


def list_keys(caller: Caller, limit: int = listing.DEFAULT_LIMIT, cursor: str | None = None) -> listing.Listing[ApiKey]:
    """A page of the account's keys that still exist (revoked ones only show up in usage): pages follow key
    ids, each page in creation order."""
    after = listing.after(caller.account_id, "keys", cursor)
    keys, next_after = api_keys_table.page_for_account(caller.account_id, after, limit, live_only=True)
    return listing.Listing(
        sorted(keys, key=lambda k: k.created_at), listing.cursor(caller.account_id, "keys", next_after)
    )


def _owned_live_key(caller: Caller, key_id: str) -> ApiKey:
    key = api_keys_table.find_for_account(caller.account_id, key_id) if is_id(key_id, "key") else None
    if key is None or key.status == KeyStatus.REVOKED:
        raise NotFound(f"Key {key_id} not found.")
    return key


# What PATCH may change besides name and status; a value of None removes the limit.
LIMIT_FIELDS = ("rpm", "tpm", "max_budget_micros", "budget_reset", "key_expires_at")


def update_key(
    caller: Caller, key_id: str, *, name: str | None, disabled: bool | None, limits: dict[str, Any] | None = None
) -> ApiKey:
    """Rename, disable/enable and change limits of a key. A subscription key's RPM/TPM may be lowered,
    never raised above its plan's, and it has no maxBudget or budgetReset (it spends its subscription's
    5-hour budget). Every change applies to the key's next request."""
    key = _owned_live_key(caller, key_id)
    limits = dict(limits or {})
    if "key_expires_at" in limits:
        limits["key_expires_at"] = _future(limits["key_expires_at"], utc_now())
    if key.kind == KeyKind.SUBSCRIPTION and limits:
        _check_subscription_limits(key, limits)
    status = None if disabled is None else (KeyStatus.DISABLED if disabled else KeyStatus.ACTIVE)
    try:
        updated = api_keys_table.update(key, now=to_iso(utc_now()), name=name, status=status, limits=limits)
    except WriteRefused as refused:  # revoked between the read and the write
        raise NotFound(f"Key {key_id} not found.") from refused
    if status is not None or limits:
        revoke_key_leases(key.key_id)  # instances admitting it from leases read it again first
        revoke_key_shards(key.key_id)  # and so do environments admitting it from key shards
    return updated


def _check_subscription_limits(key: ApiKey, limits: dict[str, Any]) -> None:
    for field, label in (("max_budget_micros", "maxBudget"), ("budget_reset", "budgetReset")):
        if limits.get(field) is not None:
            raise Unprocessable(f"{label} applies to credit keys; a subscription key spends its subscription's budget.")
    subscription = subscriptions_table.get(key.subscription_id) if key.subscription_id else None
    plan_rpm = subscription.rpm if subscription else key.rpm
    plan_tpm = subscription.tpm if subscription else key.tpm
    for field, ceiling in (("rpm", plan_rpm), ("tpm", plan_tpm)):
        if field in limits:
            if limits[field] is None:  # back to the plan's
                limits[field] = ceiling
            elif limits[field] > ceiling:
                raise Unprocessable(f"{field} can be at most {ceiling}, the plan's limit, for a subscription key.")


def rotate_key(caller: Caller, key_id: str, grace_period_seconds: int) -> tuple[ApiKey, str, str]:
    """A new secret for the same key (id, limits, history); the current secret keeps working for
    ``grace_period_seconds``. Returns the key, the new secret and when the old one stops working."""
    if not 0 <= grace_period_seconds <= MAX_ROTATION_GRACE_SECONDS:
        raise Unprocessable(f"gracePeriodSeconds must be from 0 to {MAX_ROTATION_GRACE_SECONDS}.")
    key = _owned_live_key(caller, key_id)
    now = utc_now()
    old_expires_at = to_iso(now + timedelta(seconds=grace_period_seconds))
    secret = issue_secret(API_KEY_PREFIX)
    try:
        rotated = api_keys_table.rotate(
            key,
            new_hash=secret.key_hash,
            new_prefix=secret.display_prefix,
            old_secret_expires_at=old_expires_at,
            now=to_iso(now),
        )
    except WriteRefused as refused:  # revoked, or rotated by someone else, since it was read
        raise Conflict(f"Key {key_id} changed while rotating it; try again.", code="key_changed") from refused
    revoke_key_leases(key.key_id)
    revoke_key_shards(key.key_id)
    return rotated, secret.plaintext, old_expires_at


def revoke_key(caller: Caller, key_id: str) -> ApiKey:
    """Revoke the key and uncount it from the account's and its subscription's key caps, together."""
    key = _owned_live_key(caller, key_id)
    now = to_iso(utc_now())
    items = [api_keys_table.revoke_item(key.key_hash, now, key.account_id)]
    items.append(accounts_table.keys_revoked_item(key.account_id, 1))
    if key.subscription_id is not None:
        items.append(subscriptions_table.key_released_item(key.subscription_id))
    try:
        transact(items)
    except WriteRefused as refused:
        if refused.reasons[0] == "ConditionalCheckFailed":  # revoked meanwhile
            raise NotFound(f"Key {key_id} not found.") from refused
        raise
    revoke_key_leases(key.key_id)
    revoke_key_shards(key.key_id)
    revoked = api_keys_table.get_by_hash(key.key_hash)
    if revoked is None:  # cannot happen: keys are never deleted
        raise NotFound(f"Key {key_id} not found.")
    return revoked


# Keys revoked per transaction: with the account's and the subscription's counters, DynamoDB's 100 items.
REVOCATION_BATCH = 98


@dataclass(frozen=True, slots=True)
class Revocation:
    revoked: int  # keys revoked now
    examined: int  # keys looked at (some may have been revoked already)
    done: bool  # every key of the subscription is revoked; it has left the due index


def revoke_subscription_keys(subscription_id: str, now: str, budget: int, deadline: float | None = None) -> Revocation:
    """Revoke an expired subscription's keys from where the last call stopped (its ``revokeCursor``), in
    transactions of up to 98 keys that also move the cursor and uncount the keys, until ``budget`` keys
    were looked at or ``deadline`` (``time.monotonic()``) passes. Idempotent and resumable: a crash
    between batches loses nothing, a batch is applied whole or not at all, and a key already revoked
    (by its owner) is skipped, not counted twice."""
    revoked = examined = 0
    while examined < budget and (deadline is None or time.monotonic() < deadline):
        subscription = subscriptions_table.get(subscription_id)
        if subscription is None or subscription.status != "expired":
            return Revocation(revoked, examined, True)
        start = json.loads(subscription.revoke_cursor) if subscription.revoke_cursor else None
        hashes, after = api_keys_table.subscription_keys_page(
            subscription_id, start, min(REVOCATION_BATCH, budget - examined)
        )
        cursor = json.dumps(after, separators=(",", ":")) if after is not None else None
        applied = _revoke_batch(subscription, hashes, cursor, now)
        if applied is None:
            continue  # another run moved the cursor meanwhile: read it again
        revoked += applied
        examined += len(hashes)
        if cursor is None:
            return Revocation(revoked, examined, True)
    return Revocation(revoked, examined, False)


def _revoke_batch(subscription: Subscription, hashes: list[str], cursor: str | None, now: str) -> int | None:
    """One transaction: the keys (those not revoked yet), the account's count and the cursor. Returns how
    many were revoked, or None when the cursor moved under it."""
    pending = list(hashes)
    while True:
        items = [api_keys_table.revoke_item(key_hash, now) for key_hash in pending]
        if pending:
            items.append(accounts_table.keys_revoked_item(subscription.account_id, len(pending)))
        items.append(subscriptions_table.revocation_progress_item(subscription, len(pending), cursor))
        try:
            transact(items)
        except WriteRefused as refused:
            if refused.reasons[-1] == "ConditionalCheckFailed":
                return None
            already = {pending[i] for i, reason in enumerate(refused.reasons[: len(pending)]) if reason != "None"}
            pending = [key_hash for key_hash in pending if key_hash not in already]
            continue
        return len(pending)
