"""External payments (USDC transactions now, Stripe events next) credited exactly once: the dedup
record in PaymentEvents, the balance and the ledger entry commit in one transaction."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import accounts, ledger
from llm_platform.data.dynamo import to_item, transact


def credit_once(
    event_key: str, account_id: str, amount_micros: int, *, kind: str, now: str, details: dict[str, Any]
) -> None:
    """Raises ``WriteRefused`` (first reason ``ConditionalCheckFailed``) when ``event_key`` was credited
    before, to any account."""
    transact(
        [
            {
                "Put": {
                    "TableName": get_settings().payment_events_table,
                    "Item": to_item(
                        {
                            "eventKey": event_key,
                            "accountId": account_id,
                            "amountMicros": amount_micros,
                            "kind": kind,
                            "createdAt": now,
                            **details,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(eventKey)",
                }
            },
            accounts.credit_balance_update(account_id, amount_micros),
            ledger.entry_put(
                account_id, amount_micros=amount_micros, kind=kind, reference=event_key, now=now, unique=event_key
            ),
        ]
    )
