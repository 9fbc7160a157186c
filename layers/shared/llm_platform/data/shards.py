"""Key shards of a hot credit key (issue 16): the DynamoDB side (the policy is ``proxy.shards``).

A key in shard mode (its item has ``shards`` = S >= 2) has S shard items in the UsageCounters table,
pk ``shard#<keyId>#<s>``, sk ``shard`` (each its own partition; no index). A shard holds a slice of the
key's central limits, shared by every proxy environment: ``requestsLeft`` / ``tokensLeft`` of one clock
``minute`` and ``available`` micro-dollars (already taken from the balance and added to the key's
``spendMicros``), plus what its requests did since the last sync (``spent``, ``requests``,
``inputTokens``, ``outputTokens``) and ``openCount`` (requests admitted on it, not yet settled).

- **admit**: one transaction: the shard (conditions enforce the slice) + the request's reservation;
- **refill**: one transaction carrying the request: the central items exactly as a direct admission but
  for a slice of n requests / t tokens / m micro-dollars, the shard item, the reservation, and a sync of
  what the shard had spent when it was read (one ledger ``usage`` entry, the key's totals);
- **settle**: one transaction: the shard (money back, spend recorded), reservation deleted, log + day counter;
- **give back** (the reconciler): an idle shard's ``available`` back to the balance and its unsynced spend
  to the ledger, on condition nothing changed since it was read (exactly once);
- **revoke**: a key change marks its S shards revoked: their next admission fails.
A registry item per key in shard mode (pk ``hotkeys``, sk ``key#<keyId>``, written at promotion) lets the
reconciler and revocation find them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import ledger
from llm_platform.data import metering as direct
from llm_platform.data.dynamo import WriteRefused, client, query_all, to_values, transact
from llm_platform.data.usage_counters import CounterId, as_key, get_many

SHARD_SK = "shard"
REGISTRY_PK = "hotkeys"
MAX_SHARDS = 256


def shard_key(key_id: str, index: int) -> str:
    """The shard's partition key (also what a reservation admitted on it carries as ``shardKey``)."""
    return f"shard#{key_id}#{index}"


def shard_counter(key_id: str, index: int) -> CounterId:
    return shard_key(key_id, index), SHARD_SK


def _shard_item_key(key: str) -> dict[str, Any]:
    return as_key((key, SHARD_SK))


def _registry_key(key_id: str) -> CounterId:
    return REGISTRY_PK, f"key#{key_id}"


class ShardRefused(Exception):
    """The shard cannot admit (other minute, too little left, revoked, other version). ``item``: the shard
    as it was (None: it does not exist yet). ``conflicts``: TransactionConflict retries met."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("shard refused")
        self.item = item


def admit(
    key: str, *, version: int, minute: int, reserve_micros: int, reserve_tokens: int, reservation: dict, now_ms: int
) -> int:
    """One transaction: take one request, its tokens and its money from the shard (the shard's conditions
    decide) and put its reservation (carrying ``shardKey``). The conflicts retried; ``ShardRefused``."""
    update = {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": _shard_item_key(key),
            "UpdateExpression": "ADD requestsLeft :minus, tokensLeft :minus_t, available :minus_m, openCount :one "
            "SET lastUsed = :now",
            "ConditionExpression": "#status = :active AND version = :v AND #minute = :m AND requestsLeft >= :one "
            "AND tokensLeft >= :rt AND available >= :r",
            "ExpressionAttributeNames": {"#status": "status", "#minute": "minute"},
            "ExpressionAttributeValues": to_values(
                {
                    ":minus": -1,
                    ":minus_t": -reserve_tokens,
                    ":minus_m": -reserve_micros,
                    ":one": 1,
                    ":now": now_ms,
                    ":active": "active",
                    ":v": version,
                    ":m": minute,
                    ":rt": reserve_tokens,
                    ":r": reserve_micros,
                }
            ),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    put = direct.reservation_put({**reservation, "shardKey": key})[1]
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"shard-admit:{reservation['requestId']}"))
    try:
        return transact([update, put], ClientRequestToken=token)
    except WriteRefused as refused:
        raise ShardRefused(refused.items[0]) from refused


@dataclass(frozen=True, slots=True)
class Sync:
    """What a shard's requests did since its last sync, as read: moved to the ledger and the key's totals."""

    spent: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> Sync:
        item = item or {}
        return cls(
            max(0, int(item.get("spent", 0))),
            max(0, int(item.get("requests", 0))),
            max(0, int(item.get("inputTokens", 0))),
            max(0, int(item.get("outputTokens", 0))),
        )

    def __bool__(self) -> bool:
        return any((self.spent, self.requests, self.input_tokens, self.output_tokens))


@dataclass(frozen=True, slots=True)
class RefillPlan:
    admit: direct.AdmitPlan  # the triggering request's admission (reservation record included)
    shard: str  # the shard's partition key
    minute: int
    requests: int  # n (the triggering request's one included)
    tokens: int  # t
    micros: int  # m
    new_minute: bool  # the shard's minute is another (or it does not exist): SET the slice, else ADD to it
    sync: Sync  # moved off the shard to the ledger and the key's totals (the shard's values as read)
    now_ms: int
    shards: int = 1  # S: the balance / maxBudget must cover S slices, so one shard holds at most ~1/S of it


def _shard_refill(plan: RefillPlan) -> tuple[str, dict[str, Any]]:
    admit = plan.admit
    sync = plan.sync
    values: dict[str, Any] = {
        ":m": plan.minute,
        ":left_r": plan.requests - 1,
        ":left_t": plan.tokens - admit.reserve_tokens,
        ":avail": plan.micros - admit.reserve_micros,
        ":one": 1,
        ":v": admit.version,
        ":active": "active",
        ":key_id": admit.key_id,
        ":account": admit.account_id,
        ":key_hash": admit.key_hash,
        ":now": plan.now_ms,
        ":slice": plan.requests,
        ":spent": -sync.spent,
        ":requests": -sync.requests,
        ":input": -sync.input_tokens,
        ":output": -sync.output_tokens,
    }
    assign = (
        "SET version = :v, #status = :active, keyId = :key_id, accountId = :account, keyHash = :key_hash, "
        "lastUsed = :now, refilledAt = :now, #slice = :slice"
    )
    adds = "ADD available :avail, openCount :one, spent :spent, requests :requests, inputTokens :input, "
    adds += "outputTokens :output, refills :one"
    if plan.new_minute:
        # A new minute's slice replaces what was left of the old one (the central counter counted it).
        expression = f"{assign}, #minute = :m, requestsLeft = :left_r, tokensLeft = :left_t {adds}"
        condition = "attribute_not_exists(#minute) OR #minute < :m"
    else:
        expression = f"{assign} {adds}, requestsLeft :left_r, tokensLeft :left_t"
        condition = "#minute = :m"
    # The sync moves what was read: never more than is there (a concurrent sync took it: refused, re-read).
    for attribute, placeholder, amount in (
        ("spent", ":has_spent", sync.spent),
        ("requests", ":has_requests", sync.requests),
        ("inputTokens", ":has_input", sync.input_tokens),
        ("outputTokens", ":has_output", sync.output_tokens),
    ):
        if amount:
            condition = f"({condition}) AND {attribute} >= {placeholder}"
            values[placeholder] = amount
    return "shard", {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": _shard_item_key(plan.shard),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status", "#minute": "minute", "#slice": "slice"},
            "ExpressionAttributeValues": to_values(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def sync_reference(shard: str) -> str:
    """The ledger ``usage`` entries of a shard's syncs name the shard (each request is in the request log)."""
    return shard


def refill(plan: RefillPlan) -> int:
    """One transaction: the key (active, at the snapshot's version, maxBudget room for m, spend += m, the
    synced totals), the minute counter (room for n and t), the balance (covers m, -= m), the shard (the
    slice, the triggering request admitted on it, the sync), the ledger entry of the sync, the reservation.
    ``direct.AdmissionRefused`` names the failed check ("shard": the shard changed since it was read)."""
    admit = plan.admit
    if admit.budget_period is not None:
        raise ValueError("a key with a budget reset is not served from shards")
    money = replace(admit, reserve_micros=plan.micros)
    label, key_update = direct.key_check(money)
    balance = direct.balance_update(money)
    # Headroom: the money left centrally must cover S such slices (the refill takes one), so shards never hold
    # most of a small balance or maxBudget; below that the requests go the direct path, exact to the last one.
    cover = plan.micros * plan.shards
    balance[1]["Update"]["ExpressionAttributeValues"][":reserve"] = to_values({":c": cover})[":c"]
    update = key_update["Update"]
    if ":room" in update["ExpressionAttributeValues"] and admit.max_budget_micros is not None:
        update["ExpressionAttributeValues"][":room"] = to_values({":r": admit.max_budget_micros - cover})[":r"]
    sync = plan.sync
    update["UpdateExpression"] += ", requestCount :sync_requests, inputTokens :sync_input, outputTokens :sync_output"
    update["ExpressionAttributeValues"].update(
        to_values(
            {
                ":sync_requests": sync.requests,
                ":sync_input": sync.input_tokens,
                ":sync_output": sync.output_tokens,
            }
        )
    )
    minute = direct.minute_block_update(admit, plan.requests, plan.tokens)
    checks = [(label, key_update), minute, balance, _shard_refill(plan)]
    request_id = (admit.reservation or {})["requestId"]
    if sync.spent:
        checks.append(
            (
                "ledger",
                ledger.entry_put(
                    admit.account_id,
                    amount_micros=-sync.spent,
                    kind="usage",
                    reference=sync_reference(plan.shard),
                    now=admit.now_iso,
                    unique=f"sync#{request_id}",
                ),
            )
        )
    checks.append(direct.reservation_put({**(admit.reservation or {}), "shardKey": plan.shard}))
    # Per plan (a re-planned refill of the same request is another transaction, not a retry of this one).
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"refill:{request_id}:{plan.new_minute}:{plan.requests}:{sync}"))
    try:
        return transact([item for _, item in checks], ClientRequestToken=token)
    except WriteRefused as refused:
        failed = refused.reasons.index("ConditionalCheckFailed")
        raise direct.AdmissionRefused(direct.Refusal(checks[failed][0], refused.items[failed])) from refused


def settle(plan: direct.SettlePlan, shard: str) -> int:
    """One transaction: the shard gets the request's money back (reserved - cost) and records what it did
    (synced later), the reservation goes, the log record and the day's counter (a shard of it) come. TPM
    tokens are not returned to the shard (a late settle could land in the next minute's slice)."""
    from llm_platform.data.leases import daily_shard

    update = {
        "Update": {
            "TableName": get_settings().usage_counters_table,
            "Key": _shard_item_key(shard),
            "UpdateExpression": "ADD available :back, openCount :minus, spent :cost, requests :requests, "
            "inputTokens :input, outputTokens :output",
            "ExpressionAttributeValues": to_values(
                {
                    ":back": plan.reserve_micros - plan.cost_micros,
                    ":minus": -1,
                    ":cost": plan.cost_micros,
                    ":requests": 1 if plan.counted else 0,
                    ":input": plan.input_tokens,
                    ":output": plan.output_tokens,
                }
            ),
        }
    }
    items = [
        update,
        *direct.log_items(plan, daily_shard(plan.daily, plan.request_id)),
        direct.reservation_delete(plan.request_id, plan.due_before),
    ]
    return transact(items, ClientRequestToken=direct.settle_token(plan))


def read(key_id: str, shards: int) -> dict[int, dict[str, Any]]:
    """The key's shard items that exist, by index (consistent reads)."""
    found = get_many([shard_counter(key_id, index) for index in range(shards)])
    return {
        index: found[shard_counter(key_id, index)] for index in range(shards) if shard_counter(key_id, index) in found
    }


def read_one(shard: str) -> dict[str, Any] | None:
    return get_many([(shard, SHARD_SK)]).get((shard, SHARD_SK))


@dataclass(frozen=True, slots=True)
class GivenBack:
    shard: str
    key_id: str
    account_id: str
    returned_micros: int  # ``available`` back to the balance (and off the key's spend)
    synced: Sync  # to the ledger (one usage entry) and the key's totals


def give_back(item: dict[str, Any], now_iso: str) -> GivenBack | None:
    """Return an idle shard as read: its ``available`` to the balance (and off the key's spendMicros), its
    unsynced spend to the ledger and its counts to the key, in one transaction conditioned on nothing open
    and nothing changed since the read. None: nothing to return, or it changed (tried again next run)."""
    if item.get("openCount", 0) != 0:
        return None
    available = int(item.get("available", 0))
    sync = Sync.of(item)
    if available <= 0 and not sync:
        return None
    settings = get_settings()
    values = {
        ":zero": 0,
        ":available": available,
        ":back": -available,
        ":used": int(item.get("lastUsed", 0)),
        ":refills": int(item.get("refills", 0)),
        ":spent": -sync.spent,
        ":requests": -sync.requests,
        ":input": -sync.input_tokens,
        ":output": -sync.output_tokens,
        ":had_spent": sync.spent,
    }
    items: list[dict[str, Any]] = [
        {
            "Update": {
                "TableName": settings.usage_counters_table,
                "Key": _shard_item_key(item["pk"]),
                "UpdateExpression": "ADD available :back, spent :spent, requests :requests, inputTokens :input, "
                "outputTokens :output",
                # Unchanged since read: nothing admitted (lastUsed), refilled or settled (spent) since.
                "ConditionExpression": "openCount = :zero AND available = :available AND lastUsed = :used "
                "AND refills = :refills AND (attribute_not_exists(spent) OR spent = :had_spent)",
                "ExpressionAttributeValues": to_values(values),
            }
        },
        {
            "Update": {
                "TableName": settings.api_keys_table,
                "Key": {"keyHash": {"S": item["keyHash"]}},
                "UpdateExpression": "ADD spendMicros :back, requestCount :requests, inputTokens :input, "
                "outputTokens :output",
                "ExpressionAttributeValues": to_values(
                    {
                        ":back": -available,
                        ":requests": sync.requests,
                        ":input": sync.input_tokens,
                        ":output": sync.output_tokens,
                    }
                ),
            }
        },
    ]
    if available:
        items.append(
            {
                "Update": {
                    "TableName": settings.accounts_table,
                    "Key": {"accountId": {"S": item["accountId"]}},
                    "UpdateExpression": "ADD creditBalanceMicros :available",
                    "ExpressionAttributeValues": to_values({":available": available}),
                }
            }
        )
    if sync.spent:
        items.append(
            ledger.entry_put(
                item["accountId"],
                amount_micros=-sync.spent,
                kind="usage",
                reference=sync_reference(item["pk"]),
                now=now_iso,
            )
        )
    try:
        transact(items)
    except WriteRefused:
        return None
    return GivenBack(item["pk"], item["keyId"], item["accountId"], available, sync)


def revoke(key_id: str, shards: int) -> int:
    """Mark the key's shards revoked (those that exist): their next admission fails. The number marked."""
    marked = 0
    for index in range(shards):
        try:
            client().update_item(
                TableName=get_settings().usage_counters_table,
                Key=_shard_item_key(shard_key(key_id, index)),
                UpdateExpression="SET #status = :revoked",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_values({":revoked": "revoked"}),
            )
            marked += 1
        except client().exceptions.ConditionalCheckFailedException:
            continue
    return marked


# ---------------------------------------------------------------- promotion and the registry
def register(key_id: str, key_hash: str, account_id: str, shards: int) -> None:
    """Record (or grow) the key's shard count in the registry; written before the key item, so whoever
    reads the registry after a shard exists sees at least its index."""
    registry = _registry_key(key_id)
    try:
        client().update_item(
            TableName=get_settings().usage_counters_table,
            Key=as_key(registry),
            UpdateExpression="SET shards = :s, keyId = :key_id, keyHash = :key_hash, accountId = :account",
            ConditionExpression="attribute_not_exists(shards) OR shards < :s",
            ExpressionAttributeValues=to_values(
                {":s": shards, ":key_id": key_id, ":key_hash": key_hash, ":account": account_id}
            ),
        )
    except client().exceptions.ConditionalCheckFailedException:
        return  # as many or more already


def registered_shards(key_id: str) -> int:
    """The key's shard count in the registry (0: never promoted)."""
    item = get_many([_registry_key(key_id)]).get(_registry_key(key_id))
    return int(item["shards"]) if item else 0


def registered_keys() -> list[dict[str, Any]]:
    """Every key in shard mode: keyId, keyHash, accountId, shards (consistent)."""
    return query_all(
        TableName=get_settings().usage_counters_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=to_values({":pk": REGISTRY_PK}),
        ConsistentRead=True,
    )


def promote_key(key_hash: str, shards: int) -> bool:
    """``SET shards`` on the key item (only if absent or smaller; no version bump: environments learn it when
    they meet a conflict themselves or reload). False: the key already has as many shards or more (or is not
    an active credit key). Its log shards are raised before (``domain.history.shard_history``)."""
    try:
        client().update_item(
            TableName=get_settings().api_keys_table,
            Key={"keyHash": {"S": key_hash}},
            UpdateExpression="SET shards = :s",
            ConditionExpression="attribute_exists(keyHash) AND #kind = :credit "
            "AND (attribute_not_exists(shards) OR shards < :s)",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues=to_values({":s": shards, ":credit": "credit"}),
        )
    except client().exceptions.ConditionalCheckFailedException:
        return False
    return True
