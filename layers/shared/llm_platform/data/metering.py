"""The proxy's two DynamoDB round trips: one admission transaction, one settle transaction.

Admission (all or nothing):
  - the key is still active (and, for a credit key, its ``maxBudget`` has room for the reservation),
  - the key's minute counter is below RPM and TPM (``requests`` is incremented here, exactly),
  - subscription key: the subscription is active and the 5-hour window's committed spend (settled +
    reserved) is below the budget; credit key: the balance covers the whole reservation (deducted here),
    so money can never go negative while a quota may be overshot by at most one request.
Every admission also proves the key's cached ``version`` is current (limits, expiry, rotation), so a
change made through the management API applies to the next request even on a warm instance.
Admission also puts the request's reservation record (everything needed to settle it without the
request), so a request that dies is settled by the reconciler. Settle replaces the reservation with the
real cost and records usage (and, for credit, a ledger entry), the request's log record and its day's
counters, and deletes the reservation record, in the same transaction: whichever of the request and the
reconciler settles first wins, the other is refused. Both transactions carry a ``ClientRequestToken``,
so a retry of one that committed (a lost answer, retried by botocore) applies nothing twice."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import ledger, log_shards, request_log
from llm_platform.data.dynamo import WriteRefused, client, from_item, to_item, to_values, transact, update_if
from llm_platform.data.usage_counters import CounterId, as_key


@dataclass(frozen=True, slots=True)
class AdmitPlan:
    key_hash: str
    key_id: str
    account_id: str
    minute: CounterId
    minute_expires_at: int
    rpm: int
    tpm: int
    reserve_micros: int
    reserve_tokens: int  # counted against TPM at admission, corrected to the real count at settle
    now_iso: str
    version: int  # the key's version the caller's snapshot was read at
    # Subscription keys
    subscription_id: str | None = None
    window: CounterId | None = None
    window_expires_at: int | None = None
    budget_micros: int | None = None
    # Credit keys
    max_budget_micros: int | None = None
    budget_period: CounterId | None = None  # with budgetReset: maxBudget is checked on this period's counter
    budget_period_expires_at: int | None = None
    # The reservation record (see ``reservation_record``): how to settle this request without it.
    reservation: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which admission check failed, with the item as it was (for exact 429 details)."""

    check: str  # "key" | "rate" | "subscription" | "budget" | "key_budget" | "balance"
    item: dict[str, Any] | None


class AdmissionRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.check)
        self.refusal = refusal


def key_check(plan: AdmitPlan) -> tuple[str, dict[str, Any]]:
    settings = get_settings()
    # Active, and at the version the caller's snapshot of its limits was read at.
    # (Keys created before versions existed have none: version 0.)
    version = "(attribute_not_exists(version) OR version = :v)" if plan.version == 0 else "version = :v"
    condition = f"#status = :active AND {version}"
    values: dict[str, Any] = {":active": "active", ":v": plan.version}
    if plan.subscription_id is not None:
        return "key", {
            "ConditionCheck": {
                "TableName": settings.api_keys_table,
                "Key": {"keyHash": {"S": plan.key_hash}},
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": to_values(values),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
    # Credit key: reserve against its own lifetime cap in the same write that proves it is active
    # (with budgetReset the cap is checked on the period's counter instead, see key_budget_update).
    values[":reserve"] = plan.reserve_micros
    if plan.max_budget_micros is not None and plan.budget_period is None:
        condition += " AND (attribute_not_exists(spendMicros) OR spendMicros <= :room)"
        values[":room"] = plan.max_budget_micros - plan.reserve_micros
    return "key", {
        "Update": {
            "TableName": settings.api_keys_table,
            "Key": {"keyHash": {"S": plan.key_hash}},
            "UpdateExpression": "ADD spendMicros :reserve",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_values(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def key_budget_update(plan: AdmitPlan) -> tuple[str, dict[str, Any]]:
    """A credit key with ``budgetReset``: its spend in the current calendar period stays within maxBudget
    (the item of a new period starts at zero: that is the reset)."""
    period, max_budget_micros = plan.budget_period, plan.max_budget_micros
    if period is None or max_budget_micros is None:
        raise ValueError("a budget period is checked against maxBudget: the plan needs both")
    return "key_budget", {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": as_key(period),
            "UpdateExpression": "ADD spendMicros :reserve SET expiresAt = :expires",
            "ConditionExpression": "attribute_not_exists(spendMicros) OR spendMicros <= :room",
            "ExpressionAttributeValues": to_values(
                {
                    ":reserve": plan.reserve_micros,
                    ":room": max_budget_micros - plan.reserve_micros,
                    ":expires": plan.budget_period_expires_at,
                }
            ),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def rate_update(plan: AdmitPlan) -> tuple[str, dict[str, Any]]:
    return "rate", {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": as_key(plan.minute),
            # requests: exact RPM. tokens: settled + reserved this minute; admitting while below TPM lets
            # the last admitted request overshoot by at most its own reservation (as OpenAI counts TPM).
            "UpdateExpression": "ADD requests :one, tokens :tokens SET expiresAt = :expires",
            "ConditionExpression": "(attribute_not_exists(requests) OR requests < :rpm) "
            "AND (attribute_not_exists(tokens) OR tokens < :tpm)",
            "ExpressionAttributeValues": to_values(
                {
                    ":one": 1,
                    ":tokens": plan.reserve_tokens,
                    ":rpm": plan.rpm,
                    ":tpm": plan.tpm,
                    ":expires": plan.minute_expires_at,
                }
            ),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def minute_block_update(
    plan: AdmitPlan, requests: int, tokens: int, lease_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    """This minute's counter taking ``requests`` and ``tokens`` at once for a lease or a key shard, all or
    nothing, with room for them left under RPM and TPM; a lease's id also joins the minute's registry."""
    values: dict[str, Any] = {
        ":n": requests,
        ":t": tokens,
        ":room_r": plan.rpm - requests,
        ":room_t": plan.tpm - tokens,
        ":expires": plan.minute_expires_at,
    }
    added = "requests :n, tokens :t"
    if lease_id is not None:
        added, values[":id"] = f"{added}, leases :id", {lease_id}
    return "rate", {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": as_key(plan.minute),
            "UpdateExpression": f"ADD {added} SET expiresAt = :expires",
            "ConditionExpression": "(attribute_not_exists(requests) OR requests <= :room_r) "
            "AND (attribute_not_exists(tokens) OR tokens <= :room_t)",
            "ExpressionAttributeValues": to_values(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def subscription_items(plan: AdmitPlan) -> list[tuple[str, dict[str, Any]]]:
    settings = get_settings()
    window = plan.window
    if window is None:
        raise ValueError("a subscription key's admission needs its budget window")
    return [
        (
            "subscription",
            {
                "ConditionCheck": {
                    "TableName": settings.subscriptions_table,
                    "Key": {"subscriptionId": {"S": plan.subscription_id}},
                    "ConditionExpression": "#status = :active AND currentPeriodEnd > :now",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": to_values({":active": "active", ":now": plan.now_iso}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ),
        (
            "budget",
            {
                "Update": {
                    "TableName": settings.usage_counters_table,
                    "Key": as_key(window),
                    # committedMicros = settled spend + in-flight reservations. Admitting while it is
                    # below the budget lets the last admitted request overshoot by at most its own cost.
                    "UpdateExpression": "ADD committedMicros :reserve SET expiresAt = :expires",
                    "ConditionExpression": "attribute_not_exists(committedMicros) OR committedMicros < :budget",
                    "ExpressionAttributeValues": to_values(
                        {
                            ":reserve": plan.reserve_micros,
                            ":budget": plan.budget_micros,
                            ":expires": plan.window_expires_at,
                        }
                    ),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ),
    ]


def balance_update(plan: AdmitPlan) -> tuple[str, dict[str, Any]]:
    return "balance", {
        "Update": {
            "TableName": get_settings().accounts_table,
            "Key": {"accountId": {"S": plan.account_id}},
            "UpdateExpression": "ADD creditBalanceMicros :minus",
            "ConditionExpression": "creditBalanceMicros >= :reserve",
            "ExpressionAttributeValues": to_values({":minus": -plan.reserve_micros, ":reserve": plan.reserve_micros}),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


# The reconciler's index is spread over this many partitions (was 16: about 8,000 admissions/s over every
# account; the reconciler reads every one of them, so records put under the old 16 stay covered).
RESERVATION_SHARDS = 64


def reservation_shard(request_id: str) -> str:
    return f"open#{int(request_id.replace('-', '')[:4], 16) % RESERVATION_SHARDS}"


def reservation_put(reservation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "reservation", {
        "Put": {
            "TableName": get_settings().reservations_table,
            "Item": to_item(reservation),
            "ConditionExpression": "attribute_not_exists(requestId)",
        }
    }


def admit(plan: AdmitPlan) -> int:
    """One transaction; the number of ``TransactionConflict`` retries it met (a hot key's sign, see
    ``domain.hot_keys``). ``AdmissionRefused`` names the failed check."""
    checks = [key_check(plan), rate_update(plan)]
    checks += subscription_items(plan) if plan.subscription_id is not None else [balance_update(plan)]
    if plan.budget_period is not None:
        checks.append(key_budget_update(plan))
    if plan.reservation is not None:
        checks.append(reservation_put(plan.reservation))
    request_id = plan.reservation["requestId"] if plan.reservation else None
    try:
        return transact([item for _, item in checks], **({"ClientRequestToken": request_id} if request_id else {}))
    except WriteRefused as refused:
        failed = refused.reasons.index("ConditionalCheckFailed")
        raise AdmissionRefused(Refusal(checks[failed][0], refused.items[failed])) from refused


@dataclass(frozen=True, slots=True)
class SettlePlan:
    request_id: str
    key_hash: str
    account_id: str
    minute: CounterId
    reserve_micros: int
    reserve_tokens: int
    cost_micros: int
    input_tokens: int
    output_tokens: int
    counted: bool  # False when no provider answered: only the reservation is released
    now_iso: str
    # The request's log record (the API's field names) and the day × key × model counter it adds to.
    log_record: dict[str, Any]
    log_expires_at: int
    daily: CounterId
    window: CounterId | None = None  # subscription keys
    credit: bool = False
    budget_period: CounterId | None = None  # credit keys with budgetReset: the period reserved in
    by: str = "request"  # or "reconciler": who settles (their transactions differ, so do their tokens)
    due_before: str | None = None  # the reconciler's: settled only if the record's deadline is before it
    log_shards: int = 0  # the key's log shards (L): the log record and day counter go on one of them


def settle(plan: SettlePlan) -> int:
    """One transaction; ``ClientRequestToken`` makes a retried settle apply once. The number of
    ``TransactionConflict`` retries it met."""
    settings = get_settings()
    tokens = plan.input_tokens + plan.output_tokens
    delta = plan.cost_micros - plan.reserve_micros
    requests = 1 if plan.counted else 0
    items: list[dict[str, Any]] = [
        {
            "Update": {
                "TableName": settings.api_keys_table,
                "Key": {"keyHash": {"S": plan.key_hash}},
                # A credit key reserved on spendMicros at admission; a subscription key did not.
                "UpdateExpression": "ADD requestCount :requests, inputTokens :input, outputTokens :output, "
                "spendMicros :spend",
                "ExpressionAttributeValues": to_values(
                    {
                        ":requests": requests,
                        ":input": plan.input_tokens,
                        ":output": plan.output_tokens,
                        ":spend": delta if plan.credit else plan.cost_micros,
                    }
                ),
            }
        },
        {
            "Update": {
                "TableName": settings.usage_counters_table,
                "Key": as_key(plan.minute),
                "UpdateExpression": "ADD tokens :tokens",
                "ExpressionAttributeValues": to_values({":tokens": tokens - plan.reserve_tokens}),
            }
        },
    ]
    if plan.window is not None:
        items.append(
            {
                "Update": {
                    "TableName": settings.usage_counters_table,
                    "Key": as_key(plan.window),
                    "UpdateExpression": "ADD committedMicros :delta, spendMicros :cost, tokens :tokens, "
                    "requests :requests",
                    "ExpressionAttributeValues": to_values(
                        {":delta": delta, ":cost": plan.cost_micros, ":tokens": tokens, ":requests": requests}
                    ),
                }
            }
        )
    if plan.budget_period is not None:
        items.append(
            {
                "Update": {
                    "TableName": settings.usage_counters_table,
                    "Key": as_key(plan.budget_period),
                    "UpdateExpression": "ADD spendMicros :delta",
                    "ExpressionAttributeValues": to_values({":delta": delta}),
                }
            }
        )
    items += log_items(plan)
    if plan.credit:
        items.append(
            {
                "Update": {
                    "TableName": settings.accounts_table,
                    "Key": {"accountId": {"S": plan.account_id}},
                    "UpdateExpression": "ADD creditBalanceMicros :refund",
                    "ExpressionAttributeValues": to_values({":refund": -delta}),
                }
            }
        )
        if plan.cost_micros:
            items.append(
                ledger.entry_put(
                    plan.account_id,
                    amount_micros=-plan.cost_micros,
                    kind="usage",
                    reference=plan.request_id,
                    now=plan.now_iso,
                    unique=plan.request_id,
                )
            )
    # The reservation record goes with the settle: a request and the reconciler cannot both settle it.
    items.append(reservation_delete(plan.request_id, plan.due_before))
    return transact(items, ClientRequestToken=settle_token(plan))


def settle_token(plan: SettlePlan) -> str:
    """The settle's ``ClientRequestToken``: who settles (request, reconciler) and which request."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{plan.by}:{plan.request_id}"))


def reservation_delete(request_id: str, due_before: str | None = None) -> dict[str, Any]:
    """The settle deletes the reservation record: a request and the reconciler cannot both settle it. The
    reconciler's (``due_before``: its cutoff) also needs the deadline still passed on the record itself:
    the index it found the record by may not show a heartbeat of the running request yet."""
    delete: dict[str, Any] = {
        "TableName": get_settings().reservations_table,
        "Key": {"requestId": {"S": request_id}},
        "ConditionExpression": "attribute_exists(requestId)",
    }
    if due_before is not None:
        delete["ConditionExpression"] += " AND deadline < :due"
        delete["ExpressionAttributeValues"] = {":due": {"S": due_before}}
    return {"Delete": delete}


def extend_reservation(request_id: str, deadline: str) -> bool:
    """A running request's heartbeat: its reservation's deadline moved out to ``deadline``. False when there
    is nothing to extend: settled or reconciled already, or the deadline is already that far."""
    updated = update_if(
        TableName=get_settings().reservations_table,
        Key={"requestId": {"S": request_id}},
        UpdateExpression="SET deadline = :deadline",
        ConditionExpression="attribute_exists(requestId) AND deadline < :deadline",
        ExpressionAttributeValues={":deadline": {"S": deadline}},
    )
    return updated is not None


def log_items(plan: SettlePlan, daily: CounterId | None = None) -> list[dict[str, Any]]:
    """Every settle's log record put and day counter update (``daily``: the counter, when not the plan's,
    e.g. a lease's sort-key shard of it), on the request's log shard when its key has ``log_shards``."""
    shard = log_shards.shard_of(plan.request_id, plan.log_shards)
    return [
        request_log.record_put(plan.log_record, plan.log_expires_at, shard),
        daily_update(log_shards.counter_on_shard(daily or plan.daily, shard), plan.log_record),
    ]


def daily_update(counter: CounterId, log: dict[str, Any]) -> dict[str, Any]:
    """Add one logged request to its day x key x model counter (or a shard of it, see ``data.leases``)."""
    return {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": as_key(counter),
            # Every logged request counts, so the day's sums equal the log's exactly.
            "UpdateExpression": "ADD requests :one, promptTokens :prompt, completionTokens :completion, "
            "spendMicros :cost SET #date = :date, keyId = :key, #model = :model",
            "ExpressionAttributeNames": {"#date": "date", "#model": "model"},
            "ExpressionAttributeValues": to_values(
                {
                    ":one": 1,
                    ":prompt": log["promptTokens"],
                    ":completion": log["completionTokens"],
                    ":cost": log["costMicros"],
                    ":date": log["createdAt"][:10],
                    ":key": log["keyId"],
                    ":model": log["model"],
                }
            ),
        }
    }


def due_reservations(shard: str, deadline_before: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` open reservations of one shard whose request's deadline passed before the given
    time (the ``byDeadline`` index, oldest first). The index is eventually consistent: the settle's
    condition on the record itself is what decides."""
    response = client().query(
        TableName=get_settings().reservations_table,
        IndexName="byDeadline",
        KeyConditionExpression="openShard = :shard AND deadline < :before",
        ExpressionAttributeValues=to_values({":shard": shard, ":before": deadline_before}),
        Limit=limit,
    )
    return [from_item(item) for item in response["Items"]]
