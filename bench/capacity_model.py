"""Capacity model for hot accounts (issue 16): prints figures, asserts nothing. Run with
`make bench-capacity` (or `python bench/capacity_model.py`).

Per proxied request: which DynamoDB items are written, their sizes and write units (WCU), the global
secondary index (GSI) writes they cause, and the resulting ceiling per account, per subscription and per
key, for today's direct design and for the lease design of issue 16.

Today's design is derived from the code, not described by hand: the proxy's own ``Meter`` builds the
admission and settle transactions (``llm_platform.proxy.metering`` -> ``data.metering``) with
``transact`` captured instead of sent; updated items are sized from the records the data layer stores
(``to_record_item`` of an ``ApiKey``, an ``Account``, a ``Subscription``) plus the attributes the
update expression sets; GSIs and their projections come from ``template.yaml``. The lease design is not
on this branch: its transactions are modelled from the same item builders (reservation, log record,
daily counter) plus a lease item, following the agreed sketch (README "Capacity: hot accounts").

DynamoDB's documented rules used here (quoted with their pages in the README section):
  - a partition serves at most 1,000 WCU/s and 3,000 RCU/s, for tables and GSIs alike;
  - a transactional write costs two underlying writes per item: 2 WCU per KB (rounded up), per item;
  - a GSI write is a standard write of the projected item: 1 WCU per KB, on the GSI's partition;
  - a table write is throttled when a GSI it updates has no capacity;
  - adaptive capacity can isolate one hot item on its own partition (still 1,000 WCU/s for that item),
    and can split an item collection by sort key unless its traffic follows a monotonically increasing
    sort key (the request log's ``sortKey`` = createdAt#id, the ledger's ``entryId`` = time#…,
    the reservations' ``deadline``): such a partition key stays on one partition, 1,000 WCU/s.
"""

from __future__ import annotations

import math
import os
import re
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARTITION_WCU = 1000  # per second, per partition (table or GSI)
PARTITION_RCU = 3000
KB = 1024

# Sort keys whose values start with the time they were written: traffic on such an item collection moves
# to the end of the key range, so split-for-heat cannot spread it (checked by tests/unit/test_capacity_model.py).
MONOTONIC_SORT_KEYS = {
    ("RequestLogTable", "byAccount"): "sortKey",
    ("RequestLogTable", "byKey"): "sortKey",
    ("ReservationsTable", "byDeadline"): "deadline",
    ("LedgerTable", None): "entryId",
}


# ------------------------------------------------------------------------------------------ item sizes
def value_size(value: dict[str, Any]) -> int:
    """Bytes of one AttributeValue by DynamoDB's item-size rules (numbers: 1 byte per two significant
    digits plus 1; lists and maps: 3 bytes plus 1 per element)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in raw)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + value_size(element) for name, element in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in raw)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def transactional_wcu(size: int) -> int:
    return 2 * max(1, math.ceil(size / KB))


def standard_wcu(size: int) -> int:
    return max(1, math.ceil(size / KB))


# A counter that ADD keeps growing is sized at 12 significant digits (a year of micro-dollars): an upper
# bound that changes no WCU figure (every item here is far below 1 KB).
_GROWN_NUMBER = {"N": "123456789012"}


def updated_names(update: dict[str, Any]) -> set[str]:
    """The attributes an Update's expression writes."""
    names = update.get("ExpressionAttributeNames", {})
    found = set()
    for clause in re.split(r"\s(?=SET |ADD )", update["UpdateExpression"]):
        _, _, body = clause.strip().partition(" ")
        for part in body.split(","):
            name = part.split("=")[0].split()[0].strip()
            found.add(names.get(name, name))
    return found


def apply_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The stored item after a transaction's Update (the simple ADD/SET expressions the proxy writes)."""
    item = {**base, **update["Key"]}
    names = update.get("ExpressionAttributeNames", {})
    values = update.get("ExpressionAttributeValues", {})
    for clause in re.split(r"\s(?=SET |ADD )", update["UpdateExpression"]):
        verb, _, body = clause.strip().partition(" ")
        for part in body.split(","):
            name, value = (p.strip() for p in part.split("=")) if verb == "SET" else part.split()
            name = names.get(name, name)
            item[name] = _GROWN_NUMBER if verb == "ADD" and "N" in values[value] else values[value]
    return item


# ------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class IndexWrite:
    index: str  # "<table>.<index>"
    partition: str  # the GSI partition key value
    size: int
    monotonic: bool  # the GSI's sort key grows with time: split-for-heat cannot spread this partition
    spread: int = 1  # written on one of this many shards (partition keys <id>#<shard>)

    @property
    def wcu(self) -> int:
        return standard_wcu(self.size)


@dataclass(frozen=True)
class Write:
    step: str  # admit | settle | take | admit (lease) | settle (lease) | return
    action: str  # Put | Update | Delete | ConditionCheck
    table: str
    partition: str  # partition key value
    sort: str | None
    size: int  # bytes: the larger of the item before and after
    per_request: float = 1.0  # take and return happen once per lease of n requests
    indexes: tuple[IndexWrite, ...] = ()
    spread: int = 1  # written on one of this many shards (sharded counters)
    partition_spread: int | None = None  # ...over this many partition keys (None: ``spread``; the rest in the sort key)

    @property
    def wcu(self) -> int:
        # A ConditionCheck is counted like a write of the item: an upper bound (the existing bench does too).
        return transactional_wcu(self.size)


@dataclass
class Scenario:
    name: str
    writes: list[Write] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # id value -> scope (account, subscription, key…)
    records: Any = None
    reservation_shards: int = 16  # data/metering.py RESERVATION_SHARDS: the byDeadline index's partitions
    captured: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # the proxy's transactions, by step


def _table_indexes() -> dict[str, list[dict[str, Any]]]:
    from local_stack.template import load_template, table_definitions

    definitions = table_definitions(load_template(REPO / "template.yaml"))
    return {name: d["create"].get("GlobalSecondaryIndexes", []) for name, d in definitions.items()}


def _key_schema() -> dict[str, list[str]]:
    from local_stack.template import load_template, table_definitions

    definitions = table_definitions(load_template(REPO / "template.yaml"))
    return {name: [k["AttributeName"] for k in d["create"]["KeySchema"]] for name, d in definitions.items()}


def proxy_environment() -> dict[str, str]:
    """The proxy's environment as template.yaml gives it (tables named after their logical ids)."""
    from local_stack.template import function_environment, load_template, table_definitions

    template = load_template(REPO / "template.yaml")
    names = {logical: logical for logical in table_definitions(template)}
    return function_environment(template, "ProxyFunction", names)


def load_template_facts() -> None:
    """Each table's key schema and GSIs (with their projections), from template.yaml."""
    INDEXES.update(_table_indexes())
    KEY_SCHEMA.update(_key_schema())


def _index_writes(
    table: str, action: str, before: dict | None, after: dict | None, changed: set[str]
) -> tuple[IndexWrite, ...]:
    """The GSI writes one base-table write causes: a Put or Delete of an indexed item writes the index once,
    an Update writes it when a projected attribute changed (ALL: any; KEYS_ONLY: a key attribute)."""
    writes = []
    for index in INDEXES.get(table, []):
        keys = [k["AttributeName"] for k in index["KeySchema"]]
        present = after if action in ("Put", "Update") else before
        if action == "ConditionCheck" or present is None or not all(k in present for k in keys):
            continue
        if action == "Update":
            projected = index["Projection"]["ProjectionType"]
            if not changed or (projected == "KEYS_ONLY" and not changed & set(keys)):
                continue
        if index["Projection"]["ProjectionType"] == "ALL":
            size = item_size(present)
        else:
            size = item_size({k: present[k] for k in keys + KEY_SCHEMA[table] if k in present})
        monotonic = MONOTONIC_SORT_KEYS.get((table, index["IndexName"])) is not None
        partition = next(iter(present[keys[0]].values()))
        writes.append(IndexWrite(f"{table}.{index['IndexName']}", partition, size, monotonic))
    return tuple(writes)


INDEXES: dict[str, list[dict[str, Any]]] = {}
KEY_SCHEMA: dict[str, list[str]] = {}


@dataclass
class Records:
    """Representative stored records, built by the data layer's own record mapping."""

    key: dict[str, Any]
    account: dict[str, Any]
    subscription: dict[str, Any]
    ids: dict[str, str]


def representative_records(kind: str, budget_reset: str | None = None) -> Records:
    from llm_platform.core.clock import to_iso
    from llm_platform.core.entities import (
        Account,
        ApiKey,
        BudgetReset,
        KeyKind,
        KeyStatus,
        PaymentMethod,
        Subscription,
        SubscriptionStatus,
    )
    from llm_platform.data.records import to_record_item
    from llm_platform.data.subscriptions import _record as subscription_record
    from llm_platform.domain.credentials import API_KEY_PREFIX, issue_secret, new_id

    now = to_iso(NOW)
    account_id, subscription_id, key_id = new_id("acct"), new_id("sub"), new_id("key")
    secret = issue_secret(API_KEY_PREFIX)
    key = ApiKey(
        key_hash=secret.key_hash,
        key_id=key_id,
        account_id=account_id,
        name="agents-production",
        display_prefix=secret.display_prefix,
        kind=KeyKind.SUBSCRIPTION if kind == "subscription" else KeyKind.CREDIT,
        status=KeyStatus.ACTIVE,
        created_at=now,
        rpm=600_000,
        tpm=600_000_000,
        subscription_id=subscription_id if kind == "subscription" else None,
        max_budget_micros=None if kind == "subscription" else 5_000_000_000,
        request_count=123_456_789,
        input_tokens=123_456_789_012,
        output_tokens=123_456_789_012,
        spend_micros=123_456_789_012,
        updated_at=now,
        budget_reset=BudgetReset(budget_reset) if budget_reset else None,
        version=3,
    )
    account = Account(account_id, "Agents reseller Ltd", now, 123_456_789_012, 2, 40)
    subscription = Subscription(
        subscription_id=subscription_id,
        account_id=account_id,
        plan_slug="pro",
        status=SubscriptionStatus.ACTIVE,
        payment_method=PaymentMethod.STRIPE,
        created_at=now,
        current_period_start=now,
        current_period_end=to_iso(NOW + timedelta(days=30)),
        rpm=600_000,
        tpm=600_000_000,
        budget_per_window_micros=5_000_000_000,
        stripe_subscription_id="sub_1PqRsTuVwXyZ0123456789ab",
    )
    return Records(
        key=to_record_item(key),
        account=to_record_item(account, managementKeyCount=2),
        subscription=subscription_record(subscription),
        ids={account_id: "account", subscription_id: "subscription", key_id: "key", secret.key_hash: "key"},
    )


NOW = datetime(2026, 11, 30, 15, 0, 7, tzinfo=UTC)
MODEL = "deepseek/deepseek-chat-v3-0324"
# A typical agent call: 1,200 prompt tokens, up to 1,000 output tokens reserved, 400 used.
PROMPT_TOKENS, RESERVE_TOKENS, OUTPUT_TOKENS = 1200, 2200, 400
RESERVE_MICROS, COST_MICROS = 1_500, 620


def _key_snapshot(records: Records) -> Any:
    from llm_platform.data.dynamo import from_item
    from llm_platform.proxy.keys import KeySnapshot

    key = from_item(records.key)
    return KeySnapshot(
        key_hash=key["keyHash"],
        secret_hash=key["keyHash"],
        key_id=key["keyId"],
        account_id=key["accountId"],
        credit=key["kind"] == "credit",
        rpm=key["rpm"],
        tpm=key["tpm"],
        max_budget_micros=key.get("maxBudgetMicros"),
        subscription_id=key.get("subscriptionId"),
        budget_micros=5_000_000_000 if key.get("subscriptionId") else None,
        window_anchor=key["createdAt"] if key.get("subscriptionId") else None,
        version=key["version"],
        budget_reset=key.get("budgetReset"),
    )


def captured_transactions(records: Records) -> list[tuple[str, list[dict[str, Any]]]]:
    """The proxy's admission and settle transactions for one request, as its own code builds them."""
    import llm_platform.data.metering as store
    from llm_platform.proxy.keys import KeyCache
    from llm_platform.proxy.metering import Meter, Outcome, Pending

    sent: list[list[dict[str, Any]]] = []
    original = store.transact
    store.transact = lambda items, **_: sent.append(items)
    try:
        meter = Meter(KeyCache())
        snapshot = _key_snapshot(records)
        request_id = "5f0c2a9e-3b7d-4c1e-9a8f-2d6b4e1c7a90"
        admission = meter.admit(
            snapshot,
            RESERVE_MICROS,
            RESERVE_TOKENS,
            request_id,
            NOW,
            Pending(model=MODEL, stream=True, prompt_tokens=PROMPT_TOKENS, prompt_cost_micros=300),
        )
        meter.settle(
            admission,
            input_tokens=PROMPT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
            cost_micros=COST_MICROS,
            counted=True,
            now=NOW + timedelta(seconds=2.4),
            outcome=Outcome(model=MODEL, provider="deepseek", status=200, stream=True),
        )
    finally:
        store.transact = original
    records.ids[request_id] = "request"
    return list(zip(("admit", "settle"), sent, strict=True))


def _stored_before(table: str, key: dict[str, Any], records: Records, puts: dict) -> dict[str, Any] | None:
    from llm_platform.config import get_settings

    settings = get_settings()
    if table == settings.api_keys_table:
        return records.key
    if table == settings.accounts_table:
        return records.account
    if table == settings.subscriptions_table:
        return records.subscription
    found = puts.get((table, tuple(sorted((k, str(v)) for k, v in key.items()))))
    return found if found is not None else dict(key)


def writes_of(step: str, items: list[dict[str, Any]], records: Records, puts: dict, per_request: float = 1.0):
    """Model each transaction item: its table, partition and sort key, size, WCU and GSI writes."""
    writes = []
    for entry in items:
        ((action, body),) = entry.items()
        table = body["TableName"]
        schema = KEY_SCHEMA[table]
        changed: set[str] = set()
        if action == "Put":
            after = body["Item"]
            before = None
            key = {k: after[k] for k in schema}
            puts[(table, tuple(sorted((k, str(v)) for k, v in key.items())))] = after
        else:
            key = body["Key"]
            before = _stored_before(table, key, records, puts)
            after = apply_update(before, body) if action == "Update" else None
            changed = updated_names(body) if action == "Update" else set()
        size = max(item_size(before or {}), item_size(after or {}))
        partition = next(iter(key[schema[0]].values()))
        sort = next(iter(key[schema[1]].values())) if len(schema) > 1 else None
        writes.append(
            Write(
                step,
                action,
                table,
                partition,
                sort,
                size,
                per_request,
                _index_writes(table, action, before, after, changed),
            )
        )
    return writes


def direct_scenario(name: str, kind: str, budget_reset: str | None = None) -> Scenario:
    records = representative_records(kind, budget_reset)
    puts: dict = {}
    scenario = Scenario(name, ids=records.ids, records=records)
    for step, items in captured_transactions(records):
        scenario.captured[step] = items
        scenario.writes += writes_of(step, items, records, puts)
    scenario.ids = records.ids
    return scenario


# ------------------------------------------------------------------------------------------ lease design
def _lease_record(direct: Scenario) -> dict[str, Any]:
    """A lease item as the leases branch stores it (Decisions D6): Reservations table, requestId lease#<id>,
    openShard + deadline for the reconciler's byDeadline index, the slice and what was done with it."""
    from llm_platform.data.dynamo import to_item

    key = {w: s for w, s in direct.ids.items()}
    account = next(i for i, scope in key.items() if scope == "account")
    key_id = next(i for i, scope in key.items() if scope == "key" and i.startswith("key_"))
    grown = 123_456_789_012
    return to_item(
        {
            "requestId": "lease#0c6f3e1a-8d2b-4f7e-9a10-5b3c2d1e0f9a",
            "openShard": "open#5",
            "deadline": "2026-11-30T15:00:12.000Z",
            "leaseEnd": "2026-11-30T15:00:12.000Z",
            "status": "active",
            "version": 3,
            "keyHash": "0" * 64,
            "keyId": key_id,
            "accountId": account,
            "instanceId": "i-0a1b2c3d4e5f",
            "minute": ["key#" + key_id, "minute#29934180"],
            "granted": 21,
            "grantedTokens": 46_200,
            "grantedMicros": 31_500,
            **{name: grown for name in ("admitted", "openCount", "committedMicros", "committedTokens")},
            **{name: grown for name in ("spentMicros", "tokens", "requestCount", "inputTokens", "outputTokens")},
        }
    )


def lease_scenario(direct: Scenario, requests_per_lease: float, registry_on_minute: bool = True) -> Scenario:
    """The lease design as the leases branch built it (Decisions D5-D9), for a credit key: per request an
    admission (Update of this instance's lease item + the reservation Put) and a settle (the lease item, the
    reservation Delete, the log record, one of 8 daily counter shards in the sort key); once per lease a take
    (key item, minute counter, balance, budget period, the lease Put) and a return (the lease Delete, key
    item, balance, minute counter, budget period, one ledger entry). Items shared with today are the proxy's
    own (captured); the lease item's are built like them and sized and indexed by the same rules."""
    from llm_platform.config import get_settings
    from llm_platform.data.dynamo import to_values

    reservations = get_settings().reservations_table
    lease = _lease_record(direct)
    lease_key = {"requestId": lease["requestId"]}
    puts = {(reservations, (("requestId", str(lease["requestId"])),)): lease}
    admit, settle = direct.captured["admit"], direct.captured["settle"]

    def table(entry: dict) -> str:
        return next(iter(entry.values()))["TableName"]

    def lease_update(expression: str, names: list[str]) -> dict[str, Any]:
        values = to_values({f":{name}": 1 for name in names})
        update = {"TableName": reservations, "Key": lease_key, "UpdateExpression": expression}
        return {"Update": {**update, "ExpressionAttributeValues": values}}

    reservation_put = [e for e in admit if table(e) == reservations]
    central = [e for e in admit if table(e) != reservations]
    per_lease = 1 / requests_per_lease
    take = [*central, {"Put": {"TableName": reservations, "Item": lease}}]
    lease_admit = [
        lease_update("ADD openCount :a, admitted :b, committedMicros :c, committedTokens :d", list("abcd")),
        *reservation_put,
    ]
    settle_updates = "ADD openCount :a, spentMicros :b, committedMicros :c, committedTokens :d, tokens :e, "
    lease_settle = [lease_update(settle_updates + "requestCount :f, inputTokens :g, outputTokens :h", list("abcdefgh"))]
    returns = [{"Delete": {"TableName": reservations, "Key": lease_key}}]
    for entry in settle:
        body = next(iter(entry.values()))
        if body["TableName"] in (reservations, get_settings().request_log_table):
            lease_settle.append(entry)
        elif body.get("Key", {}).get("pk", {}).get("S", "").startswith("daily#"):
            sharded = {**body, "Key": {**body["Key"], "sk": {"S": body["Key"]["sk"]["S"] + "#3"}}}
            lease_settle.append({"Update": sharded})
        else:  # key item, minute counter, balance, budget period, ledger entry: once per lease
            returns.append(entry)
    # D5/D9: the take adds the lease's id to a string set on the minute counter, the return deletes it, so the
    # counter carries the ids of the minute's live leases (the simulation sees ~360-470 with 200 instances).
    registry = to_values({":leases": {str(uuid.UUID(int=n)) for n in range(LIVE_LEASES)}})
    for entries in (take, returns) if registry_on_minute else ():
        for index, entry in enumerate(entries):
            body = next(iter(entry.values()))
            if body.get("Key", {}).get("sk", {}).get("S", "").startswith("minute#"):
                expression = body["UpdateExpression"].replace("ADD ", "ADD leases :leases, ", 1)
                with_set = {**body, "UpdateExpression": expression}
                with_set["ExpressionAttributeValues"] = {**body["ExpressionAttributeValues"], **registry}
                entries[index] = {"Update": with_set}
    records = direct.records
    writes = writes_of("take", take, records, puts, per_lease)
    writes += writes_of("admit (lease)", lease_admit, records, puts)
    writes += [  # D8: the daily counter's item is one of 8 shards (the shard is in its sort key)
        replace(w, spread=8) if w.partition.startswith("daily#") else w
        for w in writes_of("settle (lease)", lease_settle, records, puts)
    ]
    writes += writes_of("return", returns, records, puts, per_lease)
    name = direct.name.replace("today (direct)", "lease design (as built)")
    ids = {**direct.ids, lease["requestId"]["S"]: "instance"}  # each instance updates its own lease item
    return Scenario(f"{name}, {requests_per_lease:g} requests per lease", writes, ids, records)


def tuned_lease_scenario(built: Scenario, requests_per_lease: float, shards: int = 16) -> Scenario:
    """What the simulation suggests on top of what is built: the request log's GSIs keyed <id>#<shard> (16),
    the daily counter added by the lease's return (not per request), lease updates kept out of the byDeadline
    index (its projection KEYS_ONLY: only the lease's Put and Delete write it), longer slices; ``built`` without
    the lease ids on the minute counter (a small registry item per lease instead, negligible here)."""
    per_lease = 1 / requests_per_lease
    writes = []
    for w in built.writes:
        if w.partition.startswith("daily#"):
            writes.append(replace(w, step="return", per_request=per_lease))
            continue
        if w.table == "RequestLogTable":
            w = replace(
                w, indexes=tuple(replace(i, partition=f"{i.partition}#<shard>", spread=shards) for i in w.indexes)
            )
        if w.partition.startswith("lease#") and w.action == "Update":
            w = replace(w, indexes=())
        if w.step in ("take", "return"):
            w = replace(w, per_request=per_lease)
        writes.append(w)
    name = built.name.split(", ")[0].replace("(as built)", "(tuned, not built)") + ", " + built.name.split(", ")[1]
    name += f", {requests_per_lease:g} requests per lease, 64 reservation shards"
    return Scenario(name, writes, built.ids, built.records, reservation_shards=64)


# ------------------------------------------------------------------------------------------ key shards
def _shard_record(direct: Scenario) -> dict[str, Any]:
    """A key shard item as the shards branch stores it (shard design K3, data/shards.py): UsageCounters, pk
    shard#<keyId>#<s>, sk shard, no index; the slice of its minute, the money it holds, what its requests did
    since the last sync."""
    from llm_platform.data.dynamo import to_item

    account = next(i for i, scope in direct.ids.items() if scope == "account")
    key_id = next(i for i, scope in direct.ids.items() if scope == "key" and i.startswith("key_"))
    grown = 123_456_789_012
    return to_item(
        {
            "pk": f"shard#{key_id}#17",
            "sk": "shard",
            "keyId": key_id,
            "keyHash": "0" * 64,
            "accountId": account,
            "version": 3,
            "status": "active",
            "minute": 29934180,
            "slice": 79,
            "refilledAt": 1_796_050_807_400,
            "lastUsed": 1_796_050_809_400,
            **{name: grown for name in ("requestsLeft", "tokensLeft", "available", "openCount", "refills")},
            **{name: grown for name in ("spent", "requests", "inputTokens", "outputTokens")},
        }
    )


def shard_scenario(direct: Scenario, requests_per_refill: float, shards: int, log_shards: int = 16) -> Scenario:
    """Key shards as the shards and logshards branches built them (shard design K3-K9), for a credit key without
    budgetReset: per request an admission on one of S shard items (its Update + the reservation Put) and a settle
    (the shard, the reservation Delete, the log record with its GSIs on one of L log shards, the day's counter on
    one of L partition keys); once per slice of n requests a refill carrying one request (key item, minute counter,
    balance, the shard, the sync's ledger entry; its reservation is the one counted in the admission). Items
    shared with today are the proxy's own (captured); the shard item is built like them."""
    from llm_platform.config import get_settings
    from llm_platform.data.dynamo import to_values

    settings = get_settings()
    counters, reservations = settings.usage_counters_table, settings.reservations_table
    shard = _shard_record(direct)
    shard_key = {"pk": shard["pk"], "sk": shard["sk"]}
    puts = {(counters, tuple(sorted((k, str(v)) for k, v in shard_key.items()))): shard}
    admit, settle = direct.captured["admit"], direct.captured["settle"]

    def table(entry: dict) -> str:
        return next(iter(entry.values()))["TableName"]

    def shard_update(expression: str, names: list[str]) -> dict[str, Any]:
        values = to_values({f":{name}": 1 for name in names})
        update = {"TableName": counters, "Key": shard_key, "UpdateExpression": expression}
        return {"Update": {**update, "ExpressionAttributeValues": values}}

    reservation_put = [e for e in admit if table(e) == reservations]
    central = [e for e in admit if table(e) != reservations]  # key item, minute counter, balance
    shard_admit = [
        shard_update("ADD requestsLeft :a, tokensLeft :b, available :c, openCount :d SET lastUsed = :e", list("abcde")),
        *reservation_put,
    ]
    refill_shard = shard_update(
        "SET refilledAt = :a, lastUsed = :b, slice = :c ADD requestsLeft :d, tokensLeft :e, available :f, "
        "openCount :g, spent :h, requests :i, inputTokens :j, outputTokens :k, refills :l",
        list("abcdefghijkl"),
    )
    refill = [*central, refill_shard]
    settle_update = "ADD available :a, openCount :b, spent :c, requests :d, inputTokens :e, outputTokens :f"
    shard_settle = [shard_update(settle_update, list("abcdef"))]
    for entry in settle:
        body = next(iter(entry.values()))
        daily = body.get("Key", {}).get("pk", {}).get("S", "").startswith("daily#")
        if body["TableName"] in (reservations, settings.request_log_table) or daily:
            shard_settle.append(entry)
        elif body["TableName"] == settings.ledger_table:  # the sync's usage entry: once per refill
            refill.append(entry)
    records = direct.records
    per_refill = 1 / requests_per_refill

    def spread(w: Write) -> Write:
        if w.partition.startswith("shard#"):  # one of S shard items, each its own partition key
            return replace(w, partition=re.sub(r"#\d+$", "#<shard>", w.partition), spread=shards)
        if w.partition.startswith("daily#"):  # K9: pk daily#<account>#<n> (and the sort key's #<hash % 8>)
            sharded = {"partition": f"{w.partition}#<shard>", "sort": f"{w.sort}#3"}
            return replace(w, **sharded, spread=8 * log_shards, partition_spread=log_shards)
        if w.table == "RequestLogTable":  # K9: the GSI partition values <id>#<n>
            indexes = tuple(replace(i, partition=f"{i.partition}#<shard>", spread=log_shards) for i in w.indexes)
            return replace(w, indexes=indexes)
        return w

    writes = writes_of("admit (shard)", shard_admit, records, puts)
    writes += writes_of("refill", refill, records, puts, per_refill)
    writes += writes_of("settle (shard)", shard_settle, records, puts)
    name = direct.name.replace("today (direct)", "key shards (as built)")
    name += f", S = {shards}, {requests_per_refill:g} requests per refill, log shards x{log_shards}"
    return Scenario(name, [spread(w) for w in writes], direct.ids, records, reservation_shards=64)


# ------------------------------------------------------------------------------------------ ceilings
@dataclass(frozen=True)
class Target:
    label: str
    scope: str
    wcu_per_request: float
    kind: str  # "item": adaptive capacity can at best isolate it | "partition": stays whole (see note)
    note: str = ""


_SCOPE_ORDER = ("request", "instance", "key", "subscription", "account")


def scope_of(value: str, ids: dict[str, str]) -> str:
    """Whose item this is: the most specific id its key names (a lease item names its key and instance)."""
    if value.startswith("open#"):
        return "platform"
    named = {scope for identifier, scope in ids.items() if identifier in value}
    return next((scope for scope in _SCOPE_ORDER if scope in named), "unique")


def targets(scenario: Scenario) -> list[Target]:
    """Every item, and every partition that cannot be split, written by the requests of one key, with its
    WCU per request (a write spread over n shards puts 1/n of its units on each)."""
    items: dict[tuple, float] = defaultdict(float)
    partitions: dict[tuple, float] = defaultdict(float)
    notes: dict[tuple, str] = {}
    for w in scenario.writes:
        scope = scope_of(w.partition, scenario.ids)
        load = w.wcu * w.per_request / w.spread
        # Shards in the sort key stay in one partition key (one item collection); in the partition key they do not.
        partition_load = w.wcu * w.per_request / (w.partition_spread or w.spread) if "<shard>" in w.partition else (
            w.wcu * w.per_request)  # fmt: skip
        if scope not in ("unique", "request"):
            items[(w.table, w.partition, w.sort, scope)] += load
            if (w.table, None) in MONOTONIC_SORT_KEYS:
                partitions[(w.table, w.partition, scope)] += partition_load
                notes[(w.table, w.partition, scope)] = "monotonic: no split"
            elif w.partition.startswith("daily#"):
                partitions[(w.table, w.partition, scope)] += partition_load
                notes[(w.table, w.partition, scope)] = "one collection, if not split"
        for index in w.indexes:
            iscope = scope_of(index.partition, scenario.ids)
            iload = index.wcu * w.per_request / index.spread
            if index.monotonic:
                partitions[(index.index, index.partition, iscope)] += iload
                notes[(index.index, index.partition, iscope)] = "monotonic: no split"
            else:
                items[(index.index, index.partition, w.sort or w.partition, iscope)] += iload
    found = [Target(_label(t, p, s), scope, wcu, "item") for (t, p, s, scope), wcu in items.items()]
    found += [
        Target(_label(t, p, None), scope, wcu, "partition", notes[(t, p, scope)])
        for (t, p, scope), wcu in partitions.items()
    ]
    return sorted(found, key=lambda t: -t.wcu_per_request)


def _label(table: str, partition: str, sort: str | None) -> str:
    short = re.sub(r"[0-9a-f]{64}", "<keyHash>", partition)
    short = re.sub(r"[0-9a-f]{32}", "…", short)
    if sort is not None:
        sort = re.sub(r"[0-9a-f]{32}", "…", sort)
        return f"{table} {short} / {sort}"
    return f"{table} {short} (all sort keys)"


def ceiling(target: Target) -> float:
    return PARTITION_WCU / target.wcu_per_request if target.wcu_per_request else math.inf


# ------------------------------------------------------------------------------------------ printing
def print_writes(scenario: Scenario) -> None:
    print(f"\n{scenario.name}")
    print(f"  {'step':<15}{'action':<15}{'table':<24}{'item (pk / sk)':<52}{'bytes':>6}{'WCU':>5}{'x/request':>10}")
    for w in scenario.writes:
        label = _label("", w.partition, w.sort).strip()
        print(
            f"  {w.step:<15}{w.action:<15}{w.table.removesuffix('Table'):<24}{label[:51]:<52}{w.size:>6}"
            f"{w.wcu:>5}{w.per_request:>10.3g}"
        )
        for index in w.indexes:
            note = "monotonic sort key" if index.monotonic else ""
            print(
                f"  {'':<15}{'  GSI write':<15}{index.index.replace('Table.', '.'):<24}"
                f"{('pk ' + _label('', index.partition, None).replace(' (all sort keys)', '')).strip()[:51]:<52}"
                f"{index.size:>6}{index.wcu:>5}{w.per_request:>10.3g}  {note}"
            )
    table_wcu = sum(w.wcu * w.per_request for w in scenario.writes)
    index_wcu = sum(i.wcu * w.per_request for w in scenario.writes for i in w.indexes)
    per_tx = defaultdict(int)
    for w in scenario.writes:
        per_tx[w.step] += 1
    print(
        f"  per request: {sum(w.per_request for w in scenario.writes):.2f} transaction items in "
        f"{', '.join(f'{step} ({n} items)' for step, n in per_tx.items())}; "
        f"{table_wcu:.1f} transactional WCU + {index_wcu:.1f} GSI WCU = {table_wcu + index_wcu:.1f} WCU"
    )


def print_ceilings(scenario: Scenario, rows: int = 9) -> dict[str, float]:
    found = targets(scenario)
    print(f"  ceilings on one partition ({PARTITION_WCU:,} WCU/s), the hottest first:")
    print(f"    {'item or partition':<78}{'scope':<14}{'WCU/req':>8}{'req/s':>9}")
    for target in found[:rows]:
        kind = f" [{target.note}]" if target.note else ""
        print(f"    {(target.label + kind)[:77]:<78}{target.scope:<14}{target.wcu_per_request:>8.3g}"
              f"{ceiling(target):>9,.0f}")  # fmt: skip
    by_scope: dict[str, float] = {}
    for scope in ("key", "subscription", "account", "instance"):
        limits = [ceiling(t) for t in found if t.scope == scope]
        if limits:
            by_scope[scope] = min(limits)
    platform = sum(t.wcu_per_request for t in found if t.scope == "platform")
    if platform:  # the byDeadline index's shards are shared by every request of every account, evenly
        by_scope["platform"] = scenario.reservation_shards * PARTITION_WCU / platform
    print("  ceiling (requests/s, partition throughput alone): " + ", ".join(
        f"per {scope} {limit:,.0f}" for scope, limit in by_scope.items()
    ) + f" (platform: every account together, over {scenario.reservation_shards} reservation shards)")  # fmt: skip
    return by_scope


def _quiet_ceilings(scenario: Scenario) -> dict[str, float]:
    """``print_ceilings``' per-scope figures without the table."""
    found = targets(scenario)
    by_scope = {s: min(ceiling(t) for t in found if t.scope == s) for s in ("key", "account") if any(
        t.scope == s for t in found)}  # fmt: skip
    platform = sum(t.wcu_per_request for t in found if t.scope == "platform")
    if platform:
        by_scope["platform"] = scenario.reservation_shards * PARTITION_WCU / platform
    return by_scope


def conflict_ceiling(scenario: Scenario, hold_ms: float) -> tuple[str, float]:
    """Transactions that overlap on one item fail with TransactionConflict: an item written by k
    transactions per request is busy k x hold per request; past 1 / (k x hold) requests/s it is busy all
    the time and most transactions conflict. The hold time (prepare to commit) is not documented: assumed."""
    counts: dict[tuple, float] = defaultdict(float)
    for w in scenario.writes:
        scope = scope_of(w.partition, scenario.ids)
        if scope in ("account", "subscription", "key"):
            counts[(w.table, w.partition, w.sort, scope)] += w.per_request / w.spread  # one of ``spread`` shards
    (table, partition, sort, _), per_request = max(counts.items(), key=lambda kv: kv[1])
    return _label(table, partition, sort), 1000 / (per_request * hold_ms)


def main() -> None:
    for name, value in proxy_environment().items():
        os.environ.setdefault(name, value)
    load_template_facts()
    print("Capacity model (issue 16): DynamoDB writes per proxied request and the ceilings they set")
    print(f"partition limit {PARTITION_WCU:,} WCU/s and {PARTITION_RCU:,} RCU/s; transactional writes 2 WCU per KB "
          "per item; GSI writes 1 WCU per KB")  # fmt: skip
    print("(the warm request path reads nothing from the hot items: the key snapshot is cached, so RCU never binds)")
    scenarios = [
        direct_scenario("today (direct), credit key with maxBudget", "credit"),
        direct_scenario("today (direct), credit key with maxBudget and budgetReset", "credit", "monthly"),
        direct_scenario("today (direct), subscription key", "subscription"),
    ]
    summary = []
    for scenario in scenarios:
        print_writes(scenario)
        by_scope = print_ceilings(scenario)
        item, conflicts = conflict_ceiling(scenario, HOLD_MS)
        print(
            f"  transaction conflicts: {item} is written by every request's admit and settle; at an assumed "
            f"{HOLD_MS:g} ms hold per transaction it is busy all the time from {conflicts:,.0f} requests/s"
        )
        summary.append((scenario.name, by_scope, conflicts))
    credit = scenarios[0]
    # The lease rows: 2,000 req/s of chat (mean 4.9 s) on a multi-concurrency host, where the built leases engage;
    # on Lambda they do not (the deployment table below), and the key stays on the direct path (the rows above).
    host = deployment_row(2000, WORKLOADS["chat"], HOST_IN_FLIGHT)
    built = lease_scenario(credit, host.requests_per_lease)
    tuned_n = math.ceil(host.rate_per_instance * TUNED_HORIZON) + 1
    tuned = tuned_lease_scenario(lease_scenario(credit, tuned_n, registry_on_minute=False), tuned_n)
    for lease in (built, tuned):
        print_writes(lease)
        summary.append((lease.name, print_ceilings(lease), None))
    # Key shards (built for Lambda): S = 256, where the simulation's key settles at these rates (shard design K2:
    # every conflict on a shard doubles S); a refill covers ~10 s of its shard's rate (ShardPolicy.horizon_seconds).
    shard_rows = []
    for rate in (2000, 10000):
        n = math.ceil(rate / SETTLED_SHARDS * SHARD_HORIZON)
        sharded = shard_scenario(credit, n, SETTLED_SHARDS)
        sharded.name += f" ({rate:,} req/s)"
        if rate == 2000:
            print_writes(sharded)
        by_scope = print_ceilings(sharded) if rate == 2000 else {}
        if rate != 2000:
            by_scope = _quiet_ceilings(sharded)
        item, conflicts = conflict_ceiling(sharded, HOLD_MS)
        summary.append((sharded.name, by_scope, None))
        shard_rows.append((item, conflicts))
    item, conflicts = shard_rows[0]
    print(
        f"  transaction conflicts: the most written item of the key, {item}, is busy all the time from "
        f"{conflicts:,.0f} requests/s (an assumed {HOLD_MS:g} ms hold; a shard item is written by 2 / S of the "
        "requests' transactions plus its refills)"
    )
    print("\nSummary: requests/s one key (of one account) can sustain before a partition throttles")
    for name, by_scope, conflicts in summary:
        limit = min(v for k, v in by_scope.items() if k in ("key", "subscription", "account"))
        others = ", ".join(f"per {k} {v:,.0f}" for k, v in by_scope.items())
        note = f"; TransactionConflict from ~{conflicts:,.0f}" if conflicts else ""
        print(f"  {name}: {limit:,.0f} req/s ({others}){note}")
    print(
        "  (key-shard rows: Lambda or host alike (the shard items are shared by every environment), S = 256, a "
        "refill per 10 s of a shard's rate; subscription keys and keys with budgetReset stay on the direct path)"
    )
    print(
        f"  (lease rows: 2,000 req/s of chat on a multi-concurrency host, {host.instances} processes of "
        f"{HOST_IN_FLIGHT} in flight, {host.rate_per_instance:.1f} req/s each; on Lambda the built leases do not "
        "engage for chat (below); subscription keys stay on the direct path (Decisions D1))"
    )
    print_deployments()


HOLD_MS = 5.0  # assumed server-side hold of an item by one transaction (prepare to commit)
LEASE_MIN_RATE = 2.0  # Decisions D2: LEASE_MIN_RATE_PER_SECOND
LEASE_LIFETIME = 5.0  # Decisions D4: a lease admits nothing 5 s after its take
BUILT_HORIZON = 2.0  # Decisions D3: a lease covers ~2 s of the instance's rate (n = ceil(rate x 2) + 1)
TUNED_HORIZON = 10.0  # the simulation's tuned variant
SETTLED_SHARDS = 256  # key shards: the S a hot key settles at (the simulation: from 500 req/s, within a second)
SHARD_HORIZON = 10.0  # ShardPolicy.horizon_seconds: a refill covers ~10 s of its shard's observed rate
LIVE_LEASES = 400  # leases not yet returned, whose ids the built design keeps on the minute counter


# ------------------------------------------------------------------------------------------ deployments
@dataclass(frozen=True)
class Workload:
    name: str
    median_seconds: float  # request duration (admission to the end of the response): lognormal
    sigma: float

    @property
    def mean_seconds(self) -> float:
        return self.median_seconds * math.exp(self.sigma**2 / 2)


WORKLOADS = {
    "embeddings": Workload("embeddings", 0.2, 0.5),  # ~0.09-0.45 s (5-95%)
    "chat": Workload("chat", 4.5, 0.4),  # ~2.3-8.7 s (5-95%): LLM generations of seconds
}
LAMBDA_IN_FLIGHT = 1  # Lambda (Web Adapter): one execution environment serves one request at a time
HOST_IN_FLIGHT = 64  # a multi-concurrency host: uvicorn on a container, or Lambda Managed Instances


def instances_for(rate: float, mean_seconds: float, in_flight_per_instance: int) -> int:
    """Little's law: requests in flight = rate x duration; each instance holds ``in_flight_per_instance``."""
    return max(1, math.ceil(rate * mean_seconds / in_flight_per_instance))


def ewma_at_arrival(interval_seconds: float, tau: float = 2.0) -> float:
    """The built policy's rate (proxy/leases.py KeyRate: +1/tau per admission, decaying with time constant tau)
    as seen at an admission, when the instance's admissions of the key come every ``interval_seconds``."""
    return (1 / tau) / (1 - math.exp(-interval_seconds / tau))


@dataclass(frozen=True)
class DeploymentRow:
    rate: float
    workload: Workload
    in_flight: int
    instances: int
    rate_per_instance: float
    ewma: float  # what the built policy sees at an admission, in steady state
    engaged: bool  # D2: > 2/s (sustained 5 s)
    requests_per_lease: int  # D3/D4: n = ceil(2 r) + 1, used up or 5 s, whichever first

    @property
    def central_writes_per_request(self) -> float:
        """Writes per request of the key item (and of the balance and the minute counter)."""
        return 2 / self.requests_per_lease if self.engaged else 2.0


def deployment_row(rate: float, workload: Workload, in_flight: int) -> DeploymentRow:
    count = instances_for(rate, workload.mean_seconds, in_flight)
    per_instance = rate / count
    # On Lambda each environment serves its requests back to back at best: one every mean duration (its EWMA
    # seen at admission is then highest); a multi-concurrency process sees a Poisson stream at its share.
    ewma = ewma_at_arrival(workload.mean_seconds) if in_flight == 1 else per_instance
    engaged = ewma > LEASE_MIN_RATE
    per_lease = min(math.ceil(per_instance * BUILT_HORIZON) + 1, max(1, math.floor(per_instance * LEASE_LIFETIME)))
    return DeploymentRow(rate, workload, in_flight, count, per_instance, ewma, engaged, max(2, per_lease))


def print_deployments() -> None:
    print("\nDeployments (Little's law: instances = rate x mean duration / requests in flight per instance), and")
    print(
        f"whether the built leases engage (D2: the instance's EWMA rate of the key > {LEASE_MIN_RATE:g}/s for 5 s; on"
    )
    print("Lambda at best one admission per mean duration, back to back). Writes/req: of the key item, the balance and")
    print("the minute counter each (2 on the direct path, 2 / n on leases of n requests)")
    print(f"  {'deployment':<34}{'workload':<18}{'req/s':>7}{'instances':>10}{'req/s each':>11}{'EWMA':>7}"
          f"{'leases':>8}{'n':>5}{'writes/req':>11}{'key WCU/s':>11}")  # fmt: skip
    for label, in_flight in (
        ("Lambda, 1 in flight", LAMBDA_IN_FLIGHT),
        (f"host, {HOST_IN_FLIGHT} in flight", HOST_IN_FLIGHT),
    ):
        for workload in WORKLOADS.values():
            for rate in (500, 2000, 10000):
                row = deployment_row(rate, workload, in_flight)
                n = f"{row.requests_per_lease}" if row.engaged else "-"
                print(
                    f"  {label:<34}{f'{workload.name} {workload.mean_seconds:.2g} s':<18}{rate:>7,}{row.instances:>10,}"
                    f"{row.rate_per_instance:>11.2f}{row.ewma:>7.2f}{'yes' if row.engaged else 'no':>8}{n:>5}"
                    f"{row.central_writes_per_request:>11.3f}{rate * row.central_writes_per_request * 2:>11,.0f}"
                )
    print("  (key WCU/s: what the key item would need, 2 WCU per transactional write; a partition serves 1,000.")
    print("  n is also capped at RPM/8, unbounded here; the built design's other ceilings are in the summary above)")


if __name__ == "__main__":
    main()
