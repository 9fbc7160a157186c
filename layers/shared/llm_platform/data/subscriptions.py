"""Subscriptions table (pk ``subscriptionId``; GSI ``byAccount``: accountId + subscriptionId;
sparse GSI ``byPeriodEnd``: periodEndBucket + currentPeriodEnd, where ``periodEndBucket = "live"`` only
while a subscription can still lapse or still has keys to revoke, so the expiry job queries exactly the
due ones)."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.core.entities import Subscription, SubscriptionStatus
from llm_platform.data.dynamo import (
    WriteRefused,
    client,
    query_all,
    query_index,
    to_values,
    transact,
    update_if,
)
from llm_platform.data.records import from_record, from_record_item, to_record_item

LIVE_BUCKET = "live"
# Every change bumps ``revision`` (see ``write_over``); items from other tools may lack it.
_BUMP = "revision = if_not_exists(revision, :zero) + :one"
_BUMP_VALUES = {":zero": 0, ":one": 1}


def _table() -> str:
    return get_settings().subscriptions_table


def get(subscription_id: str) -> Subscription | None:
    response = client().get_item(
        TableName=_table(), Key={"subscriptionId": {"S": subscription_id}}, ConsistentRead=True
    )
    return from_record_item(Subscription, response.get("Item"))


def list_for_account(account_id: str) -> list[Subscription]:
    items = query_index(_table(), "byAccount", ("accountId", account_id))
    return [from_record(Subscription, item) for item in items]


def _record(subscription: Subscription) -> dict[str, Any]:
    # A subscription Stripe ended stays in the due index until the expiry job has seen its keys revoked
    # (the webhook revokes them at once; the job finishes it if that was cut short).
    live = subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE) or (
        subscription.status == SubscriptionStatus.EXPIRED and subscription.stripe_canceled
    )
    return to_record_item(subscription, periodEndBucket=LIVE_BUCKET if live else None)


def put_item(subscription: Subscription) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": _table(),
            "Item": _record(subscription),
            "ConditionExpression": "attribute_not_exists(subscriptionId)",
        }
    }


def write_over_item(subscription: Subscription, read: Subscription | None) -> dict[str, Any]:
    """A transaction item replacing the whole subscription, only if it is still as ``read`` left it
    (``None``: only if it does not exist yet). ``subscription.revision`` must be ``read.revision + 1``."""
    if read is None:
        return put_item(subscription)
    condition = "revision = :read"
    if read.revision == 0:
        condition = "attribute_not_exists(revision) OR revision = :read"
    return {
        "Put": {
            "TableName": _table(),
            "Item": _record(subscription),
            "ConditionExpression": f"attribute_exists(subscriptionId) AND ({condition})",
            "ExpressionAttributeValues": to_values({":read": read.revision}),
        }
    }


def add(subscription: Subscription) -> None:
    transact([put_item(subscription)])


def active_check(subscription_id: str, account_id: str, now: str) -> dict[str, Any]:
    """A transaction item that holds only while the subscription is the account's and active."""
    return {
        "ConditionCheck": {
            "TableName": _table(),
            "Key": {"subscriptionId": {"S": subscription_id}},
            "ConditionExpression": "accountId = :account AND #status = :active AND currentPeriodEnd > :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(
                {":account": account_id, ":active": SubscriptionStatus.ACTIVE.value, ":now": now}
            ),
        }
    }


def key_slot_item(subscription_id: str, account_id: str, now: str, cap: int) -> dict[str, Any]:
    """A transaction item counting a new key on the subscription, only while it is the account's, active,
    and has fewer than ``cap`` live keys (the old item is returned on refusal, to tell which it was)."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"subscriptionId": {"S": subscription_id}},
            "UpdateExpression": f"ADD liveKeyCount :one SET {_BUMP}",
            "ConditionExpression": "accountId = :account AND #status = :active AND currentPeriodEnd > :now "
            "AND (attribute_not_exists(liveKeyCount) OR liveKeyCount < :cap)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(
                {":account": account_id, ":active": "active", ":now": now, ":cap": cap, **_BUMP_VALUES}
            ),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def key_released_item(subscription_id: str) -> dict[str, Any]:
    """A transaction item uncounting one revoked key of the subscription."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"subscriptionId": {"S": subscription_id}},
            "UpdateExpression": f"ADD liveKeyCount :minus SET {_BUMP}",
            "ConditionExpression": "attribute_exists(subscriptionId)",
            "ExpressionAttributeValues": to_values({":minus": -1, **_BUMP_VALUES}),
        }
    }


def revocation_progress_item(subscription: Subscription, revoked: int, cursor: str | None) -> dict[str, Any]:
    """A transaction item recording a batch of the expired subscription's keys as revoked: the cursor moves
    on (only from where it was read, so two runs cannot both move it), and once every key is done
    (``cursor`` None) the subscription leaves the due index."""
    values: dict[str, Any] = {":expired": "expired", ":minus": -revoked, **_BUMP_VALUES}
    if subscription.revoke_cursor is None:
        condition = "attribute_not_exists(revokeCursor)"
    else:
        condition, values[":read"] = "revokeCursor = :read", subscription.revoke_cursor
    if cursor is None:
        update = f"SET {_BUMP} ADD liveKeyCount :minus REMOVE revokeCursor, periodEndBucket"
    else:
        update, values[":cursor"] = f"SET revokeCursor = :cursor, {_BUMP} ADD liveKeyCount :minus", cursor
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"subscriptionId": {"S": subscription.subscription_id}},
            "UpdateExpression": update,
            "ConditionExpression": f"#status = :expired AND {condition}",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(values),
        }
    }


def due(now: str) -> list[Subscription]:
    """Live subscriptions whose period has ended (the sparse byPeriodEnd index holds only live ones)."""
    items = query_all(
        TableName=_table(),
        IndexName="byPeriodEnd",
        KeyConditionExpression="periodEndBucket = :live AND currentPeriodEnd <= :now",
        ExpressionAttributeValues=to_values({":live": LIVE_BUCKET, ":now": now}),
    )
    return [from_record(Subscription, item) for item in items]


def renew_item(subscription: Subscription, new_start: str, new_end: str) -> dict[str, Any]:
    """Move the period forward, only from the period end that was read (a second run does nothing)."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"subscriptionId": {"S": subscription.subscription_id}},
            "UpdateExpression": f"SET currentPeriodStart = :start, currentPeriodEnd = :new, {_BUMP}",
            # A missing cancelAtPeriodEnd (items written by other tools) counts as not cancelled.
            "ConditionExpression": "currentPeriodEnd = :old AND #status = :active "
            "AND (attribute_not_exists(cancelAtPeriodEnd) OR cancelAtPeriodEnd = :false)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(
                {
                    ":old": subscription.current_period_end,
                    ":start": new_start,
                    ":new": new_end,
                    ":active": "active",
                    ":false": False,
                    **_BUMP_VALUES,
                }
            ),
        }
    }


def mark_expired(subscription: Subscription) -> bool:
    """Expire it, only if its period end is still the one that was read (a renewal wins); repeating
    this for an already expired subscription is harmless. It stays in the due index until
    ``leave_due_index``, so a run that stops half-way is finished by the next."""
    applied = update_if(
        TableName=_table(),
        Key={"subscriptionId": {"S": subscription.subscription_id}},
        UpdateExpression=f"SET #status = :expired, {_BUMP}",
        ConditionExpression="currentPeriodEnd = :end AND attribute_exists(periodEndBucket)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=to_values(
            {":expired": "expired", ":end": subscription.current_period_end, **_BUMP_VALUES}
        ),
    )
    return applied is not None


def leave_due_index(subscription_id: str) -> None:
    client().update_item(
        TableName=_table(),
        Key={"subscriptionId": {"S": subscription_id}},
        UpdateExpression=f"REMOVE periodEndBucket SET {_BUMP}",
        ConditionExpression="#status = :expired",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=to_values({":expired": "expired", **_BUMP_VALUES}),
    )


def cancel_at_period_end(subscription_id: str, account_id: str, stripe_observed_at: int | None = None) -> Subscription:
    """Raises WriteRefused unless it is the account's, active and not already cancelled. For a Stripe
    subscription, ``stripe_observed_at`` is when Stripe accepted the cancellation (older events then
    lose), and a past-due one can be cancelled too."""
    state = ", stripeCancelFlagAt = :observed" if stripe_observed_at is not None else ""
    extra: dict[str, Any] = {":observed": stripe_observed_at} if stripe_observed_at is not None else {}
    statuses = "(:active, :past_due)" if stripe_observed_at is not None else "(:active)"
    if stripe_observed_at is not None:
        extra[":past_due"] = SubscriptionStatus.PAST_DUE.value
    updated = update_if(
        TableName=_table(),
        Key={"subscriptionId": {"S": subscription_id}},
        UpdateExpression=f"SET cancelAtPeriodEnd = :true{state}, {_BUMP}",
        ConditionExpression=f"accountId = :account AND #status IN {statuses} "
        "AND (attribute_not_exists(cancelAtPeriodEnd) OR cancelAtPeriodEnd = :false)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=to_values(
            {":account": account_id, ":active": "active", ":true": True, ":false": False, **extra, **_BUMP_VALUES}
        ),
        ReturnValues="ALL_NEW",
    )
    if updated is None:
        raise WriteRefused(["ConditionalCheckFailed"])
    return from_record(Subscription, updated)
