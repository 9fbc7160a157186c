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
from tests.support.hot_load import DynamoCounter, LoadResult, echo_pending, run_load, settle_echo

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
    """Given one credit key of one account and 8 instances x 4 threads, each with leases turned off (the direct
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
            meter_factory=lambda keys: Meter(keys, LeasePolicy(enabled=False)),
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
        returned = sum(len(meter.flush()) for meter in result.meters)
    _report("leases", result, counter)
    stored = _stored(local_stack, account_id, key_id)
    assert result.admitted == INSTANCES * THREADS * REQUESTS
    assert _open_leases(local_stack, account_id) == []
    assert stored["balance"] == stored["ledger"] == 10_000_000 - COST * result.admitted
    assert sum(stored["minutes"].values()) == result.admitted
    assert collections.Counter(served.minute for served in result.served) == collections.Counter(stored["minutes"])
    key_item = _key_item(key_id)
    assert (key_item.spend_micros, key_item.request_count) == (COST * result.admitted, result.admitted)
    # The day's counters (spread over shards by the leased settles) read back summed, equal to the log's sums
    from llm_platform.domain import history

    daily = history.daily_usage(Caller(account_id, "unused"), first_day=None, last_day=None, key_id=None, model=None)
    log = query_all(
        TableName=local_stack.table_names["RequestLogTable"],
        IndexName="byKey",
        KeyConditionExpression="keyId = :k",
        ExpressionAttributeValues={":k": {"S": key_id}},
    )
    assert len(log) == result.admitted
    assert [(row["keyId"], row["requests"], row["spendMicros"], row["promptTokens"]) for row in daily] == [
        (key_id, len(log), sum(r["costMicros"] for r in log), sum(r["promptTokens"] for r in log))
    ]
    takes = counter.per_item[hottest_key := _api_key_item(counter)]
    print(f"leases: {takes // 2} taken ({returned} returned by flush); hottest central item {hottest_key}")
    hottest, writes = counter.hottest(excluding=("Reservations", "RequestLog", "daily#"))
    assert writes / result.admitted < 0.5, hottest


def _money_is_conserved(local_stack, account_id: str, key_id: str, grant: int, charged: int) -> dict:
    """Nothing open (no lease, no reservation), and the grant is exactly the balance plus what was charged,
    which the ledger and the key's spend say too."""
    stored = _stored(local_stack, account_id, key_id)
    assert _open_leases(local_stack, account_id) == []
    assert stored["balance"] == stored["ledger"] == grant - charged
    assert _key_item(key_id).spend_micros == charged
    return stored


def test_leased_rpm_is_never_exceeded_in_any_minute(local_stack) -> None:
    """Given a key of RPM 200 and 640 leased requests at once (slices of at most 25), then no minute
    counts more than 200 admitted requests, the minute counters are exactly the admitted requests once
    the leases are back, and the rest got 429."""
    key, key_id, account_id = _hot_key(10_000_000, rpm=200)
    result = run_load(
        key,
        instances=INSTANCES,
        threads_per_instance=THREADS,
        requests_per_thread=REQUESTS,
        reserve_micros=RESERVE,
        cost_micros=COST,
        meter_factory=_leased,
    )
    for meter in result.meters:
        meter.flush()
    per_minute = collections.Counter(served.minute for served in result.served)
    print(f"\nRPM 200: admitted per minute {dict(per_minute)}, refused {dict(result.refusals)}")
    assert max(per_minute.values()) <= 200
    assert set(result.refusals) == {(429, "rate_limit_exceeded")}
    stored = _money_is_conserved(local_stack, account_id, key_id, 10_000_000, COST * result.admitted)
    assert collections.Counter(stored["minutes"]) == per_minute


@pytest.mark.parametrize("limit", ["balance", "max_budget"])
def test_leased_spend_never_passes_the_balance_or_max_budget(local_stack, limit) -> None:
    """Given a balance (or a key's maxBudget) of 150,000 micro-dollars and requests reserving 2,000 and
    costing 700, when 640 leased requests run at once, then the spend never passes it (never negative,
    never over maxBudget: a take deducts its whole slice first), the refusals are 402, and once the leases
    are back the rest can be spent one request at a time to within one reservation of the limit."""
    grant = 150_000 if limit == "balance" else 10_000_000
    key, key_id, account_id = _hot_key(grant, max_budget=None if limit == "balance" else 150_000)
    result = run_load(
        key,
        instances=INSTANCES,
        threads_per_instance=2,
        requests_per_thread=REQUESTS,
        reserve_micros=RESERVE,
        cost_micros=COST,
        meter_factory=_leased,
    )
    for meter in result.meters:
        meter.flush()
    print(f"\n{limit}: admitted {result.admitted}, refused {dict(result.refusals)}")
    assert set(result.refusals) == {(402, "insufficient_quota")}
    charged = COST * result.admitted
    assert charged <= 150_000
    _money_is_conserved(local_stack, account_id, key_id, grant, charged)
    # Then nothing was lost to slices: one request at a time spends the rest
    rest = run_load(key, instances=1, threads_per_instance=1, requests_per_thread=150, reserve_micros=RESERVE,
                    cost_micros=COST)  # fmt: skip
    charged += COST * rest.admitted
    assert charged + (RESERVE - COST) > 150_000 - RESERVE and charged <= 150_000
    _money_is_conserved(local_stack, account_id, key_id, grant, charged)


def _only_accounts(monkeypatch, account_ids: set[str]) -> None:
    """The reconciler sees only this test's records (DynamoDB Local is shared by the session)."""
    from llm_platform.data import metering as metering_store

    real = metering_store.due_reservations
    monkeypatch.setattr(
        metering_store,
        "due_reservations",
        lambda shard, before, limit: [r for r in real(shard, before, limit) if r.get("accountId") in account_ids],
    )


def test_a_dead_instances_leases_are_reclaimed_by_the_reconciler_once(local_stack, monkeypatch) -> None:
    """Given leased instances whose every third request is left in flight when they "die" (nothing is
    returned, nothing settled), when the reconciler runs after those requests' deadline, then it settles
    each open request into its lease (prompt charged) and returns every lease: nothing is lost or counted
    twice, and a second run changes nothing."""
    from datetime import timedelta

    from llm_platform.core.clock import utc_now
    from llm_platform.domain import reservations

    key, key_id, account_id = _hot_key(10_000_000)
    _only_accounts(monkeypatch, {account_id})
    result = run_load(
        key,
        instances=4,
        threads_per_instance=2,
        requests_per_thread=12,
        reserve_micros=RESERVE,
        cost_micros=COST,
        meter_factory=_leased,
        settle=lambda number: number % 3 != 2,
    )
    assert result.abandoned and _open_leases(local_stack, account_id)  # the instances died holding them
    report = reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    print(f"\ndead instances: {len(result.abandoned)} requests in flight; {report}")
    assert (report.settled, report.failed, report.leases_waiting) == (len(result.abandoned), [], 0)
    assert report.leases_returned >= 1
    # The reconciler charges an abandoned request its prompt's cost (here COST, as pending said)
    charged = COST * (result.admitted + len(result.abandoned))
    stored = _money_is_conserved(local_stack, account_id, key_id, 10_000_000, charged)
    assert sum(stored["minutes"].values()) == result.admitted + len(result.abandoned)
    again = reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    assert (again.settled, again.leases_returned) == (0, 0)
    _money_is_conserved(local_stack, account_id, key_id, 10_000_000, charged)


@pytest.mark.parametrize("change", ["revoke", "max_budget"])
def test_a_key_change_during_leased_traffic_governs_the_next_request_everywhere(local_stack, change) -> None:
    """Given 8 instances admitting one key from leases, when the key is revoked (or its maxBudget lowered
    below one request's reservation) mid-traffic, then no request that started after the change returned
    is admitted, on any instance, and the money is exact once the leases are back."""
    import threading
    import time

    key, key_id, account_id = _hot_key(10_000_000)
    caller = Caller(account_id, "unused")
    milestone = threading.Event()
    outcome: dict = {}

    def load() -> None:
        outcome["result"] = run_load(
            key,
            instances=INSTANCES,
            threads_per_instance=2,
            requests_per_thread=30,
            reserve_micros=RESERVE,
            cost_micros=COST,
            meter_factory=_leased,
            milestone=(120, milestone),
        )

    runner = threading.Thread(target=load)
    runner.start()
    assert milestone.wait(120)  # leased traffic is flowing
    if change == "revoke":
        api_keys.revoke_key(caller, key_id)
    else:
        api_keys.update_key(caller, key_id, name=None, disabled=None, limits={"max_budget_micros": RESERVE - 1})
    changed_at = time.time()
    runner.join()
    result: LoadResult = outcome["result"]
    for meter in result.meters:
        meter.flush()
    late = [served for served in result.served if served.admitted_at > changed_at]
    expected = {"revoke": (401, "invalid_api_key"), "max_budget": (400, "request_too_large")}[change]
    print(f"\n{change}: admitted {result.admitted}, refused {dict(result.refusals)}, admitted after: {len(late)}")
    assert late == [] and expected in result.refusals
    _money_is_conserved(local_stack, account_id, key_id, 10_000_000, COST * result.admitted)


def test_a_warm_leased_request_makes_one_dynamodb_call_to_admit_and_one_to_settle(local_stack) -> None:
    """Given a leasing instance and a warm key, when requests are admitted and settled one after another,
    then each makes exactly one DynamoDB call before its first byte (a take, or an admission on the lease)
    and one to settle; only the takes write the key's item."""
    import uuid

    from llm_platform.core.clock import utc_now

    key, _, account_id = _hot_key(10_000_000)
    # Returns run off the request path (a background thread); here only at the end, so the counts are the requests'.
    meter = Meter(KeyCache(), LeasePolicy(min_rate=0, warmup_seconds=0, return_in_background=False))
    snapshot = meter.keys.lookup(key)
    leases = set()
    admitted_calls: list[int] = []
    with DynamoCounter(client()) as counter:
        for _ in range(5):
            admission = meter.admit(snapshot, RESERVE, 10, str(uuid.uuid4()), utc_now(), echo_pending(COST))
            assert admission.lease is not None
            leases.add(admission.lease.lease_id)
            calls_before_first_byte = counter.calls["TransactWriteItems"]
            settle_echo(meter, admission, COST)
            assert counter.calls["TransactWriteItems"] == calls_before_first_byte + 1
            admitted_calls.append(calls_before_first_byte)
    assert admitted_calls == [1, 3, 5, 7, 9] and counter.calls == {"TransactWriteItems": 10}
    assert counter.per_item[_api_key_item(counter)] == len(leases) < 5
    meter.flush()
    assert _open_leases(local_stack, account_id) == []
