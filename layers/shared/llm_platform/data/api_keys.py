"""ApiKeys table (pk ``keyHash``; GSI ``byAccount``: accountId + keyId, all attributes;
sparse GSI ``bySubscription``: subscriptionId + keyId, keys only, for revoking a subscription's keys).

The proxy authenticates by hash with a strongly consistent read of the base table, so a revoke or
disable is seen by the very next request."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import (
    WriteRefused,
    client,
    query_index,
    to_values,
    transact,
    update_if,
)
from llm_platform.data.records import from_record, from_record_item, to_record_item
from llm_platform.domain.entities import ApiKey, KeyStatus


def _table() -> str:
    return get_settings().api_keys_table


def get_by_hash(key_hash: str) -> ApiKey | None:
    response = client().get_item(TableName=_table(), Key={"keyHash": {"S": key_hash}}, ConsistentRead=True)
    return from_record_item(ApiKey, response.get("Item"))


def list_for_account(account_id: str) -> list[ApiKey]:
    items = query_index(_table(), "byAccount", ("accountId", account_id))
    return [from_record(ApiKey, item) for item in items]


def find_for_account(account_id: str, key_id: str) -> ApiKey | None:
    items = query_index(_table(), "byAccount", ("accountId", account_id), ("keyId", key_id))
    return from_record(ApiKey, items[0]) if items else None


def revoke_all_of_subscription(subscription_id: str, now: str) -> int:
    """Revoke every key of a subscription (idempotent: already revoked keys are left as they are)."""
    revoked = 0
    for item in query_index(_table(), "bySubscription", ("subscriptionId", subscription_id)):
        applied = update_if(
            TableName=_table(),
            Key={"keyHash": {"S": item["keyHash"]}},
            UpdateExpression="SET #status = :revoked, revokedAt = :now, updatedAt = :now",
            ConditionExpression="#status <> :revoked",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_values({":revoked": KeyStatus.REVOKED.value, ":now": now}),
        )
        revoked += applied is not None
    return revoked


def put_item(key: ApiKey) -> dict[str, Any]:
    """A transaction item inserting a new key (never overwriting one)."""
    return {
        "Put": {
            "TableName": _table(),
            "Item": to_record_item(key),
            "ConditionExpression": "attribute_not_exists(keyHash)",
        }
    }


def add(key: ApiKey, *guards: dict[str, Any]) -> None:
    """Insert the key together with condition checks (e.g. "the subscription is still active")."""
    transact([*guards, put_item(key)])


def update(key: ApiKey, *, now: str, name: str | None = None, status: KeyStatus | None = None) -> ApiKey:
    """Rename and/or change status of a key of ``key.account_id`` that is not revoked."""
    assignments = ["updatedAt = :now"]
    values: dict[str, Any] = {":now": now, ":account": key.account_id, ":revoked": KeyStatus.REVOKED.value}
    if name is not None:
        assignments.append("#name = :name")
        values[":name"] = name
    if status is not None:
        assignments.append("#status = :status")
        values[":status"] = status.value
        if status == KeyStatus.REVOKED:
            assignments.append("revokedAt = :now")
    updated = update_if(
        TableName=_table(),
        Key={"keyHash": {"S": key.key_hash}},
        UpdateExpression="SET " + ", ".join(assignments),
        ConditionExpression="accountId = :account AND #status <> :revoked",
        ExpressionAttributeNames={"#status": "status", **({"#name": "name"} if name is not None else {})},
        ExpressionAttributeValues=to_values(values),
        ReturnValues="ALL_NEW",
    )
    if updated is None:
        raise WriteRefused(["ConditionalCheckFailed"])
    return from_record(ApiKey, updated)
