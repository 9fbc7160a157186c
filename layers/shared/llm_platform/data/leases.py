"""Leases of a hot credit key's central limits (issue 16): the DynamoDB side.

A lease is a slice of one key's minute (``n`` requests, ``t`` tokens) and of its money (``m`` micro-dollars
of the account's balance, and of the key's maxBudget or budget period) held by one proxy instance. Its
item lives in the Reservations table (``requestId = lease#<leaseId>``), so the reconciler's ``byDeadline``
query finds a lease whose instance died (``deadline`` = the lease's end).

- **take**: one transaction on the central items, carrying the triggering request's reservation;
- **admit**: one transaction on the lease item only (it enforces the slice) + the reservation;
- **settle**: one transaction on the lease item + the log record + a sharded daily counter;
- **return**: one transaction putting what the lease did onto the central items (key totals, balance,
  one ledger entry, minute counter) and deleting the lease, on condition nothing is open on it and nothing
  was admitted since it was read, so a lease is returned exactly once, by its instance or the reconciler;
- **revoke**: a key change marks the key's live leases (the registry: the ``leases`` set of the minute
  counter each was taken on), so their next admission fails and the instance reads the key again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import ledger
from llm_platform.data import metering as direct
from llm_platform.data.dynamo import WriteRefused, client, from_item, to_item, to_values, transact
from llm_platform.data.usage_counters import CounterId, as_key, get_many, minute_counter

DAILY_SHARDS = 8  # a hot key's day counter is spread over this many items (readers sum them)


def lease_item_id(lease_id: str) -> str:
    return f"lease#{lease_id}"


@dataclass(frozen=True, slots=True)
class TakePlan:
    admit: direct.AdmitPlan  # the triggering request's admission (its reservation record included)
    lease_id: str
    instance_id: str
    requests: int  # n
    tokens: int  # t
    micros: int  # m
    lease_end: str  # ISO; the lease admits nothing after it


def lease_record(plan: TakePlan) -> dict[str, Any]:
    admit = plan.admit
    return {
        "requestId": lease_item_id(plan.lease_id),
        "kind": "lease",
        "leaseId": plan.lease_id,
        "status": "active",
        "instanceId": plan.instance_id,
        "keyHash": admit.key_hash,
        "keyId": admit.key_id,
        "accountId": admit.account_id,
        "credit": True,
        "version": admit.version,
        "minute": list(admit.minute),
        "budgetPeriod": list(admit.budget_period) if admit.budget_period else None,
        "grantedRequests": plan.requests,
        "grantedTokens": plan.tokens,
        "grantedMicros": plan.micros,
        # The triggering request is admitted on the lease in the take itself.
        "admitted": 1,
        "openCount": 1,
        "committedMicros": admit.reserve_micros,
        "committedTokens": admit.reserve_tokens,
        "spentMicros": 0,
        "tokens": 0,
        "requestCount": 0,
        "inputTokens": 0,
        "outputTokens": 0,
        "takenAt": admit.now_iso,
        "leaseEnd": plan.lease_end,
        # The reconciler's index: due once the lease has ended (its requests' own records come later).
        "openShard": direct.reservation_shard(plan.lease_id),
        "deadline": plan.lease_end,
    }


def take(plan: TakePlan) -> None:
    """One transaction: the key (active, at the snapshot's version, maxBudget room for m, spend += m), the
    minute counter (room for n and t), the balance (covers m, -= m), the budget period counter, the lease
    item and the triggering request's reservation. ``direct.AdmissionRefused`` names the failed check."""
    admit = plan.admit
    money = replace(admit, reserve_micros=plan.micros)
    minute = direct.minute_block_update(admit, plan.requests, plan.tokens, plan.lease_id)
    checks = [direct.key_check(money), minute, direct.balance_update(money)]
    if admit.budget_period is not None:
        checks.append(direct.key_budget_update(money))
    checks.append(
        (
            "lease",
            {
                "Put": {
                    "TableName": get_settings().reservations_table,
                    "Item": to_item(lease_record(plan)),
                    "ConditionExpression": "attribute_not_exists(requestId)",
                }
            },
        )
    )
    reservation = {**(admit.reservation or {}), "leaseId": plan.lease_id}
    checks.append(
        (
            "reservation",
            {
                "Put": {
                    "TableName": get_settings().reservations_table,
                    "Item": to_item(reservation),
                    "ConditionExpression": "attribute_not_exists(requestId)",
                }
            },
        )
    )
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"take:{reservation.get('requestId')}"))
    try:
        transact([item for _, item in checks], ClientRequestToken=token)
    except WriteRefused as refused:
        failed = refused.reasons.index("ConditionalCheckFailed")
        raise direct.AdmissionRefused(direct.Refusal(checks[failed][0], refused.items[failed])) from refused


class LeaseRefused(Exception):
    """The lease cannot admit: revoked, returned, or its slice is used up. ``item`` is the lease as it was
    (None when it no longer exists)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("lease refused")
        self.item = item


def admit(
    lease_id: str, *, granted: tuple[int, int, int], reserve_micros: int, reserve_tokens: int, reservation: dict
) -> None:
    """One transaction on the lease item and the request's reservation. The lease item enforces the
    slice itself (``granted`` = (n, t, m) as taken), so no local count can make it over-admit."""
    requests, tokens, micros = granted
    update = {
        "Update": {
            "TableName": get_settings().reservations_table,
            "Key": {"requestId": {"S": lease_item_id(lease_id)}},
            "UpdateExpression": "ADD openCount :one, admitted :one, committedMicros :r, committedTokens :rt",
            "ConditionExpression": "#status = :active AND admitted < :n AND committedMicros <= :room_m "
            "AND committedTokens <= :room_t",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(
                {
                    ":one": 1,
                    ":r": reserve_micros,
                    ":rt": reserve_tokens,
                    ":active": "active",
                    ":n": requests,
                    ":room_m": micros - reserve_micros,
                    ":room_t": tokens - reserve_tokens,
                }
            ),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    put = {
        "Put": {
            "TableName": get_settings().reservations_table,
            "Item": to_item({**reservation, "leaseId": lease_id}),
            "ConditionExpression": "attribute_not_exists(requestId)",
        }
    }
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lease-admit:{reservation['requestId']}"))
    try:
        transact([update, put], ClientRequestToken=token)
    except WriteRefused as refused:
        raise LeaseRefused(refused.items[0]) from refused


def daily_shard(counter: CounterId, request_id: str) -> CounterId:
    """The request's shard of its day counter: spread evenly by request id (the same on a retried settle)."""
    return counter[0], f"{counter[1]}#{int(request_id.replace('-', '')[-4:], 16) % DAILY_SHARDS}"


def settle(plan: direct.SettlePlan, lease_id: str) -> int:
    """One transaction: the lease item takes the request's real cost and tokens (the central items get
    them when the lease is returned), the reservation record goes, the log record and the day's counter
    (a shard of it) come."""
    settings = get_settings()
    tokens = plan.input_tokens + plan.output_tokens
    items = [
        {
            "Update": {
                "TableName": settings.reservations_table,
                "Key": {"requestId": {"S": lease_item_id(lease_id)}},
                "UpdateExpression": "ADD openCount :minus, committedMicros :delta, spentMicros :cost, "
                "committedTokens :tdelta, tokens :tokens, requestCount :requests, inputTokens :input, "
                "outputTokens :output",
                "ConditionExpression": "attribute_exists(requestId)",
                "ExpressionAttributeValues": to_values(
                    {
                        ":minus": -1,
                        ":delta": plan.cost_micros - plan.reserve_micros,
                        ":cost": plan.cost_micros,
                        ":tdelta": tokens - plan.reserve_tokens,
                        ":tokens": tokens,
                        ":requests": 1 if plan.counted else 0,
                        ":input": plan.input_tokens,
                        ":output": plan.output_tokens,
                    }
                ),
            }
        },
        *direct.log_items(plan, daily_shard(plan.daily, plan.request_id)),
        direct.reservation_delete(plan.request_id, plan.due_before),
    ]
    return transact(items, ClientRequestToken=direct.settle_token(plan))


def read(lease_id: str) -> dict[str, Any] | None:
    response = client().get_item(
        TableName=get_settings().reservations_table,
        Key={"requestId": {"S": lease_item_id(lease_id)}},
        ConsistentRead=True,
    )
    return from_item(response.get("Item"))


def give_back(lease: dict[str, Any], now_iso: str) -> bool:
    """Return a lease read by ``read``: what it did goes onto the central items, what it did not use
    comes back, in one transaction, on condition nothing is open on it and nothing was admitted since it
    was read. True when returned; False when it is still in use, changed, or already returned."""
    if lease.get("openCount", 0) != 0:
        return False
    settings = get_settings()
    lease_id = lease["leaseId"]
    spent, granted = int(lease.get("spentMicros", 0)), int(lease["grantedMicros"])
    items: list[dict[str, Any]] = [
        {
            "Delete": {
                "TableName": settings.reservations_table,
                "Key": {"requestId": {"S": lease_item_id(lease_id)}},
                "ConditionExpression": "attribute_exists(requestId) AND openCount = :zero AND admitted = :admitted",
                "ExpressionAttributeValues": to_values({":zero": 0, ":admitted": lease["admitted"]}),
            }
        },
        {
            "Update": {
                "TableName": settings.api_keys_table,
                "Key": {"keyHash": {"S": lease["keyHash"]}},
                # The take added m to spendMicros (as admission adds a reservation): keep what was spent.
                "UpdateExpression": "ADD requestCount :requests, inputTokens :input, outputTokens :output, "
                "spendMicros :spend",
                "ExpressionAttributeValues": to_values(
                    {
                        ":requests": lease.get("requestCount", 0),
                        ":input": lease.get("inputTokens", 0),
                        ":output": lease.get("outputTokens", 0),
                        ":spend": spent - granted,
                    }
                ),
            }
        },
        {
            "Update": {
                "TableName": settings.accounts_table,
                "Key": {"accountId": {"S": lease["accountId"]}},
                "UpdateExpression": "ADD creditBalanceMicros :unspent",
                "ExpressionAttributeValues": to_values({":unspent": granted - spent}),
            }
        },
        {
            "Update": {
                "TableName": settings.usage_counters_table,
                "Key": as_key(tuple(lease["minute"])),
                # Requests not admitted and tokens not used come back to the minute (exact counts).
                "UpdateExpression": "ADD requests :requests, tokens :tokens DELETE leases :id",
                "ExpressionAttributeValues": to_values(
                    {
                        ":requests": int(lease["admitted"]) - int(lease["grantedRequests"]),
                        ":tokens": int(lease.get("tokens", 0)) - int(lease["grantedTokens"]),
                        ":id": {lease_id},
                    }
                ),
            }
        },
    ]
    if lease.get("budgetPeriod"):
        items.append(
            {
                "Update": {
                    "TableName": settings.usage_counters_table,
                    "Key": as_key(tuple(lease["budgetPeriod"])),
                    "UpdateExpression": "ADD spendMicros :spend",
                    "ExpressionAttributeValues": to_values({":spend": spent - granted}),
                }
            }
        )
    if spent:
        # One usage entry for everything the lease's requests cost (each request is in the log).
        items.append(
            ledger.entry_put(
                lease["accountId"],
                amount_micros=-spent,
                kind="usage",
                reference=lease_item_id(lease_id),
                now=now_iso,
                unique=lease_item_id(lease_id),
            )
        )
    try:
        transact(items)
    except WriteRefused:
        return False
    return True


def live_leases(key_id: str, minutes: list[int]) -> list[str]:
    """The ids of the key's leases taken on these minutes and not returned (consistent reads)."""
    counters = get_many([minute_counter(key_id, minute) for minute in minutes])
    return sorted({lease_id for item in counters.values() for lease_id in item.get("leases", [])})


def revoke(lease_id: str) -> bool:
    """Mark a lease revoked: its next admission fails. False when it was already returned."""
    try:
        client().update_item(
            TableName=get_settings().reservations_table,
            Key={"requestId": {"S": lease_item_id(lease_id)}},
            UpdateExpression="SET #status = :revoked",
            ConditionExpression="attribute_exists(requestId)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_values({":revoked": "revoked"}),
        )
    except client().exceptions.ConditionalCheckFailedException:
        return False
    return True
