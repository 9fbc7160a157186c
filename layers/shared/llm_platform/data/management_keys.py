"""ManagementKeys table (pk ``keyHash``; GSI ``byAccount``: accountId + keyId).

Each key has an id pointer item (``keyHash`` = ``id#<keyId>``, ``aliasOf`` = the key's hash, no accountId,
so outside the index), written and deleted in the same transactions as the key: a delete by id reads the
pointer and the key consistently, so a key deleted right after its creation is deleted, not "not found"."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.core.entities import ManagementKey
from llm_platform.data import key_items
from llm_platform.data.dynamo import client, query_index, query_index_page, to_values, transact
from llm_platform.data.records import from_record, from_record_item, to_record_item


def _table() -> str:
    return get_settings().management_keys_table


def get_by_hash(key_hash: str) -> ManagementKey | None:
    response = client().get_item(TableName=_table(), Key={"keyHash": {"S": key_hash}}, ConsistentRead=True)
    return from_record_item(ManagementKey, response.get("Item"))


def list_for_account(account_id: str) -> list[ManagementKey]:
    items = query_index(_table(), "byAccount", ("accountId", account_id))
    return [from_record(ManagementKey, item) for item in items]


def page_for_account(account_id: str, after: str | None, limit: int) -> tuple[list[ManagementKey], str | None]:
    """A page of the account's management keys in key-id order; the key id to continue after."""
    items, next_after = query_index_page(_table(), "byAccount", ("accountId", account_id), "keyId", after, limit)
    return [from_record(ManagementKey, item) for item in items], next_after


def find_for_account(account_id: str, key_id: str) -> ManagementKey | None:
    item = key_items.find_for_account(_table(), account_id, key_id)
    return None if item is None else from_record(ManagementKey, item)


def put_items(key: ManagementKey) -> list[dict[str, Any]]:
    """The transaction items inserting a key and its id pointer."""
    return key_items.put_items(_table(), to_record_item(key), key.key_id, key.key_hash)


def add(key: ManagementKey, cap: int) -> None:
    """Insert the key (and its id pointer) and bump the account's key count in one transaction, only while
    the account has fewer than ``cap`` keys."""
    transact(
        [
            *put_items(key),
            _count_update(
                key.account_id,
                +1,
                "attribute_exists(accountId) AND managementKeyCount < :cap",
                cap=cap,
            ),
        ]
    )


def remove_unless_last(key: ManagementKey) -> None:
    """Delete the key only while the account keeps at least one other: the count is the guard, so two
    concurrent deletes of an account's last two keys cannot both succeed."""
    transact(
        [
            {
                "Delete": {
                    "TableName": _table(),
                    "Key": {"keyHash": {"S": key.key_hash}},
                    "ConditionExpression": "accountId = :account",
                    "ExpressionAttributeValues": to_values({":account": key.account_id}),
                }
            },
            _count_update(key.account_id, -1, "managementKeyCount > :one"),
            {"Delete": {"TableName": _table(), "Key": {"keyHash": {"S": key_items.id_pointer(key.key_id)}}}},
        ]
    )


def _count_update(account_id: str, delta: int, condition: str, cap: int | None = None) -> dict:
    values = {":delta": delta}
    if cap is not None:
        values[":cap"] = cap
    if ":one" in condition:
        values[":one"] = 1
    return {
        "Update": {
            "TableName": get_settings().accounts_table,
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": "ADD managementKeyCount :delta",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": to_values(values),
        }
    }
