"""One account and one key hammered by many Lambda-like environments at once, on DynamoDB Local (issue 16,
key shards).

Each environment is its own ``Meter`` and ``KeyCache`` serving ONE request at a time (one thread), with
per-instance leases off (on Lambda they never engage: one request per environment). The key is put in shard
mode through the promotion function (DynamoDB Local never reports ``TransactionConflict``, the trigger's
own test is a unit test). The figures (DynamoDB calls, items written, the hottest item's writes per request,
direct against shards) are printed (``-s``) for the README and ``notes/shard-design.md``; the assertions
are the guarantees: RPM never exceeded in a minute, spend never past the balance or maxBudget, money
conserved (the ledger explains the balance once the reconciler gave idle shards back), a key change
governs the next request everywhere, a dead environment's requests are settled once."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from datetime import timedelta

import pytest

from llm_platform.core.clock import utc_now
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import shards as shard_store
from llm_platform.data.dynamo import client, from_item, query_all
from llm_platform.domain import accounts, api_keys, hot_keys, reservations
from llm_platform.domain.accounts import Caller
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.leases import LeasePolicy
from llm_platform.proxy.metering import Meter
from llm_platform.proxy.shards import KeyShards
from tests.support.dynamodb_calls import dynamodb_operations
from tests.support.hot_load import DynamoCounter, LoadResult, echo_pending, run_load, settle_echo

ENVIRONMENTS, REQUESTS = 32, 20  # 640 requests, each environment one at a time
RESERVE, COST = 2_000, 700
GRANT = 10_000_000


def _lambda_like(keys: KeyCache) -> Meter:
    """A Lambda execution environment: its own state, no per-instance leases."""
    return Meter(keys, LeasePolicy(enabled=False))


def _hot_key(balance: int, rpm: int = 100_000, max_budget: int | None = None, shards: int | None = 8):
    created = accounts.create_account("hot-shards")
    caller = Caller(created.account_id, created.management_key_id)
    if balance:
        accounts.grant_credit(created.account_id, balance, "hot load")
    key, plaintext = api_keys.create_credit_key(caller, "hot", max_budget, rpm, 100_000_000)
    if shards:
        assert hot_keys.promote(key.key_hash, key.key_id, created.account_id, shards)
    return plaintext, key, created.account_id


def _key_item(account_id: str, key_id: str):
    return next(k for k in api_keys_table.list_for_account(account_id) if k.key_id == key_id)


def _ledger(local_stack, account_id: str) -> list[dict]:
    return query_all(
        TableName=local_stack.table_names["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account_id}},
        ConsistentRead=True,
    )


def _open_reservations(local_stack, account_id: str) -> list[dict]:
    items = []
    for page in (
        client()
        .get_paginator("scan")
        .paginate(TableName=local_stack.table_names["ReservationsTable"], ConsistentRead=True)
    ):
        items.extend(from_item(item) for item in page["Items"])
    return [item for item in items if item.get("accountId") == account_id]


def _minutes(local_stack, key_id: str) -> dict[int, int]:
    items = query_all(
        TableName=local_stack.table_names["UsageCountersTable"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
        ExpressionAttributeValues={":pk": {"S": f"key#{key_id}"}, ":m": {"S": "minute#"}},
        ConsistentRead=True,
    )
    return {int(item["sk"].split("#")[1]): int(item.get("requests", 0)) for item in items}


def money_identity(local_stack, account_id: str, key_id: str) -> dict[str, int]:
    """K7's identity: balance + shard ``available`` + shard spend not yet synced + open reservations' reserve
    = sum(ledger); every term returned for the messages."""
    shards = shard_store.read(key_id, shard_store.registered_shards(key_id) or 0)
    terms = {
        "balance": accounts.get_account(account_id).credit_balance_micros,
        "shard_available": sum(int(item.get("available", 0)) for item in shards.values()),
        "shard_unsynced": sum(int(item.get("spent", 0)) for item in shards.values()),
        "open_reservations": sum(int(r["reserveMicros"]) for r in _open_reservations(local_stack, account_id)),
        "ledger": sum(int(entry["amountMicros"]) for entry in _ledger(local_stack, account_id)),
    }
    held = terms["balance"] + terms["shard_available"] + terms["shard_unsynced"] + terms["open_reservations"]
    assert held == terms["ledger"], terms
    return terms


def _reclaim(account_id: str, monkeypatch) -> reservations.ReconcileReport:
    """The reconciler, its clock past every request's deadline and every shard's idle time; it sees only
    this account's reservations (DynamoDB Local is shared by the session)."""
    from llm_platform.data import metering as metering_store

    real = metering_store.due_reservations
    monkeypatch.setattr(
        metering_store,
        "due_reservations",
        lambda shard, before, limit: [r for r in real(shard, before, limit) if r.get("accountId") == account_id],
    )
    report = reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    report.shards_returned = [given for given in report.shards_returned if given.account_id == account_id]
    return report


def _conserved(local_stack, account_id: str, key_id: str, grant: int, charged: int) -> None:
    """Nothing held anywhere (no reservation open, every shard given back) and the grant is exactly the
    balance plus what was charged, which the ledger and the key's spend say too."""
    terms = money_identity(local_stack, account_id, key_id)
    assert (terms["shard_available"], terms["shard_unsynced"], terms["open_reservations"]) == (0, 0, 0), terms
    assert terms["balance"] == terms["ledger"] == grant - charged, terms
    assert _key_item(account_id, key_id).spend_micros == charged


def _report(label: str, result: LoadResult, counter: DynamoCounter) -> dict:
    admitted = max(1, result.admitted)
    hottest, writes = counter.hottest(excluding=("Reservations", "RequestLog"))
    central, central_writes = counter.hottest(excluding=("Reservations", "RequestLog", "shard#", "daily#"))
    figures = {
        "admitted": result.admitted,
        "refused": dict(result.refusals),
        "seconds": round(result.seconds, 2),
        "requests_per_second": round(result.admitted / result.seconds, 1),
        "calls": dict(counter.calls),
        "calls_per_request": round(sum(counter.calls.values()) / admitted, 2),
        "conflict_retries": counter.conflicts,
        "items_written_per_request": round(counter.items_written / admitted, 2),
        "hottest_item": hottest,
        "hottest_item_writes_per_request": round(writes / admitted, 3),
        "hottest_central_item": central,
        "hottest_central_item_writes_per_request": round(central_writes / admitted, 3),
    }
    print(f"\n{label}: {figures}")
    return figures


def _load(key: str, **kwargs) -> LoadResult:
    options = {
        "instances": ENVIRONMENTS,
        "threads_per_instance": 1,
        "requests_per_thread": REQUESTS,
        "reserve_micros": RESERVE,
        "cost_micros": COST,
        "meter_factory": _lambda_like,
    }
    return run_load(key, **{**options, **kwargs})


def test_shards_cut_the_hottest_items_writes_per_request_against_the_direct_path(local_stack, monkeypatch) -> None:
    """Given one credit key of one account and 32 Lambda-like environments, when 640 requests run at once on
    the direct path (the key not promoted) and then on another key in shard mode (S = 8), then both admit
    every request, both are exact once the reconciler gave the idle shards back, and the hottest item is
    written 2 times per request directly and a fraction of that in shard mode."""
    plain, key, account_id = _hot_key(GRANT, shards=None)
    with DynamoCounter(client()) as counter:
        direct = _load(plain)
    before = _report("direct path, 32 environments", direct, counter)
    assert direct.admitted == ENVIRONMENTS * REQUESTS
    assert before["hottest_item_writes_per_request"] == pytest.approx(2.0)
    _conserved(local_stack, account_id, key.key_id, GRANT, COST * direct.admitted)

    plain, key, account_id = _hot_key(GRANT, shards=8)
    with DynamoCounter(client()) as counter:
        sharded = _load(plain)
    after = _report("key shards (S=8), 32 environments", sharded, counter)
    assert sharded.admitted == ENVIRONMENTS * REQUESTS
    terms = money_identity(local_stack, account_id, key.key_id)  # held in shards until given back
    print(f"held in shards before the reconciler: {terms}")
    assert after["hottest_item_writes_per_request"] < 0.5, after
    assert after["hottest_central_item_writes_per_request"] < 0.5, after
    report = _reclaim(account_id, monkeypatch)
    print(f"reconciler: {len(report.shards_returned)} shards given back")
    _conserved(local_stack, account_id, key.key_id, GRANT, COST * sharded.admitted)
    stored = _key_item(account_id, key.key_id)
    assert (stored.request_count, stored.input_tokens, stored.output_tokens) == (sharded.admitted, 3 * 640, 2 * 640)
    minutes = _minutes(local_stack, key.key_id)
    per_minute = collections.Counter(served.minute for served in sharded.served)
    assert all(minutes[minute] >= count for minute, count in per_minute.items())  # slices counted whole


def test_a_warm_request_on_a_shard_makes_at_most_two_round_trips_before_its_first_byte(local_stack) -> None:
    """Given an environment and a key in shard mode (S = 2, shard 0 always picked), when requests are admitted
    and settled one after another, then each makes at most 2 DynamoDB calls before its first byte (an
    admission on the shard; or that refused and a refill carrying the request), most make 1, and each
    settles in 1."""
    plain, _, account_id = _hot_key(GRANT, shards=2)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False), KeyShards(choose=lambda shards: 0))
    snapshot = meter.keys.lookup(plain)
    assert snapshot is not None and snapshot.shards == 2
    before_first_byte, to_settle = [], []
    for _ in range(30):
        with dynamodb_operations() as admitting:
            admission = meter.admit(snapshot, RESERVE, 10, str(uuid.uuid4()), utc_now(), echo_pending(COST))
        assert admission.shard is not None
        with dynamodb_operations() as settling:
            settle_echo(meter, admission, COST)
        before_first_byte.append(len(admitting))
        to_settle.append(len(settling))
    print(f"\nround trips before the first byte, 30 warm requests: {before_first_byte}")
    assert max(before_first_byte) <= 2 and set(to_settle) == {1}
    assert before_first_byte.count(1) >= 20
    assert not _open_reservations(local_stack, account_id)


def test_rpm_is_never_exceeded_in_any_minute_in_shard_mode(local_stack, monkeypatch) -> None:
    """Given a key of RPM 200 in shard mode (8 shards: slices of at most 25) and 640 requests from 32
    environments at once, then no minute admits more than 200, the rest are 429, and the money is exact
    once the shards are given back."""
    plain, key, account_id = _hot_key(GRANT, rpm=200)
    result = _load(plain)
    per_minute = collections.Counter(served.minute for served in result.served)
    print(f"\nRPM 200 on shards: admitted per minute {dict(per_minute)}, refused {dict(result.refusals)}")
    assert max(per_minute.values()) <= 200
    assert set(result.refusals) == {(429, "rate_limit_exceeded")}
    minutes = _minutes(local_stack, key.key_id)
    assert all(minutes[minute] <= 200 for minute in minutes)
    money_identity(local_stack, account_id, key.key_id)
    _reclaim(account_id, monkeypatch)
    _conserved(local_stack, account_id, key.key_id, GRANT, COST * result.admitted)


@pytest.mark.parametrize("limit", ["balance", "max_budget"])
def test_spend_never_passes_the_balance_or_max_budget_in_shard_mode(local_stack, monkeypatch, limit) -> None:
    """Given a balance (or the key's maxBudget) of 150,000 micro-dollars, requests reserving 2,000 and costing
    700, and 640 requests from 32 environments on 8 shards, then the spend never passes it (a refill takes its
    slice's money first), the refusals are 402, and once the reconciler gave the shards back the rest is
    spendable one request at a time to within one reservation of the limit (nothing lost in shards)."""
    grant = 150_000 if limit == "balance" else GRANT
    plain, key, account_id = _hot_key(grant, max_budget=None if limit == "balance" else 150_000)
    result = _load(plain)
    print(f"\n{limit} on shards: admitted {result.admitted}, refused {dict(result.refusals)}")
    assert set(result.refusals) == {(402, "insufficient_quota")}
    charged = COST * result.admitted
    assert charged <= 150_000
    terms = money_identity(local_stack, account_id, key.key_id)
    assert terms["balance"] >= 0
    _reclaim(account_id, monkeypatch)
    _conserved(local_stack, account_id, key.key_id, grant, charged)
    # Then nothing is lost in shards: one request at a time, the reconciler giving idle shards back between
    # rounds (money held in shards is what refuses early), spends the rest to within one reservation.
    rounds = []
    while not rounds or rounds[-1]:
        rest = _load(plain, instances=1, requests_per_thread=150)
        charged += COST * rest.admitted
        rounds.append(rest.admitted)
        _reclaim(account_id, monkeypatch)
        _conserved(local_stack, account_id, key.key_id, grant, charged)
        assert len(rounds) <= 5, rounds
    print(f"then one at a time: {rounds} more admitted per round, {charged} of 150,000 charged")
    assert charged + (RESERVE - COST) > 150_000 - RESERVE and charged <= 150_000


def test_a_dead_environments_requests_on_shards_are_reclaimed_once(local_stack, monkeypatch) -> None:
    """Given environments whose every third request is left in flight on a shard when they "die", when the
    reconciler runs after those requests' deadline, then it settles each into its shard (the prompt's cost)
    and gives every idle shard back: the money identity holds before and after, nothing is held or counted
    twice, and a second run changes nothing."""
    plain, key, account_id = _hot_key(GRANT)
    result = _load(plain, instances=8, requests_per_thread=12, settle=lambda number: number % 3 != 2)
    assert result.abandoned
    terms = money_identity(local_stack, account_id, key.key_id)
    assert terms["open_reservations"] == RESERVE * len(result.abandoned)
    report = _reclaim(account_id, monkeypatch)
    print(f"\ndead environments: {len(result.abandoned)} requests in flight; settled {report.settled}, "
          f"{len(report.shards_returned)} shards given back")  # fmt: skip
    assert (report.settled, report.failed) == (len(result.abandoned), [])
    assert report.shards_returned
    charged = COST * (result.admitted + len(result.abandoned))
    _conserved(local_stack, account_id, key.key_id, GRANT, charged)
    again = _reclaim(account_id, monkeypatch)
    assert (again.settled, again.shards_returned) == (0, [])
    _conserved(local_stack, account_id, key.key_id, GRANT, charged)


@pytest.mark.parametrize("change", ["revoke", "max_budget"])
def test_a_key_change_during_shard_traffic_governs_the_next_request_everywhere(
    local_stack, monkeypatch, change
) -> None:
    """Given 32 environments admitting one key from its shards, when the key is revoked (or its maxBudget
    lowered below one request's reservation) mid-traffic, then no request that started after the management
    call returned is admitted, on any environment, and the money is exact once the shards are given back."""
    plain, key, account_id = _hot_key(GRANT)
    caller = Caller(account_id, "unused")
    milestone = threading.Event()
    outcome: dict = {}

    def load() -> None:
        outcome["result"] = _load(plain, requests_per_thread=15, milestone=(120, milestone))

    runner = threading.Thread(target=load)
    runner.start()
    assert milestone.wait(120)  # sharded traffic is flowing
    if change == "revoke":
        api_keys.revoke_key(caller, key.key_id)
    else:
        api_keys.update_key(caller, key.key_id, name=None, disabled=None, limits={"max_budget_micros": RESERVE - 1})
    changed_at = time.time()
    runner.join()
    result: LoadResult = outcome["result"]
    late = [served for served in result.served if served.admitted_at > changed_at]
    expected = {"revoke": (401, "invalid_api_key"), "max_budget": (400, "request_too_large")}[change]
    print(f"\n{change} on shards: admitted {result.admitted}, refused {dict(result.refusals)}, after: {len(late)}")
    assert late == [] and expected in result.refusals
    _reclaim(account_id, monkeypatch)
    _conserved(local_stack, account_id, key.key_id, GRANT, COST * result.admitted)
