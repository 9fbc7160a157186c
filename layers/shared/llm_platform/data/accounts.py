"""Accounts table (pk ``accountId``): name, credit balance, management-key count."""

from __future__ import annotations

from llm_platform.config import get_settings
from llm_platform.core.entities import Account, ManagementKey
from llm_platform.data import log_shards, management_keys
from llm_platform.data.dynamo import client, to_values, transact
from llm_platform.data.records import from_record_item, to_record_item


def _table() -> str:
    return get_settings().accounts_table


def get(account_id: str) -> Account | None:
    response = client().get_item(TableName=_table(), Key={"accountId": {"S": account_id}}, ConsistentRead=True)
    return from_record_item(Account, response.get("Item"))


def raise_log_shards(account_id: str, shards: int) -> int | None:
    """The account's ``logShards`` raised to ``shards`` (never lowered): its L afterwards (None: no account)."""
    return log_shards.raise_log_shards(_table(), {"accountId": account_id}, shards)


def create_with_management_key(account: Account, key: ManagementKey, *also: dict) -> None:
    """The account and its first management key (and ``also``: more transaction items, such as its sign-in
    address) appear together or not at all."""
    transact(
        [
            {
                "Put": {
                    "TableName": _table(),
                    "Item": to_record_item(account, managementKeyCount=1),
                    "ConditionExpression": "attribute_not_exists(accountId)",
                }
            },
            *management_keys.put_items(key),
            *also,
        ]
    )


def credit_balance_update(account_id: str, amount_micros: int) -> dict:
    """A transaction item adding ``amount_micros`` to an existing account's balance."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": "ADD creditBalanceMicros :amount",
            "ConditionExpression": "attribute_exists(accountId)",
            "ExpressionAttributeValues": to_values({":amount": amount_micros}),
        }
    }


_KEY_ROOM = "(attribute_not_exists(apiKeyCount) OR apiKeyCount < :max_keys)"


def charge_item(account_id: str, amount_micros: int, *, new_key_cap: int | None = None) -> dict:
    """A transaction item taking ``amount_micros`` from the balance, only if the balance covers it; with
    ``new_key_cap``, it also counts a new key, only while the account has fewer live keys than that."""
    update, condition = "ADD creditBalanceMicros :minus", "creditBalanceMicros >= :amount"
    values = {":minus": -amount_micros, ":amount": amount_micros}
    if new_key_cap is not None:
        update += ", apiKeyCount :one"
        condition += f" AND {_KEY_ROOM}"
        values.update({":one": 1, ":max_keys": new_key_cap})
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": to_values(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def key_slot_item(account_id: str, cap: int) -> dict:
    """A transaction item counting a new key of the account, only while it has fewer than ``cap`` live keys."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": "ADD apiKeyCount :one",
            "ConditionExpression": f"attribute_exists(accountId) AND {_KEY_ROOM}",
            "ExpressionAttributeValues": to_values({":one": 1, ":max_keys": cap}),
        }
    }


def keys_revoked_item(account_id: str, count: int) -> dict:
    """A transaction item uncounting ``count`` revoked keys."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": "ADD apiKeyCount :minus",
            "ConditionExpression": "attribute_exists(accountId)",
            "ExpressionAttributeValues": to_values({":minus": -count}),
        }
    }
