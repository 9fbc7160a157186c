"""Log shards of a hot account (issue 16, K9) on DynamoDB Local: requests through the real proxy write
their log records and day counters on their key's shards, and the management API's history (the request
log by account and by key, one record, daily usage) answers exactly as for an unsharded account, with
cursors that page across shards; isolation holds; the settles of the lease path and of the reconciler
(which reads all 64 reservation shards) write on the shards too."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from llm_platform.config import get_settings
from llm_platform.core.clock import utc_now
from llm_platform.data import metering as store
from llm_platform.data.dynamo import client, from_item
from llm_platform.domain import accounts, history, reservations
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.leases import LeasePolicy
from llm_platform.proxy.metering import Meter, Outcome, Pending
from local_stack.upstream import UpstreamServer
from tests.support.proxies import catalog_model, proxy_on_catalog

SHARDS = 4


@pytest.fixture(scope="module")
def proxy_url(local_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    upstream = UpstreamServer(name="shards", chunk_delay=0.001)
    upstream.start()
    catalog = {
        "models": [
            catalog_model("test/echo", "test/echo", [(upstream.url, 0.5)]),
            catalog_model("test/story", "test/story", [(upstream.url, 0.5)]),
        ]
    }
    with proxy_on_catalog(catalog, tmp_path_factory.mktemp("log-shards-catalog")) as (url, _):
        yield url
    upstream.stop()


class Account:
    def __init__(self, api_url: str) -> None:
        created = accounts.create_account("log-shards")
        self.id = created.account_id
        accounts.grant_credit(self.id, 5_000_000, "test")
        self.api = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {created.management_key}"}, timeout=30
        )

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> dict:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def credit_key(self) -> tuple[str, str]:
        created = self.call("POST", "/api/keys/credit", 201, json={"name": "k", "rpm": 1000})["data"]
        return created["id"], created["apiKey"]

    def pages(self, path: str, **params) -> list[list[dict]]:
        pages, cursor = [], None
        while True:
            body = self.call("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
            pages.append(body["data"])
            cursor = body["nextCursor"]
            if cursor is None:
                return pages


def chat(proxy_url: str, key: str, model: str) -> str:
    response = httpx.post(
        f"{proxy_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "max_tokens": 6, "messages": [{"role": "user", "content": "hello shards"}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def stored_log(ids: list[str]) -> list[dict]:
    table = get_settings().request_log_table
    found = []
    for request_id in ids:
        item = client().get_item(TableName=table, Key={"requestId": {"S": request_id}}, ConsistentRead=True)["Item"]
        found.append(from_item(item))
    return found


def daily_partitions(account_id: str) -> set[str]:
    items = client().scan(TableName=get_settings().usage_counters_table)["Items"]
    return {pk for pk in (from_item(i)["pk"] for i in items) if pk.split("#")[:2] == ["daily", account_id]}


def run_history(account: Account, proxy_url: str, *, sharded: bool) -> tuple[list[str], str, str]:
    """Two keys, two models: 4 requests of the first key, then (sharded: its history and the second key's
    on 4 shards; the first key's proxy snapshot reloaded by a limit change, as any change reloads it) 16
    more, alternating keys and models. The request ids in order, and the keys' ids."""
    first_id, first = account.credit_key()
    second_id, second = account.credit_key()
    ids = [chat(proxy_url, first, "test/echo") for _ in range(4)]
    if sharded:
        history.shard_history(account.id, first_id, SHARDS)
        history.shard_history(account.id, second_id, SHARDS)
    account.call("PATCH", f"/api/keys/{first_id}", json={"rpm": 999})  # bumps the version either way
    for n in range(16):
        ids.append(chat(proxy_url, (first, second)[n % 2], ("test/echo", "test/story")[n // 2 % 2]))
    return ids, first_id, second_id


def shape(pages: list[list[dict]], ids: list[str]) -> list[list[int]]:
    """Pages as the order their requests were sent in (comparable across accounts)."""
    position = {request_id: n for n, request_id in enumerate(ids)}
    return [[position[record["id"]] for record in page] for page in pages]


def test_a_sharded_accounts_history_reads_exactly_as_an_unsharded_ones(local_stack, proxy_url) -> None:
    # Given two accounts sending the same requests, one of them with its keys' history on 4 shards
    plain, hot = Account(local_stack.api_url), Account(local_stack.api_url)
    plain_ids, plain_first, _ = run_history(plain, proxy_url, sharded=False)
    hot_ids, hot_first, hot_second = run_history(hot, proxy_url, sharded=True)

    # Then the hot account's records really are spread: the 4 before sharding on the plain partition values,
    # the 16 after over several shards (suffixed index values), and its day counters likewise
    records = stored_log(hot_ids)
    assert [r["accountId"] for r in records[:4]] == [hot.id] * 4
    assert all("logShard" not in r for r in records[:4])
    shards = collections.Counter(r["logShard"] for r in records[4:])
    assert len(shards) >= 3 and set(shards) <= set(range(SHARDS))
    assert all(r["accountId"] == f"{hot.id}#{r['logShard']}" for r in records[4:])
    assert all(r["keyId"] in (f"{hot_first}#{r['logShard']}", f"{hot_second}#{r['logShard']}") for r in records[4:])
    assert len(daily_partitions(hot.id)) >= 3 and f"daily#{hot.id}" in daily_partitions(hot.id)
    assert daily_partitions(plain.id) == {f"daily#{plain.id}"}

    # And every listing pages the same for both, newest first, every record once, real ids
    for params in ({"limit": 3}, {"limit": 7, "model": "test/story"}, {"limit": 100}, {"limit": 1}):
        plain_pages = plain.pages("/api/requests", **params)
        hot_pages = hot.pages("/api/requests", **params)
        assert shape(hot_pages, hot_ids) == shape(plain_pages, plain_ids), params
        flat = [record["id"] for page in hot_pages for record in page]
        assert flat == sorted(flat, key=hot_ids.index, reverse=True) and len(flat) == len(set(flat))
        assert {record["keyId"] for page in hot_pages for record in page} <= {hot_first, hot_second}
    assert len([r for page in hot.pages("/api/requests", limit=3) for r in page]) == 20
    by_key = hot.pages("/api/requests", limit=2, keyId=hot_first)
    assert shape(by_key, hot_ids) == shape(plain.pages("/api/requests", limit=2, keyId=plain_first), plain_ids)
    first_key_ids = set(hot_ids[:4] + hot_ids[4::2])
    assert [r["id"] for page in by_key for r in page] == [i for i in hot_ids[::-1] if i in first_key_ids]
    # And the time filters and one record read the same
    log = [r for page in hot.pages("/api/requests", limit=50) for r in page]
    since, until = log[15]["createdAt"], log[2]["createdAt"]
    window = [r["id"] for page in hot.pages("/api/requests", limit=4, **{"from": since, "to": until}) for r in page]
    assert window == [r["id"] for r in log[3:16]]
    assert hot.call("GET", f"/api/requests/{hot_ids[10]}")["data"] == next(r for r in log if r["id"] == hot_ids[10])

    # And the daily counters, summed over the shards, equal the log, row for row as for the unsharded account
    def daily_by_row(account: Account, first_id: str) -> dict[tuple, list]:
        rows = account.call("GET", "/api/usage/daily")["data"]
        return {
            (row["date"], row["keyId"] == first_id, row["model"]): [
                row["requests"],
                row["promptTokens"],
                row["completionTokens"],
                Decimal(row["spend"]),
            ]
            for row in rows
        }

    sums: dict[tuple, list] = {}
    for record in log:
        row = sums.setdefault(
            (record["createdAt"][:10], record["keyId"] == hot_first, record["model"]), [0, 0, 0, Decimal(0)]
        )
        for i, value in enumerate((1, record["promptTokens"], record["completionTokens"], Decimal(record["cost"]))):
            row[i] += value
    assert daily_by_row(hot, hot_first) == sums
    assert daily_by_row(plain, plain_first) == sums  # the same requests, the same counts and costs


def test_sharded_history_stays_the_callers_own(local_stack, proxy_url) -> None:
    # Given two accounts both sharded (the same shard count, so the same shard numbers), each with requests
    victim, intruder = Account(local_stack.api_url), Account(local_stack.api_url)
    victim_key_id, victim_key = victim.credit_key()
    intruder_key_id, intruder_key = intruder.credit_key()
    history.shard_history(victim.id, victim_key_id, SHARDS)
    history.shard_history(intruder.id, intruder_key_id, SHARDS)
    victim_ids = [chat(proxy_url, victim_key, "test/echo") for _ in range(8)]
    intruder_ids = [chat(proxy_url, intruder_key, "test/echo") for _ in range(2)]
    # Then each lists only its own, and the other's records, key, shard-suffixed ids and cursors are refused
    assert [r["id"] for page in intruder.pages("/api/requests", limit=1) for r in page] == intruder_ids[::-1]
    assert {r["keyId"] for r in intruder.call("GET", "/api/usage/daily")["data"]} == {intruder_key_id}
    for request_id in victim_ids:
        assert intruder.call("GET", f"/api/requests/{request_id}", 404)["error"]["code"] == "not_found"
    for key_id in (victim_key_id, f"{victim_key_id}#0"):
        assert intruder.call("GET", "/api/requests", 404, params={"keyId": key_id})["error"]["code"] == "not_found"
    cursor = victim.call("GET", "/api/requests", params={"limit": 2})["nextCursor"]
    assert intruder.call("GET", "/api/requests", 400, params={"cursor": cursor})["error"]["code"] == "invalid_cursor"
    assert [r["id"] for page in victim.pages("/api/requests", limit=3) for r in page] == victim_ids[::-1]


def _sharded_key(shards: int) -> tuple[str, str, str]:
    from llm_platform.domain import api_keys
    from llm_platform.domain.accounts import Caller

    created = accounts.create_account("log-shards-meter")
    accounts.grant_credit(created.account_id, 10_000_000, "test")
    caller = Caller(created.account_id, created.management_key_id)
    key, plaintext = api_keys.create_credit_key(caller, "hot", None, 10_000, 1_000_000)
    history.shard_history(created.account_id, key.key_id, shards)
    return plaintext, key.key_id, created.account_id


def _request_id_on(reservation_shard: int) -> str:
    while True:
        request_id = str(uuid.uuid4())
        if store.reservation_shard(request_id) == f"open#{reservation_shard}":
            return request_id


def test_the_reconciler_reads_64_reservation_shards_and_settles_onto_log_shards(local_stack) -> None:
    # Given a key with 4 log shards and requests admitted on reservation shards old (0-15) and new (16-63),
    # whose instance died before settling them
    plaintext, key_id, account_id = _sharded_key(SHARDS)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False))
    snapshot = meter.keys.lookup(plaintext)
    assert snapshot is not None and snapshot.log_shards == SHARDS
    now = utc_now()
    ids = [_request_id_on(shard) for shard in (0, 7, 15, 16, 40, 63)]
    for request_id in ids:
        pending = Pending(model="test/echo", stream=False, prompt_tokens=5, prompt_cost_micros=50)
        meter.admit(snapshot, 1000, 50, request_id, now, pending)
    # When the reconciler runs after their deadline
    settings = get_settings()
    later = now + timedelta(seconds=settings.reservation_timeout_seconds + settings.reconcile_grace_seconds + 1)
    reservations.reconcile(later)
    # Then every one was settled (from all 64 shards), on the key's log shards, and reads back as the key's
    records = stored_log(ids)
    assert all(r["status"] == reservations.RECONCILED_STATUS for r in records)
    assert all(r["accountId"] == f"{account_id}#{r['logShard']}" for r in records)
    caller = accounts.Caller(account_id, None)
    listed = history.list_requests(caller, key_id=key_id, model=None, since=None, until=None, limit=10, cursor=None)
    assert sorted(r["requestId"] for r in listed.items) == sorted(ids)
    rows = history.daily_usage(caller, first_day=None, last_day=later.date().isoformat(), key_id=key_id, model=None)
    assert sum(row["requests"] for row in rows) == len(ids) and sum(row["spendMicros"] for row in rows) == 50 * len(ids)
    reservations_table = settings.reservations_table
    for request_id in ids:
        item = client().get_item(TableName=reservations_table, Key={"requestId": {"S": request_id}})
        assert "Item" not in item


def test_the_lease_path_settles_onto_log_shards_too(local_stack) -> None:
    # Given a sharded key served from this instance's leases
    plaintext, key_id, account_id = _sharded_key(SHARDS)
    meter = Meter(KeyCache(), LeasePolicy(min_rate=0, warmup_seconds=0, return_in_background=False))
    snapshot = meter.keys.lookup(plaintext)
    assert snapshot is not None
    ids = []
    # When 12 requests are admitted and settled on leases
    for _ in range(12):
        request_id = str(uuid.uuid4())
        pending = Pending(model="test/echo", stream=False, prompt_tokens=3, prompt_cost_micros=30)
        admission = meter.admit(snapshot, 1000, 20, request_id, utc_now(), pending)
        assert admission.lease is not None
        meter.settle(
            admission,
            input_tokens=3,
            output_tokens=2,
            cost_micros=40,
            counted=True,
            now=utc_now(),
            outcome=Outcome("test/echo", "local", 200, False),
        )
        ids.append(request_id)
    meter.flush()
    # Then their records and day counters are on the log shards (the day counter's sort-key shards within)
    records = stored_log(ids)
    assert len({r["logShard"] for r in records}) >= 2
    assert daily_partitions(account_id) <= {f"daily#{account_id}#{n}" for n in range(SHARDS)}
    # And the history reads them all, and sums them exactly
    caller = accounts.Caller(account_id, None)
    page = history.list_requests(caller, key_id=None, model=None, since=None, until=None, limit=20, cursor=None)
    assert sorted(r["requestId"] for r in page.items) == sorted(ids) and page.cursor is None
    rows = history.daily_usage(caller, first_day=None, last_day=None, key_id=None, model=None)
    assert [(row["requests"], row["spendMicros"]) for row in rows] == [(12, 12 * 40)]
