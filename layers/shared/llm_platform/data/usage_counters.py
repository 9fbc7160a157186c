"""UsageCounters table (pk ``pk``, sk ``sk``, TTL ``expiresAt``): the atomic counters of the proxy.

- ``key#<keyId>`` / ``minute#<epochMinute>``: requests and tokens of one key in one minute (RPM/TPM).
- ``sub#<subscriptionId>`` / ``window#<n>``: spend, requests and tokens of a subscription's n-th
  5-hour budget window, anchored at the subscription's start.
- ``key#<keyId>`` / ``budget#<reset>#<YYYYMMDD>``: a credit key's spend in one calendar period of its
  ``budgetReset`` (the period's first day), checked against ``maxBudget`` at admission.
- ``daily#<accountId>`` / ``<YYYY-MM-DD>#<keyId>#<model>``: requests, tokens and spend of one key and
  model on one UTC day, added in the settle transaction with the request's log record (never expire);
  a hot account's are spread over ``daily#<accountId>#<n>`` (log shards, ``data.log_shards``).
Admission increments these with conditional updates inside one transaction; items expire by TTL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import log_shards
from llm_platform.data.dynamo import client, from_item, query_all, to_values

CounterId = tuple[str, str]  # (pk, sk)


def minute_counter(key_id: str, epoch_minute: int) -> CounterId:
    return f"key#{key_id}", f"minute#{epoch_minute}"


def window_counter(subscription_id: str, window_index: int) -> CounterId:
    return f"sub#{subscription_id}", f"window#{window_index}"


def budget_period_counter(key_id: str, reset: str, period_index: int) -> CounterId:
    return f"key#{key_id}", f"budget#{reset}#{period_index}"


def daily_counter(account_id: str, day: str, key_id: str, model: str) -> CounterId:
    return f"daily#{account_id}", f"{day}#{key_id}#{model}"


def as_key(counter: CounterId) -> dict[str, Any]:
    return {"pk": {"S": counter[0]}, "sk": {"S": counter[1]}}


def get_many(counters: list[CounterId]) -> dict[CounterId, dict[str, Any]]:
    """Counter items by id; absent counters are simply missing (zero)."""
    table = get_settings().usage_counters_table
    found: dict[CounterId, dict[str, Any]] = {}
    unique = list(dict.fromkeys(counters))
    for start in range(0, len(unique), 100):
        request: dict[str, Any] = {
            table: {"Keys": [as_key(c) for c in unique[start : start + 100]], "ConsistentRead": True}
        }
        while request:
            response = client().batch_get_item(RequestItems=request)
            for item in response["Responses"].get(table, []):
                record = from_item(item)
                found[(record["pk"], record["sk"])] = record
            request = response.get("UnprocessedKeys") or {}
    return found


_DAILY_SUMS = ("requests", "promptTokens", "completionTokens", "spendMicros")


def daily_between(account_id: str, first_day: str, last_day: str, shards: int = 0) -> list[dict[str, Any]]:
    """The account's daily counters from ``first_day`` to ``last_day`` (YYYY-MM-DD, both included), one per
    day x key x model: a hot key's shards (``<day>#<key>#<model>#<shard>``, see ``data.leases``) and the
    account's ``shards`` log shards (one query each, in parallel) summed."""

    def query(pk: str) -> list[dict[str, Any]]:
        return query_all(
            TableName=get_settings().usage_counters_table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=to_values({":pk": pk, ":first": first_day, ":last": last_day + "#\uffff"}),
            ConsistentRead=True,
        )

    partitions = log_shards.partitions(f"daily#{account_id}", shards)
    if len(partitions) == 1:
        rows = query(partitions[0])
    else:
        with ThreadPoolExecutor(max_workers=min(len(partitions), 16)) as pool:
            rows = [row for found in pool.map(query, partitions) for row in found]
    summed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        counter = (str(row["date"]), str(row["keyId"]), str(row["model"]))
        if counter not in summed:
            summed[counter] = {**row, "sk": f"{counter[0]}#{counter[1]}#{counter[2]}"}
        else:
            for name in _DAILY_SUMS:
                summed[counter][name] = summed[counter].get(name, 0) + row.get(name, 0)
    return list(summed.values())
