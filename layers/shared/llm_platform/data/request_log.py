"""RequestLog table (pk ``requestId``; TTL ``expiresAt``): one record per ``/v1`` request that was
admitted, put by the proxy's settle transaction (so it costs no extra round trip). GSIs ``byAccount``
(accountId, ``sortKey`` = createdAt#requestId) and ``byKey`` (keyId, sortKey) list it newest first.

A hot account's records are spread over log shards (``data.log_shards``: the GSI partition values carry a
``#<n>`` suffix, stripped again on every read here). A list covers the plain partition and each shard,
merged newest first by ``sortKey``: it is unique (it ends with the request id), so a cursor that is a
record's sortKey resumes every partition at the same place, whatever the shards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import log_shards
from llm_platform.data.dynamo import client, from_item, to_item, to_values
from llm_platform.data.pages import Page


def _table() -> str:
    return get_settings().request_log_table


def record_put(record: dict[str, Any], expires_at: int, shard: int | None = None) -> dict[str, Any]:
    """The transaction item writing one request's record (``record`` in the API's field names), on its log
    shard when its key has them (``data.log_shards.shard_of``)."""
    stored = {
        **record,
        "requestId": record["id"],
        "id": None,
        "sortKey": f"{record['createdAt']}#{record['id']}",
        "expiresAt": expires_at,
    }
    return {"Put": {"TableName": _table(), "Item": to_item(log_shards.sharded_record(stored, shard))}}


def get(request_id: str) -> dict[str, Any] | None:
    response = client().get_item(TableName=_table(), Key={"requestId": {"S": request_id}}, ConsistentRead=True)
    record = from_item(response.get("Item"))
    return None if record is None else log_shards.restored(record)


_INDEX_KEYS = {"byAccount": ("accountId", "sortKey", "requestId"), "byKey": ("keyId", "sortKey", "requestId")}
_PARALLEL_QUERIES = 16


@dataclass
class _Partition:
    """One partition value of a list being read: where its reads stand."""

    request: dict[str, Any]
    skip: str | None  # a sortKey the key condition includes but the cursor already returned
    frontier: str | None = None  # the sortKey it has read down to; None before the first read
    done: bool = False
    read_to: dict[str, Any] | None = None  # its LastEvaluatedKey (as stored: shard suffix included)
    items: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> None:
        response = client().query(**self.request)
        for raw in response["Items"]:
            item = log_shards.restored(from_item(raw))
            if item["sortKey"] != self.skip:
                self.items.append(item)
        last = response.get("LastEvaluatedKey")
        if last is None:
            self.done = True
        else:
            self.read_to = from_item(last)
            self.frontier = self.read_to["sortKey"]
            self.request["ExclusiveStartKey"] = last


def query_newest_first(
    *,
    index: str,
    partition: str,
    since: str | None,
    until: str | None,
    account_id: str,
    model: str | None,
    limit: int,
    start: dict[str, Any] | None,
    shards: int = 0,
    max_pages: int = 10,
) -> Page:
    """Up to ``limit`` records of one index partition (and of its ``shards`` log shards), newest first,
    created in [since, until), after the cursor position ``start`` (a record's index key: only its sortKey
    is used). Filters (the account, the model) apply after the key condition, so a page may need several
    reads: each partition is read at most ``max_pages`` times (in parallel across partitions, only those
    that can still hold one of the page's records), and the cursor then resumes where the reads stopped.
    An unsharded partition costs what it did: one query for a page that fills."""
    partition_name, _, _ = _INDEX_KEYS[index]
    after = start["sortKey"] if start is not None else None
    upper = min(v for v in (until, after) if v is not None) if until is not None or after is not None else None
    if since is not None and upper is not None and upper <= since:
        return Page([], None)
    skip = after if since is not None and upper == after else None
    accounts = log_shards.partitions(account_id, shards)  # a shard's records carry the account's shard too
    readers = [
        _Partition(_request(index, value, since, upper, account, model, limit), skip)
        for value, account in zip(log_shards.partitions(partition, shards), accounts, strict=True)
    ]
    with ThreadPoolExecutor(max_workers=min(len(readers), _PARALLEL_QUERIES)) as pool:
        wanted = readers
        for _ in range(max_pages):
            if len(wanted) == 1:
                wanted[0].read()
            else:
                list(pool.map(_Partition.read, wanted))
            merged = sorted((item for r in readers for item in r.items), key=lambda i: i["sortKey"], reverse=True)
            reading = [r for r in readers if not r.done]
            # Every record above the highest frontier is known in every partition: those are in order.
            threshold = max((r.frontier or "" for r in reading), default=None)
            ready = merged if threshold is None else [i for i in merged if i["sortKey"] >= threshold]
            if len(ready) > limit:
                page = ready[:limit]
                return Page(page, _position(page[-1], index))
            if threshold is None:
                return Page(ready, None)
            # Only partitions that may hold a record ranking among the page's next one are read again.
            cut = merged[limit]["sortKey"] if len(merged) > limit else ""
            wanted = [r for r in reading if (r.frontier or "") > cut]
    stopped = max((r for r in readers if not r.done), key=lambda r: r.frontier or "")
    last = dict(stopped.read_to or {})
    last[partition_name] = partition  # resume every partition there (the cursor names the plain value)
    return Page(ready, {name: last[name] for name in _INDEX_KEYS[index]})


def _request(
    index: str, value: str, since: str | None, upper: str | None, account: str, model: str | None, limit: int
) -> dict[str, Any]:
    """One partition's query: newest first, sortKey in [since, upper] (``upper``: ``to`` or the cursor's
    sortKey; no record's sortKey equals a bare time, and the cursor's own record is skipped when read)."""
    partition_name, sort_name, _ = _INDEX_KEYS[index]
    condition = "#pk = :pk"
    values: dict[str, Any] = {":pk": value}
    if since is not None and upper is not None:
        condition += " AND #sk BETWEEN :since AND :upper"
        values.update({":since": since, ":upper": upper})
    elif since is not None:
        condition += " AND #sk >= :since"
        values[":since"] = since
    elif upper is not None:
        condition += " AND #sk < :upper"
        values[":upper"] = upper
    # byKey: the key was checked to be the caller's, and the filter proves it again per record (a shard's
    # records carry the account id with the same shard suffix).
    filters = ["accountId = :account"] if index == "byKey" else []
    if index == "byKey":
        values[":account"] = account
    if model:
        filters.append("#model = :model")
        values[":model"] = model
    return {
        "TableName": _table(),
        "IndexName": index,
        "KeyConditionExpression": condition,
        **({"FilterExpression": " AND ".join(filters)} if filters else {}),
        "ExpressionAttributeNames": {
            "#pk": partition_name,
            **({"#sk": sort_name} if since is not None or upper is not None else {}),
            **({"#model": "model"} if model else {}),
        },
        "ExpressionAttributeValues": to_values(values),
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }


def _position(record: dict[str, Any], index: str) -> dict[str, Any]:
    """The index key of ``record`` (real ids): a list resumes right after it."""
    return {name: record[name] for name in _INDEX_KEYS[index]}
