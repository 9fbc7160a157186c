"""Log shards of a hot account (issue 16, K9) on moto: which shard a request writes, shard_history(), and
that every reader (the request log by account and by key, one record, daily usage) gives the same answers
whether the records are spread over shards or not, with cursors that page across them."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_platform.data import log_shards, request_log
from llm_platform.data import metering as store
from llm_platform.data.dynamo import client, from_item, transact
from llm_platform.data.pages import encode_cursor
from llm_platform.data.usage_counters import daily_counter, minute_counter
from llm_platform.domain import accounts, api_keys, history
from llm_platform.domain.accounts import Caller
from llm_platform.domain.errors import BadRequest, NotFound
from tests.support.dynamodb_calls import dynamodb_operations

T0 = datetime(2026, 3, 1, 23, 58, tzinfo=UTC)  # the records cross a UTC day


class Tenant:
    def __init__(self) -> None:
        created = accounts.create_account("shards")
        self.caller = Caller(created.account_id, created.management_key_id)
        self.id = created.account_id
        self.keys = [api_keys.create_credit_key(self.caller, f"k{i}", None, 1000, 100_000)[0] for i in range(2)]

    def settle_log(
        self, n: int, *, key: int = 0, model: str = "m/a", shards: int = 0, request_id: str | None = None
    ) -> dict[str, Any]:
        """The log record and day counter of the n-th request, written as every settle writes them."""
        key_item = self.keys[key]
        request_id = request_id or str(uuid.uuid4())
        created = (T0 + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        record = {
            "id": request_id,
            "accountId": self.id,
            "keyId": key_item.key_id,
            "model": model,
            "provider": "p0",
            "status": 200,
            "stream": False,
            "promptTokens": 10 + n,
            "completionTokens": n,
            "costMicros": 100 + n,
            "createdAt": created,
            "durationMs": 5,
        }
        plan = store.SettlePlan(
            request_id=request_id,
            key_hash=key_item.key_hash,
            account_id=self.id,
            minute=minute_counter(key_item.key_id, 1),
            reserve_micros=1000,
            reserve_tokens=100,
            cost_micros=record["costMicros"],
            input_tokens=record["promptTokens"],
            output_tokens=record["completionTokens"],
            counted=True,
            now_iso=created,
            log_record=record,
            log_expires_at=2_000_000_000,
            daily=daily_counter(self.id, created[:10], key_item.key_id, model),
            log_shards=shards,
        )
        transact(store.log_items(plan))
        return record

    def pages(self, limit: int, **filters: Any) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page = history.list_requests(
                self.caller,
                key_id=filters.get("key_id"),
                model=filters.get("model"),
                since=filters.get("since"),
                until=filters.get("until"),
                limit=limit,
                cursor=cursor,
            )
            pages.append([record["requestId"] for record in page.items])
            if page.cursor is None:
                return pages
            cursor = encode_cursor(page.cursor)


def newest_first(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: r["createdAt"], reverse=True)]


def flat(pages: list[list[str]]) -> list[str]:
    return [request_id for page in pages for request_id in page]


# ------------------------------------------------------------------ which shard


def test_a_request_always_writes_the_same_shard_and_requests_spread_evenly() -> None:
    # Given 16,000 request ids
    ids = [str(uuid.uuid4()) for _ in range(16_000)]
    # Then each has one stable shard below L, and the 16 shards get about a sixteenth each
    assert all(log_shards.shard_of(i, 16) == log_shards.shard_of(i, 16) for i in ids[:100])
    counts = [0] * 16
    for request_id in ids:
        counts[log_shards.shard_of(request_id, 16) or 0] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts
    # And a key without log shards writes the plain partition values
    assert log_shards.shard_of(ids[0], 0) is None
    assert log_shards.partitions("acct_x", 0) == ["acct_x"]
    assert log_shards.partitions("acct_x", 3) == ["acct_x", "acct_x#0", "acct_x#1", "acct_x#2"]


def test_a_sharded_record_carries_suffixed_index_values_and_reads_back_as_it_was() -> None:
    record = {"requestId": "r", "accountId": "acct_a", "keyId": "key_k", "model": "m"}
    stored = log_shards.sharded_record(record, 5)
    assert (stored["accountId"], stored["keyId"], stored["logShard"]) == ("acct_a#5", "key_k#5", 5)
    assert log_shards.restored(stored) == record
    assert log_shards.sharded_record(record, None) == record


# ------------------------------------------------------------------ shard_history


def test_shard_history_marks_the_account_and_the_key_and_never_lowers_them(tables) -> None:
    # Given an account with two keys
    tenant = Tenant()
    key = tenant.keys[0]
    # When one key's history is sharded
    assert history.shard_history(tenant.id, key.key_id) == log_shards.DEFAULT_LOG_SHARDS
    # Then the account and that key carry it, the other key not
    assert accounts.get_account(tenant.id).log_shards == 16
    assert api_keys.api_keys_table.get_by_hash(key.key_hash).log_shards == 16
    assert api_keys.api_keys_table.get_by_hash(tenant.keys[1].key_hash).log_shards is None
    # And asking for fewer never lowers it, asking for more raises it (at most MAX_LOG_SHARDS)
    assert history.shard_history(tenant.id, key.key_id, 4) == 16
    assert history.shard_history(tenant.id, key.key_id, 1000) == log_shards.MAX_LOG_SHARDS
    assert accounts.get_account(tenant.id).log_shards == log_shards.MAX_LOG_SHARDS
    # And the other key, sharded less, leaves the account's as it is
    assert history.shard_history(tenant.id, tenant.keys[1].key_id, 8) == 8
    assert accounts.get_account(tenant.id).log_shards == log_shards.MAX_LOG_SHARDS


def test_shard_history_of_another_accounts_key_is_not_found_and_changes_nothing(tables) -> None:
    owner, other = Tenant(), Tenant()
    with pytest.raises(NotFound):
        history.shard_history(other.id, owner.keys[0].key_id)
    with pytest.raises(NotFound):
        history.shard_history(other.id, "key_not-an-id#1")
    assert api_keys.api_keys_table.get_by_hash(owner.keys[0].key_hash).log_shards is None
    assert accounts.get_account(other.id).log_shards is None
    with pytest.raises(NotFound):  # by the key item's hash (as a proxy knows it): the account is checked too
        history.shard_history(other.id, owner.keys[0].key_id, key_hash=owner.keys[0].key_hash)
    assert api_keys.api_keys_table.get_by_hash(owner.keys[0].key_hash).log_shards is None
    assert history.shard_history(owner.id, owner.keys[0].key_id, 8, key_hash=owner.keys[0].key_hash) == 8
    with pytest.raises(ValueError, match="at least 1"):
        history.shard_history(owner.id, owner.keys[0].key_id, 0)


# ------------------------------------------------------------------ readers


def test_the_request_log_pages_the_same_sharded_or_not(tables) -> None:
    # Given an account whose key wrote records before and after its history was sharded, two models
    tenant = Tenant()
    records = [tenant.settle_log(n, model="m/a" if n % 3 else "m/b") for n in range(7)]
    history.shard_history(tenant.id, tenant.keys[0].key_id, 4)
    records += [tenant.settle_log(n, model="m/a" if n % 3 else "m/b", shards=4) for n in range(7, 40)]
    records += [tenant.settle_log(n, key=1) for n in range(40, 45)]  # an unsharded key of the sharded account
    # (the records really are spread: the plain partition and all four shards hold some)
    stored = [from_item(i) for i in client().scan(TableName=tables["RequestLogTable"])["Items"]]
    assert {i["accountId"] for i in stored if i["requestId"] in {r["id"] for r in records}} == {
        tenant.id,
        *(f"{tenant.id}#{n}" for n in range(4)),
    }

    # Then every page size walks every record once, newest first, with no empty page but the last
    for limit in (1, 3, 7, 45, 100):
        pages = tenant.pages(limit)
        assert flat(pages) == newest_first(records), limit
        assert all(len(page) == limit for page in pages[:-1])
    # And by key (its plain partition and its shards), by model, by time
    key_id = tenant.keys[0].key_id
    mine = [r for r in records if r["keyId"] == key_id]
    assert flat(tenant.pages(4, key_id=key_id)) == newest_first(mine)
    rare = [r for r in records if r["model"] == "m/b"]
    assert flat(tenant.pages(2, model="m/b")) == newest_first(rare)
    since, until = records[5]["createdAt"], records[30]["createdAt"]
    window = [r for r in records if since <= r["createdAt"] < until]
    assert flat(tenant.pages(4, since=since, until=until)) == newest_first(window)
    assert flat(tenant.pages(3, key_id=key_id, model="m/b", since=since)) == newest_first(
        [r for r in rare if r["keyId"] == key_id and r["createdAt"] >= since]
    )
    # And one record reads back with its real ids
    sharded = records[20]
    assert history.get_request(tenant.caller, sharded["id"])["accountId"] == tenant.id
    assert history.get_request(tenant.caller, sharded["id"])["keyId"] == key_id


def test_reads_that_stop_early_resume_across_shards_without_gaps(tables) -> None:
    # Given a sharded account whose rare model is one record in five
    tenant = Tenant()
    history.shard_history(tenant.id, tenant.keys[0].key_id, 8)
    # (request ids from a seeded generator: which shard each record lands on, so which page comes back short,
    # is the same on every run)
    ids = random.Random(16)
    records = [
        tenant.settle_log(
            n,
            model="m/b" if n % 5 == 0 else "m/a",
            shards=8,
            request_id=str(uuid.UUID(int=ids.getrandbits(128), version=4)),
        )
        for n in range(60)
    ]
    # When pages may read each partition only once (a page then comes back short, with a cursor)
    found, start, pages = [], None, 0
    while True:
        page = request_log.query_newest_first(
            index="byAccount",
            partition=tenant.id,
            since=None,
            until=None,
            account_id=tenant.id,
            model="m/b",
            limit=2,
            start=start,
            shards=8,
            max_pages=1,
        )
        found += [r["requestId"] for r in page.items]
        pages += 1
        if page.cursor is None:
            break
        assert set(page.cursor) == {"accountId", "sortKey", "requestId"} and page.cursor["accountId"] == tenant.id
        start = page.cursor
    # Then the pages still hold every rare record once, newest first
    assert found == newest_first([r for r in records if r["model"] == "m/b"])
    assert pages > 6


def test_a_cursor_of_an_unsharded_list_resumes_after_the_account_is_sharded(tables) -> None:
    tenant = Tenant()
    old = [tenant.settle_log(n) for n in range(6)]
    first = history.list_requests(tenant.caller, key_id=None, model=None, since=None, until=None, limit=2, cursor=None)
    assert first.cursor is not None
    history.shard_history(tenant.id, tenant.keys[0].key_id, 4)
    newer = [tenant.settle_log(n, shards=4) for n in range(6, 12)]
    rest = history.list_requests(
        tenant.caller, key_id=None, model=None, since=None, until=None, limit=10, cursor=encode_cursor(first.cursor)
    )
    assert [r["requestId"] for r in first.items] + [r["requestId"] for r in rest.items] == newest_first(old)
    assert flat(tenant.pages(5)) == newest_first(old + newer)


def test_a_page_costs_one_query_per_partition(tables) -> None:
    # Given an unsharded account and a sharded one (L = 16), each with more records than a page
    plain, hot = Tenant(), Tenant()
    for n in range(30):
        plain.settle_log(n)
    history.shard_history(hot.id, hot.keys[0].key_id)
    for n in range(30):
        hot.settle_log(n, shards=16)

    def queries(tenant: Tenant) -> int:
        with dynamodb_operations() as operations:
            page = history.list_requests(
                tenant.caller, key_id=None, model=None, since=None, until=None, limit=20, cursor=None
            )
        assert len(page.items) == 20
        return operations.count("Query")

    # Then a page of the plain account is one query, of the sharded one L + 1
    assert queries(plain) == 1
    assert queries(hot) == 17


def test_one_accounts_shards_never_show_another_accounts_records(tables) -> None:
    # Given two sharded accounts (the same L) and one unsharded, each with records
    a, b, c = Tenant(), Tenant(), Tenant()
    for tenant in (a, b):
        history.shard_history(tenant.id, tenant.keys[0].key_id, 4)
    a_records = [a.settle_log(n, shards=4) for n in range(10)]
    b_records = [b.settle_log(n, shards=4) for n in range(3)]
    # Then each lists its own only, by account and by key; the other's key and records are not found
    assert flat(a.pages(3)) == newest_first(a_records)
    assert flat(b.pages(3)) == newest_first(b_records)
    assert flat(c.pages(3)) == []
    with pytest.raises(NotFound):
        history.list_requests(
            b.caller, key_id=a.keys[0].key_id, model=None, since=None, until=None, limit=5, cursor=None
        )
    with pytest.raises(NotFound):
        history.get_request(b.caller, a_records[0]["id"])
    assert history.daily_usage(b.caller, first_day="2026-03-01", last_day="2026-03-02", key_id=None, model=None) != []
    assert {
        row["keyId"]
        for row in history.daily_usage(b.caller, first_day="2026-03-01", last_day="2026-03-02", key_id=None, model=None)
    } == {b.keys[0].key_id}
    # And a cursor of A's list is refused to B
    page = history.list_requests(a.caller, key_id=None, model=None, since=None, until=None, limit=2, cursor=None)
    assert page.cursor is not None
    with pytest.raises(BadRequest):
        history.list_requests(
            b.caller, key_id=None, model=None, since=None, until=None, limit=2, cursor=encode_cursor(page.cursor)
        )


def test_daily_usage_sums_every_shard_to_the_logs_totals(tables) -> None:
    # Given a key that wrote 10 requests unsharded, then 40 on 16 shards, across a UTC day boundary
    tenant = Tenant()
    records = [tenant.settle_log(n, model="m/a" if n % 2 else "m/b") for n in range(10)]
    history.shard_history(tenant.id, tenant.keys[0].key_id)
    records += [tenant.settle_log(n * 7, model="m/a" if n % 2 else "m/b", shards=16) for n in range(10, 50)]
    # (the counters really are spread over the plain pk and several shards)
    counters = [from_item(i) for i in client().scan(TableName=tables["UsageCountersTable"])["Items"]]
    pks = {c["pk"] for c in counters if c["pk"].startswith(f"daily#{tenant.id}")}
    assert f"daily#{tenant.id}" in pks and len(pks) > 8
    # When the daily usage is read
    rows = history.daily_usage(tenant.caller, first_day="2026-03-01", last_day="2026-03-02", key_id=None, model=None)
    # Then one row per day x key x model, each the exact sum of the log
    expected: dict[tuple[str, str, str], list[int]] = {}
    for r in records:
        row = expected.setdefault((r["createdAt"][:10], r["keyId"], r["model"]), [0, 0, 0, 0])
        for i, value in enumerate((1, r["promptTokens"], r["completionTokens"], r["costMicros"])):
            row[i] += value
    assert {
        (row["date"], row["keyId"], row["model"]): [
            row["requests"],
            row["promptTokens"],
            row["completionTokens"],
            row["spendMicros"],
        ]
        for row in rows
    } == expected
    assert len(rows) == len(expected) == 4


def test_the_reconciler_reads_all_64_reservation_shards() -> None:
    # Reservations put when there were 16 shards are on open#0..15: still among the 64 read.
    assert store.RESERVATION_SHARDS == 64
    shards = {store.reservation_shard(str(uuid.uuid4())) for _ in range(5000)}
    assert shards == {f"open#{n}" for n in range(64)}
