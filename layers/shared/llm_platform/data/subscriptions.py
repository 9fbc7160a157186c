"""Subscriptions table (pk ``subscriptionId``; GSI ``byAccount``: accountId + subscriptionId;
sparse GSI ``byPeriodEnd``: periodEndBucket + currentPeriodEnd, where ``periodEndBucket = "live"`` only
while a subscription can still lapse, so the expiry job queries exactly the due ones)."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import client, query_index, to_values, transact
from llm_platform.data.records import from_record, from_record_item, to_record_item
from llm_platform.domain.entities import Subscription, SubscriptionStatus

LIVE_BUCKET = "live"


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


def put_item(subscription: Subscription) -> dict[str, Any]:
    live = subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
    return {
        "Put": {
            "TableName": _table(),
            "Item": to_record_item(subscription, periodEndBucket=LIVE_BUCKET if live else None),
            "ConditionExpression": "attribute_not_exists(subscriptionId)",
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
