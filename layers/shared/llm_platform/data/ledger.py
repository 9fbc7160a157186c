"""Ledger table (pk ``accountId``, sk ``entryId`` = ISO time + random suffix): every change of a credit
balance, written in the same transaction as the balance itself, so balance = sum of entries."""

from __future__ import annotations

import secrets
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import client, from_item, to_item, to_values
from llm_platform.data.pages import Page


def entry_put(
    account_id: str, *, amount_micros: int, kind: str, reference: str, now: str, unique: str | None = None
) -> dict[str, Any]:
    """``unique`` (e.g. the request id) makes the entry id deterministic, so a retried transaction
    carrying the same ``ClientRequestToken`` has identical parameters."""
    return {
        "Put": {
            "TableName": get_settings().ledger_table,
            "Item": to_item(
                {
                    "accountId": account_id,
                    "entryId": f"{now}#{unique or secrets.token_hex(4)}",
                    "amountMicros": amount_micros,
                    "kind": kind,
                    "reference": reference,
                    "createdAt": now,
                }
            ),
            "ConditionExpression": "attribute_not_exists(entryId)",
        }
    }


def newest_first(account_id: str, limit: int, start: dict[str, Any] | None) -> Page:
    """One page of the account's entries, newest first (entry ids start with their ISO time)."""
    request: dict[str, Any] = {
        "TableName": get_settings().ledger_table,
        "KeyConditionExpression": "accountId = :account",
        "ExpressionAttributeValues": to_values({":account": account_id}),
        "ScanIndexForward": False,
        "Limit": limit + 1,  # one more than asked: whether another page exists is then known
        "ConsistentRead": True,
    }
    if start is not None:
        request["ExclusiveStartKey"] = to_values(start)
    response = client().query(**request)
    items = [from_item(item) for item in response["Items"]]
    if len(items) <= limit:
        return Page(items, None)
    items = items[:limit]
    return Page(items, {"accountId": account_id, "entryId": items[-1]["entryId"]})
