"""What the ApiKeys and ManagementKeys tables share: both are keyed by ``keyHash`` (a secret's SHA-256), and
each key also has an id pointer item (``keyHash = "id#<keyId>"``, ``aliasOf`` = the key item's hash, no
accountId, so it stays out of the indexes), written in the key's own transaction, so by-id reads and
writes are strongly consistent instead of going through the eventually consistent ``byAccount`` index."""

from __future__ import annotations

from typing import Any

from llm_platform.data.dynamo import client, from_item, query_index, to_values


def id_pointer(key_id: str) -> str:
    """The ``keyHash`` of a key's id pointer item (never a SHA-256 hex, so never a presented secret's)."""
    return f"id#{key_id}"


def get(table: str, key_hash: str) -> dict[str, Any] | None:
    response = client().get_item(TableName=table, Key={"keyHash": {"S": key_hash}}, ConsistentRead=True)
    return from_item(response.get("Item"))


def find_for_account(table: str, account_id: str, key_id: str) -> dict[str, Any] | None:
    """The account's key item with this id, read consistently: the id pointer, then the key item. A key
    stored before pointers existed has none and is looked up in the ``byAccount`` index, as it used to be."""
    pointer = get(table, id_pointer(key_id))
    if pointer is None:
        items = query_index(table, "byAccount", ("accountId", account_id), ("keyId", key_id))
        return items[0] if items else None
    item = get(table, pointer["aliasOf"])
    if item is None or item.get("accountId") != account_id or "aliasOf" in item:
        return None
    return item


def put_items(table: str, record_item: dict[str, Any], key_id: str, key_hash: str) -> list[dict[str, Any]]:
    """The transaction items inserting a new key and its id pointer (never overwriting either)."""
    return [
        {"Put": {"TableName": table, "Item": record_item, "ConditionExpression": "attribute_not_exists(keyHash)"}},
        {
            "Put": {
                "TableName": table,
                "Item": to_values({"keyHash": id_pointer(key_id), "aliasOf": key_hash}),
                "ConditionExpression": "attribute_not_exists(keyHash)",
            }
        },
    ]
