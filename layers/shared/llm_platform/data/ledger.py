"""Ledger table (pk ``accountId``, sk ``entryId`` = ISO time + random suffix): every change of a credit
balance, written in the same transaction as the balance itself, so balance = sum of entries."""

from __future__ import annotations

import secrets
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import to_item


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
