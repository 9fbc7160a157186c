"""External payments (USDC transactions now, Stripe events next) credited exactly once: the dedup
record in PaymentEvents, the balance and the ledger entry commit in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import accounts, ledger
from llm_platform.data.dynamo import to_item, transact


def credit_once(
    event_keys: Sequence[str],
    account_id: str,
    amount_micros: int,
    *,
    kind: str,
    reference: str,
    now: str,
    details: dict[str, Any],
) -> None:
    """Credit ``amount_micros`` for the payments named by ``event_keys`` (one per on-chain transfer, or
    the one Stripe event). Raises ``WriteRefused`` when any of them was credited before, to any account."""
    records = [
        {
            "Put": {
                "TableName": get_settings().payment_events_table,
                "Item": to_item({"eventKey": key, "accountId": account_id, "kind": kind, "createdAt": now, **details}),
                "ConditionExpression": "attribute_not_exists(eventKey)",
            }
        }
        for key in event_keys
    ]
    transact(
        [
            *records,
            accounts.credit_balance_update(account_id, amount_micros),
            ledger.entry_put(
                account_id, amount_micros=amount_micros, kind=kind, reference=reference, now=now, unique=reference
            ),
        ]
    )
