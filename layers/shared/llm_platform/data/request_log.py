"""RequestLog table (pk ``requestId``; TTL ``expiresAt``): one record per ``/v1`` request that was
admitted, put by the proxy's settle transaction (so it costs no extra round trip). GSIs ``byAccount``
(accountId, ``sortKey`` = createdAt#requestId) and ``byKey`` (keyId, sortKey) list it newest first."""

from __future__ import annotations

from typing import Any

from llm_platform.config import get_settings
from llm_platform.data.dynamo import client, from_item, to_item, to_values
from llm_platform.data.pages import Page


def _table() -> str:
    return get_settings().request_log_table


def record_put(record: dict[str, Any], expires_at: int) -> dict[str, Any]:
    """The transaction item writing one request's record (``record`` in the API's field names)."""
    return {
        "Put": {
            "TableName": _table(),
            "Item": to_item(
                {
                    **record,
                    "requestId": record["id"],
                    "id": None,
                    "sortKey": f"{record['createdAt']}#{record['id']}",
                    "expiresAt": expires_at,
                }
            ),
        }
    }


def get(request_id: str) -> dict[str, Any] | None:
    response = client().get_item(TableName=_table(), Key={"requestId": {"S": request_id}}, ConsistentRead=True)
    return from_item(response.get("Item"))


_INDEX_KEYS = {"byAccount": ("accountId", "sortKey", "requestId"), "byKey": ("keyId", "sortKey", "requestId")}


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
    max_pages: int = 10,
) -> Page:
    """Up to ``limit`` records of one index partition, newest first, created in [since, until).
    Filters (the account, the model) apply after the key condition, so a page may need several reads;
    at most ``max_pages`` reads are made, and the cursor then resumes where they stopped."""
    partition_name, sort_name, _ = _INDEX_KEYS[index]
    condition = "#pk = :pk"
    values: dict[str, Any] = {":pk": partition}
    if index == "byKey":
        values[":account"] = account_id
    if since is not None and until is not None:
        condition += " AND #sk BETWEEN :since AND :until"
        values.update({":since": since, ":until": until})
    elif since is not None:
        condition += " AND #sk >= :since"
        values[":since"] = since
    elif until is not None:
        condition += " AND #sk <= :until"
        values[":until"] = until
    # byKey: the key was checked to be the caller's, and the filter proves it again per record.
    filters = ["accountId = :account"] if index == "byKey" else []
    if model:
        filters.append("#model = :model")
        values[":model"] = model
    request: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": index,
        "KeyConditionExpression": condition,
        **({"FilterExpression": " AND ".join(filters)} if filters else {}),
        "ExpressionAttributeNames": {
            "#pk": partition_name,
            **({"#sk": sort_name} if since is not None or until is not None else {}),
            **({"#model": "model"} if model else {}),
        },
        "ExpressionAttributeValues": to_values(values),
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    if start is not None:
        request["ExclusiveStartKey"] = to_values(start)
    items: list[dict[str, Any]] = []
    for _ in range(max_pages):
        response = client().query(**request)
        items.extend(from_item(item) for item in response["Items"])
        last = response.get("LastEvaluatedKey")
        if len(items) > limit:
            items = items[:limit]
            return Page(items, _position(items[-1], index))
        if last is None:
            return Page(items, None)
        request["ExclusiveStartKey"] = last
    return Page(items, from_item(request["ExclusiveStartKey"]))


def _position(record: dict[str, Any], index: str) -> dict[str, Any]:
    """The index key of ``record``: a query resumes right after it."""
    return {name: record[name] for name in _INDEX_KEYS[index]}
