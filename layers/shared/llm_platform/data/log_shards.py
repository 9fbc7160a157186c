"""Log shards of a hot account (issue 16, K9): its per-request partitions spread over L partition values.

Every settle writes one RequestLog record (GSIs ``byAccount``: accountId, ``byKey``: keyId) and adds to one
day counter (UsageCounters pk ``daily#<accountId>``). At a few thousand requests per second from one account
each of those partition values takes more writes than one DynamoDB partition serves (~1,000 WCU/s).

An account or key item with ``logShards`` = L (absent: unsharded, as before) spreads them. A request of a
key whose item has L writes on shard n = crc32(requestId) % L (stable: a retried settle writes the same
shard) by suffixing the partition *values*, not the schema:

- its log record's ``accountId`` is ``<accountId>#<n>`` and ``keyId`` is ``<keyId>#<n>`` (the GSI key
  attributes), with ``logShard`` = n; the data layer strips the suffix on every read, so callers only ever
  see the real ids (``restored``). Ids never contain ``#``, so ``<A>#<n>`` can never be another account's id;
- its day counter's pk is ``daily#<accountId>#<n>`` (the sort key and its attributes are unchanged).

No table, index or existing record changes: records written before sharding stay on the plain values, and
a reader covers the plain value plus the L shards (``partitions``): L + 1 queries per read. So L is only
ever raised (never lowered or removed), and the account's L is raised before its key's: the account's
readers (``byAccount``, daily) always cover every shard a key of it writes, and the key's (``byKey``) too."""

from __future__ import annotations

import zlib
from typing import Any

from llm_platform.data.dynamo import client, from_item, to_values, update_if

DEFAULT_LOG_SHARDS = 16  # 16 x ~1,000 writes/s per partition: far above what one account sends
MAX_LOG_SHARDS = 64  # a reader makes L + 1 queries: this bounds them


def shard_of(request_id: str, shards: int) -> int | None:
    """The request's shard when its key has ``shards`` (L) log shards; None when it has none."""
    if shards <= 0:
        return None
    return zlib.crc32(request_id.encode()) % min(shards, MAX_LOG_SHARDS)


def suffixed(value: str, shard: int | None) -> str:
    return value if shard is None else f"{value}#{shard}"


def partitions(value: str, shards: int) -> list[str]:
    """Every partition value a reader of ``value`` covers: the plain one (and records from before sharding),
    then one per shard."""
    return [value] + [suffixed(value, n) for n in range(min(max(shards, 0), MAX_LOG_SHARDS))]


def counter_on_shard(counter: tuple[str, str], shard: int | None) -> tuple[str, str]:
    """A day counter on the request's shard: its pk suffixed."""
    return suffixed(counter[0], shard), counter[1]


def sharded_record(record: dict[str, Any], shard: int | None) -> dict[str, Any]:
    """A log record (stored attribute names) as written on ``shard``: its GSI partition values suffixed."""
    if shard is None:
        return record
    return {
        **record,
        "accountId": suffixed(record["accountId"], shard),
        "keyId": suffixed(record["keyId"], shard),
        "logShard": shard,
    }


def restored(record: dict[str, Any]) -> dict[str, Any]:
    """A stored log record with its real ids (the inverse of ``sharded_record``)."""
    shard = record.get("logShard")
    if shard is None:
        return record
    suffix = f"#{shard}"
    plain = {name: value for name, value in record.items() if name != "logShard"}
    for name in ("accountId", "keyId"):
        value = plain.get(name)
        if isinstance(value, str) and value.endswith(suffix):
            plain[name] = value[: -len(suffix)]
    return plain


def raise_log_shards(table: str, key: dict[str, str], shards: int, *, account_id: str | None = None) -> int | None:
    """Set ``logShards`` = ``shards`` on the item ``key`` of ``table`` unless it already has as many or more
    (never lowered). With ``account_id`` only if the item is that account's. The item's L afterwards; None
    when there is no such item."""
    ((name, value),) = key.items()
    condition = "attribute_exists(#pk) AND (attribute_not_exists(logShards) OR logShards < :shards)"
    values: dict[str, Any] = {":shards": shards}
    if account_id is not None:
        condition += " AND accountId = :account"
        values[":account"] = account_id
    updated = update_if(
        TableName=table,
        Key={name: {"S": value}},
        UpdateExpression="SET logShards = :shards",
        ConditionExpression=condition,
        ExpressionAttributeNames={"#pk": name},
        ExpressionAttributeValues=to_values(values),
        ReturnValues="UPDATED_NEW",
    )
    if updated is not None:
        return shards
    item = from_item(client().get_item(TableName=table, Key={name: {"S": value}}, ConsistentRead=True).get("Item"))
    if item is None or (account_id is not None and item.get("accountId") != account_id):
        return None
    return int(item.get("logShards", 0))
