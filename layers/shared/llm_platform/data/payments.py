"""External payments (USDC transfers, Stripe events) applied exactly once: the dedup record in
PaymentEvents commits in the same transaction as the payment's effect (balance and ledger entry, or
the subscription it activates or renews)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import accounts, ledger
from llm_platform.data.dynamo import client, from_item, to_item, to_values, transact


def credit_once(
    event_keys: Sequence[str],
    account_id: str,
    amount_micros: int,
    *,
    kind: str,
    reference: str,
    now: str,
    details: dict[str, Any],
    also: Sequence[dict[str, Any]] = (),
) -> None:
    """Credit ``amount_micros`` for the payments named by ``event_keys`` (one per on-chain transfer, or
    the one Stripe event), with ``also`` (more items, after these). Raises ``WriteRefused`` when any of
    them was credited before, to any account."""
    records = [record_item(key, account_id, kind=kind, now=now, details=details) for key in event_keys]
    transact(
        [
            *records,
            accounts.credit_balance_update(account_id, amount_micros),
            ledger.entry_put(
                account_id, amount_micros=amount_micros, kind=kind, reference=reference, now=now, unique=reference
            ),
            *also,
        ]
    )


def mapping_item(event_key: str, account_id: str, *, kind: str, now: str, details: dict[str, Any]) -> dict[str, Any]:
    """A transaction item recording which account a payment belongs to (e.g. a PaymentIntent, for its later
    refunds and disputes). Not a guard: written over, as only one payment ever has that id."""
    record = {"eventKey": event_key, "accountId": account_id, "kind": kind, "createdAt": now, **details}
    return {"Put": {"TableName": get_settings().payment_events_table, "Item": to_item(record)}}


def record_item(
    event_key: str, account_id: str | None, *, kind: str, now: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A transaction item recording ``event_key`` as applied; it fails if it was applied before."""
    record = {"eventKey": event_key, "accountId": account_id, "kind": kind, "createdAt": now, **(details or {})}
    return {
        "Put": {
            "TableName": get_settings().payment_events_table,
            "Item": to_item(record),
            "ConditionExpression": "attribute_not_exists(eventKey)",
        }
    }


def record(event_key: str) -> dict[str, Any] | None:
    """The record of ``event_key`` (a consistent read), or None."""
    response = client().get_item(
        TableName=get_settings().payment_events_table, Key={"eventKey": {"S": event_key}}, ConsistentRead=True
    )
    return from_item(response.get("Item"))


def state_item(event_key: str, account_id: str, *, kind: str, now: str, expected: dict[str, Any] | None,
               **state: Any) -> dict[str, Any]:  # fmt: skip
    """A transaction item writing the state of a payment that changes over time (a charge's refunds, a
    dispute), only over the state that was read (``expected`` None: only if there is none yet)."""
    item = {"eventKey": event_key, "accountId": account_id, "kind": kind, "createdAt": now, **state}
    put: dict[str, Any] = {"TableName": get_settings().payment_events_table, "Item": to_item(item)}
    if expected is None:
        put["ConditionExpression"] = "attribute_not_exists(eventKey)"
    else:
        names = {f"#{name}": name for name in expected}
        put["ConditionExpression"] = " AND ".join(f"#{name} = :{name}" for name in expected)
        put["ExpressionAttributeNames"] = names
        put["ExpressionAttributeValues"] = to_values({f":{name}": value for name, value in expected.items()})
    return {"Put": put}


def is_recorded(event_key: str) -> bool:
    """Whether ``event_key`` was applied (a consistent read: a commit a moment ago counts)."""
    response = client().get_item(
        TableName=get_settings().payment_events_table,
        Key={"eventKey": {"S": event_key}},
        ConsistentRead=True,
        ProjectionExpression="eventKey",
    )
    return "Item" in response
