"""One account and one key hammered by many proxy instances at once, on DynamoDB Local (issue 16).

Each instance is its own ``Meter`` and ``KeyCache`` (as separate Lambda containers are), with several
threads, all admitting and settling requests of one credit key. The figures (DynamoDB calls,
``TransactionConflict`` retries, items written, the hottest item's writes per request) are printed
(``-s``) for the README and ``notes/lease-design.md``; the assertions are the guarantees."""

from __future__ import annotations

import collections

import pytest

from llm_platform.data.dynamo import client, from_item, query_all
from llm_platform.domain import accounts, api_keys
from llm_platform.domain.accounts import Caller
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.leases import LeasePolicy
from llm_platform.proxy.metering import Meter
from tests.support.hot_load import DynamoCounter, LoadResult, run_load

INSTANCES, THREADS, REQUESTS = 8, 4, 20  # 640 requests
RESERVE, COST = 2_000, 700


def _hot_key(balance: int, rpm: int = 100_000, max_budget: int | None = None) -> tuple[str, str, str]:
    created = accounts.create_account("hot-account")
    caller = Caller(created.account_id, created.management_key_id)
    if balance:
        accounts.grant_credit(created.account_id, balance, "hot load")
    key, plaintext = api_keys.create_credit_key(caller, "hot", max_budget, rpm, 100_000_000)
    _ACCOUNTS[key.key_id] = created.account_id
    return plaintext, key.key_id, created.account_id


def _stored(local_stack, account_id: str, key_id: str) -> dict:
    tables = local_stack.table_names
    balance = accounts.get_account(account_id).credit_balance_micros
    ledger = query_all(
        TableName=tables["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account_id}},
        ConsistentRead=True,
    )
    minutes = query_all(
        TableName=tables["UsageCountersTable"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
        ExpressionAttributeValues={":pk": {"S": f"key#{key_id}"}, ":m": {"S": "minute#"}},
        ConsistentRead=True,
    )
    return {
        "balance": balance,
        "ledger": sum(int(entry["amountMicros"]) for entry in ledger),
        "minutes": {int(item["sk"].split("#")[1]): int(item.get("requests", 0)) for item in minutes},
    }


def scan_all(**kwargs) -> list[dict]:
    items = []
    for page in client().get_paginator("scan").paginate(ConsistentRead=True, **kwargs):
        items.extend(from_item(item) for item in page["Items"])
    return items


_ACCOUNTS: dict[str, str] = {}


def _account_of(key_id: str) -> str:
    return _ACCOUNTS[key_id]


def _api_key_item(counter: DynamoCounter) -> str:
    return next(name for name in counter.per_item if name.startswith("ApiKeysTable"))


def _report(label: str, result: LoadResult, counter: DynamoCounter) -> dict:
    admitted = max(1, result.admitted)
    hottest, writes = counter.hottest()
    figures = {
        "admitted": result.admitted,
        "refused": dict(result.refusals),
        "seconds": round(result.seconds, 2),
        "requests_per_second": round(result.admitted / result.seconds, 1),
        "calls": dict(counter.calls),
        "conflict_retries": counter.conflicts,
        "conflicts_per_request": round(counter.conflicts / admitted, 3),
        "items_written_per_request": round(counter.items_written / admitted, 2),
        "hottest_item": hottest,
        "hottest_item_writes_per_request": round(writes / admitted, 3),
    }
    print(f"\n{label}: {figures}")
    return figures


def test_direct_path_under_a_hot_key_is_exact_and_measured(local_stack) -> None:
    """Given one credit key of one account and 8 instances x 4 threads, each with leases off (the direct
    path: one central transaction to admit and one to settle, every request), when 640 requests run at
    once, then every admission is exact (the ledger explains the balance, the minute counters count every
    admitted request), and the conflicts and writes per request are what the figures say."""
    key, key_id, account_id = _hot_key(10_000_000)
    with DynamoCounter(client()) as counter:
        result = run_load(
            key,
            instances=INSTANCES,
            threads_per_instance=THREADS,
            requests_per_thread=REQUESTS,
            reserve_micros=RESERVE,
            cost_micros=COST,
        )
    figures = _report("direct path", result, counter)
    stored = _stored(local_stack, account_id, key_id)
    assert result.admitted == INSTANCES * THREADS * REQUESTS
    assert stored["balance"] == stored["ledger"] == 10_000_000 - COST * result.admitted
    assert sum(stored["minutes"].values()) == result.admitted
    # Every request wrote the key item, its minute counter and the account's balance twice (admit, settle).
    assert figures["hottest_item_writes_per_request"] == pytest.approx(2.0)
    per_minute = collections.Counter(served.minute for served in result.served)
    assert per_minute == collections.Counter(stored["minutes"])


def _leased(keys: KeyCache) -> Meter:
    """An instance that leases every credit key with room for slices (no warm-up: the load is the test)."""
    return Meter(keys, LeasePolicy(min_rate=0, warmup_seconds=0))


def _open_leases(local_stack, account_id: str) -> list[dict]:
    return [
        item
        for item in scan_all(TableName=local_stack.table_names["ReservationsTable"])
        if item.get("accountId") == account_id
    ]


def _key_item(key_id: str) -> dict:
    from llm_platform.data import api_keys as api_keys_table

    return next(k for k in api_keys_table.list_for_account(_account_of(key_id)) if k.key_id == key_id)


def test_leases_under_the_same_load_are_exact_and_write_the_central_items_far_less(local_stack) -> None:
    """Given the same key and load with every instance leasing, when 640 requests run at once and the
    instances then return their leases, then the money is exactly the direct path's (balance and ledger
    = grant - costs, the key's spend and counts), the minute counters count exactly the admitted requests,
    nothing stays open, and the hottest central item is written a fraction of the direct path's 2 per request."""
    key, key_id, account_id = _hot_key(10_000_000)
    with DynamoCounter(client()) as counter:
        result = run_load(
            key,
            instances=INSTANCES,
            threads_per_instance=THREADS,
            requests_per_thread=REQUESTS,
            reserve_micros=RESERVE,
            cost_micros=COST,
            meter_factory=_leased,
        )
        returned = sum(meter.flush() for meter in result.meters)
    _report("leases", result, counter)
    stored = _stored(local_stack, account_id, key_id)
    assert result.admitted == INSTANCES * THREADS * REQUESTS
    assert _open_leases(local_stack, account_id) == []
    assert stored["balance"] == stored["ledger"] == 10_000_000 - COST * result.admitted
    assert sum(stored["minutes"].values()) == result.admitted
    assert collections.Counter(served.minute for served in result.served) == collections.Counter(stored["minutes"])
    key_item = _key_item(key_id)
    assert (key_item.spend_micros, key_item.request_count) == (COST * result.admitted, result.admitted)
    takes = counter.per_item[hottest_key := _api_key_item(counter)]
    print(f"leases: {takes // 2} taken ({returned} returned by flush); hottest central item {hottest_key}")
    hottest, writes = counter.hottest(excluding=("Reservations", "RequestLog", "daily#"))
    assert writes / result.admitted < 0.5, hottest
