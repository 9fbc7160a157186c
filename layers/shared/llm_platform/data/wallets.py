"""Wallets table (pk ``pk``; sparse GSI ``byAccount``: boundAccountId + pk; TTL ``expiresAt``).

- ``wallet#<address>``: the binding of a wallet (lower-case address) to one account, forever.
- ``challenge#<accountId>#<address>``: the one outstanding EIP-4361 message for that account and
  wallet; it expires by TTL and is consumed by the binding transaction, so a signature works once."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import client, from_item, query_index, query_index_page, to_item, to_values, transact


def _table() -> str:
    return get_settings().wallets_table


def _challenge_key(account_id: str, address: str) -> dict[str, Any]:
    return {"pk": {"S": f"challenge#{account_id}#{address}"}}


def _wallet_key(address: str) -> dict[str, Any]:
    return {"pk": {"S": f"wallet#{address}"}}


def put_challenge(account_id: str, address: str, message: str, expires_at: int) -> None:
    """Replaces any earlier challenge of the same account and wallet."""
    item = {"pk": f"challenge#{account_id}#{address}", "message": message, "expiresAt": expires_at}
    client().put_item(TableName=_table(), Item=to_item(item))


def get_challenge(account_id: str, address: str) -> dict[str, Any] | None:
    response = client().get_item(TableName=_table(), Key=_challenge_key(account_id, address), ConsistentRead=True)
    return from_item(response.get("Item"))


def get_binding(address: str) -> dict[str, Any] | None:
    response = client().get_item(TableName=_table(), Key=_wallet_key(address), ConsistentRead=True)
    return from_item(response.get("Item"))


def bind(account_id: str, address: str, checksummed: str, message: str, now: str) -> None:
    """Consume the challenge and bind the wallet in one transaction: the challenge must still be the
    one that was signed, and the wallet must not be bound yet (``WriteRefused`` otherwise)."""
    transact(
        [
            {
                "Delete": {
                    "TableName": _table(),
                    "Key": _challenge_key(account_id, address),
                    "ConditionExpression": "message = :message",
                    "ExpressionAttributeValues": to_values({":message": message}),
                }
            },
            {
                "Put": {
                    "TableName": _table(),
                    "Item": to_item(
                        {
                            "pk": f"wallet#{address}",
                            "boundAccountId": account_id,
                            "address": checksummed,
                            "boundAt": now,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )


def list_for_account(account_id: str) -> list[dict[str, Any]]:
    return query_index(_table(), "byAccount", ("boundAccountId", account_id))


def page_for_account(account_id: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the wallets bound to the account in key order; the key to continue after."""
    return query_index_page(_table(), "byAccount", ("boundAccountId", account_id), "pk", after, limit)
