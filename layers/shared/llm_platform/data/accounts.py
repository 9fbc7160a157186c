"""Accounts table (pk ``accountId``): name, credit balance, management-key count."""

from __future__ import annotations

from llm_platform.config import get_settings
from llm_platform.data import management_keys
from llm_platform.data.dynamo import client, to_values, transact
from llm_platform.data.records import from_record_item, to_record_item
from llm_platform.domain.entities import Account, ManagementKey


def _table() -> str:
    return get_settings().accounts_table


def get(account_id: str) -> Account | None:
    response = client().get_item(TableName=_table(), Key={"accountId": {"S": account_id}}, ConsistentRead=True)
    return from_record_item(Account, response.get("Item"))


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


def charge_item(account_id: str, amount_micros: int) -> dict:
    """A transaction item taking ``amount_micros`` from the balance, only if the balance covers it."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"accountId": {"S": account_id}},
            "UpdateExpression": "ADD creditBalanceMicros :minus",
            "ConditionExpression": "creditBalanceMicros >= :amount",
            "ExpressionAttributeValues": to_values({":minus": -amount_micros, ":amount": amount_micros}),
        }
    }
