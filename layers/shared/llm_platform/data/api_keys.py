"""ApiKeys table (pk ``keyHash``; GSI ``byAccount``: accountId + keyId, all attributes;
sparse GSI ``bySubscription``: subscriptionId + keyId, keys only, for revoking a subscription's keys).

A key's item is stored under its first secret's hash. Rotation adds an alias item per later secret
(``keyHash`` = the new secret's hash, ``aliasOf`` = the key item's hash, no accountId, so it stays out
of both indexes); each secret that was rotated away carries ``secretExpiresAt``. The proxy authenticates
by hash with strongly consistent reads of the base table, so a revoke or disable is seen by the very
next request.

Each key also has an id pointer item (``keyHash`` = ``id#<keyId>``, ``aliasOf`` = the key item's hash, no
accountId, so outside both indexes), put in the key's own insert transaction: the id routes (PATCH,
DELETE, rotate) resolve an id with two strongly consistent reads instead of the eventually consistent
``byAccount`` index, so a key revoked right after its creation is revoked, not "not found"."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from llm_platform.config import get_settings
from llm_platform.core.entities import ApiKey, KeyStatus
from llm_platform.data import key_items, log_shards
from llm_platform.data.dynamo import (
    WriteRefused,
    client,
    from_item,
    query_index,
    query_index_page,
    to_values,
    transact,
    update_if,
)
from llm_platform.data.records import from_record, to_record_item


def _table() -> str:
    return get_settings().api_keys_table


def _get(key_hash: str) -> dict[str, Any] | None:
    return key_items.get(_table(), key_hash)


def get_by_hash(key_hash: str) -> ApiKey | None:
    """The key stored under ``key_hash`` (its first secret's hash)."""
    item = _get(key_hash)
    return None if item is None or "aliasOf" in item else from_record(ApiKey, item)


@dataclass(frozen=True, slots=True)
class PresentedSecret:
    key: ApiKey
    secret_expires_at: str | None  # set once the presented secret was rotated away


def resolve_secret(secret_hash: str) -> PresentedSecret | None:
    """The key a presented secret belongs to, following a rotation alias (two reads then)."""
    item = _get(secret_hash)
    if item is None:
        return None
    if "aliasOf" in item:
        record = _get(item["aliasOf"])
        if record is None:
            return None
        return PresentedSecret(from_record(ApiKey, record), item.get("secretExpiresAt"))
    key = from_record(ApiKey, item)
    return PresentedSecret(key, key.secret_expires_at)


def list_for_account(account_id: str) -> list[ApiKey]:
    items = query_index(_table(), "byAccount", ("accountId", account_id))
    return [from_record(ApiKey, item) for item in items]


def page_for_account(
    account_id: str, after: str | None, limit: int, live_only: bool = False
) -> tuple[list[ApiKey], str | None]:
    """A page of the account's keys in key-id order (revoked ones left out with ``live_only``); the key id
    to continue after."""
    keep = (lambda item: item.get("status") != "revoked") if live_only else None
    items, next_after = query_index_page(_table(), "byAccount", ("accountId", account_id), "keyId", after, limit, keep)
    return [from_record(ApiKey, item) for item in items], next_after


id_pointer = key_items.id_pointer


def find_for_account(account_id: str, key_id: str) -> ApiKey | None:
    item = key_items.find_for_account(_table(), account_id, key_id)
    return None if item is None else from_record(ApiKey, item)


def raise_log_shards(key_hash: str, account_id: str, shards: int) -> int | None:
    """The key item's ``logShards`` raised to ``shards`` (never lowered): its L afterwards (None: not the
    account's key). No version bump: proxies pick it up when they next read the key."""
    return log_shards.raise_log_shards(_table(), {"keyHash": key_hash}, shards, account_id=account_id)


def subscription_keys_page(
    subscription_id: str, start: dict[str, Any] | None, limit: int
) -> tuple[list[str], dict[str, Any] | None]:
    """Up to ``limit`` key hashes of a subscription from the ``bySubscription`` index, after ``start``, and
    where the next page starts (None: no more)."""
    request: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": "bySubscription",
        "KeyConditionExpression": "subscriptionId = :subscription",
        "ExpressionAttributeValues": to_values({":subscription": subscription_id}),
        "Limit": limit,
    }
    if start is not None:
        request["ExclusiveStartKey"] = to_values(start)
    response = client().query(**request)
    hashes = [item["keyHash"]["S"] for item in response["Items"]]
    return hashes, from_item(response.get("LastEvaluatedKey"))


def revoke_item(key_hash: str, now: str, account_id: str | None = None) -> dict[str, Any]:
    """A transaction item revoking a key that is not revoked yet (and is ``account_id``'s, when given)."""
    condition, values = "#status <> :revoked", {":revoked": KeyStatus.REVOKED.value, ":now": now}
    if account_id is not None:
        condition = "accountId = :account AND " + condition
        values[":account"] = account_id
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"keyHash": {"S": key_hash}},
            "UpdateExpression": "SET #status = :revoked, revokedAt = :now, updatedAt = :now",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(values),
        }
    }


def put_items(key: ApiKey) -> list[dict[str, Any]]:
    """The transaction items inserting a new key and its id pointer (never overwriting either)."""
    return key_items.put_items(_table(), to_record_item(key), key.key_id, key.key_hash)


def add(key: ApiKey, *guards: dict[str, Any]) -> None:
    """Insert the key together with condition checks (e.g. "the subscription is still active")."""
    transact([*guards, *put_items(key)])


_LIMIT_ATTRIBUTES = {"rpm": "rpm", "tpm": "tpm", "max_budget_micros": "maxBudgetMicros",
                     "budget_reset": "budgetReset", "key_expires_at": "keyExpiresAt"}  # fmt: skip


def update(
    key: ApiKey,
    *,
    now: str,
    name: str | None = None,
    status: KeyStatus | None = None,
    limits: dict[str, Any] | None = None,
) -> ApiKey:
    """Rename, change the status and/or set limits (None removes one) of a key of ``key.account_id``
    that is not revoked. A limit change bumps the key's ``version``, so every warm proxy instance reads
    the key again on its next admission."""
    names: dict[str, str] = {"#status": "status"}
    values: dict[str, Any] = {":now": now, ":account": key.account_id, ":revoked": KeyStatus.REVOKED.value}
    assignments, removals = ["updatedAt = :now"], []
    if name is not None:
        assignments.append("#name = :name")
        names["#name"], values[":name"] = "name", name
    if status is not None:
        assignments.append("#status = :status")
        values[":status"] = status.value
        if status == KeyStatus.REVOKED:
            assignments.append("revokedAt = :now")
    for field, value in (limits or {}).items():
        attribute = _LIMIT_ATTRIBUTES[field]
        names[f"#{attribute}"] = attribute
        if value is None:
            removals.append(f"#{attribute}")
        else:
            assignments.append(f"#{attribute} = :{attribute}")
            values[f":{attribute}"] = value.value if isinstance(value, Enum) else value
    expression = "SET " + ", ".join(assignments)
    if limits:
        expression += " ADD version :one"
        values[":one"] = 1
    if removals:
        expression += " REMOVE " + ", ".join(removals)
    updated = update_if(
        TableName=_table(),
        Key={"keyHash": {"S": key.key_hash}},
        UpdateExpression=expression,
        ConditionExpression="accountId = :account AND #status <> :revoked",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_values(values),
        ReturnValues="ALL_NEW",
    )
    if updated is None:
        raise WriteRefused(["ConditionalCheckFailed"])
    return from_record(ApiKey, updated)


def rotate(key: ApiKey, *, new_hash: str, new_prefix: str, old_secret_expires_at: str, now: str) -> ApiKey:
    """Make ``new_hash`` the key's secret: an alias item for it, the current secret set to expire at
    ``old_secret_expires_at``, and the key's version bumped, in one transaction. Guarded by the current
    secret, so two concurrent rotations cannot both succeed."""
    current = key.current_secret_hash or key.key_hash
    values: dict[str, Any] = {
        ":account": key.account_id,
        ":revoked": KeyStatus.REVOKED.value,
        ":new": new_hash,
        ":prefix": new_prefix,
        ":now": now,
        ":one": 1,
    }
    assignments = "SET currentSecretHash = :new, displayPrefix = :prefix, updatedAt = :now"
    if current == key.key_hash:  # the key's first secret is rotated away: its expiry lives on the key item
        assignments += ", secretExpiresAt = :old_expiry"
        values[":old_expiry"] = old_secret_expires_at
    if key.current_secret_hash is None:
        guard = "attribute_not_exists(currentSecretHash)"
    else:
        guard = "currentSecretHash = :current"
        values[":current"] = current
    items: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": _table(),
                "Item": to_values({"keyHash": new_hash, "aliasOf": key.key_hash, "createdAt": now}),
                "ConditionExpression": "attribute_not_exists(keyHash)",
            }
        },
        {
            "Update": {
                "TableName": _table(),
                "Key": {"keyHash": {"S": key.key_hash}},
                "UpdateExpression": assignments + " ADD version :one",
                "ConditionExpression": f"accountId = :account AND #status <> :revoked AND {guard}",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": to_values(values),
            }
        },
    ]
    if current != key.key_hash:
        items.append(
            {
                "Update": {
                    "TableName": _table(),
                    "Key": {"keyHash": {"S": current}},
                    "UpdateExpression": "SET secretExpiresAt = :old_expiry",
                    "ConditionExpression": "aliasOf = :record",
                    "ExpressionAttributeValues": to_values(
                        {":old_expiry": old_secret_expires_at, ":record": key.key_hash}
                    ),
                }
            }
        )
    transact(items)
    rotated = get_by_hash(key.key_hash)
    if rotated is None:  # cannot happen: keys are never deleted, only revoked
        raise WriteRefused(["ConditionalCheckFailed"])
    return rotated
