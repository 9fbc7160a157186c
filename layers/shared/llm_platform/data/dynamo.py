"""The one place that creates the DynamoDB client. Created on first use (no import-time I/O) and
cached for the life of the Lambda container; plain dicts in, plain dicts out (ints, not Decimals)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from functools import cache
from typing import Any, cast, overload

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from llm_platform.config import get_settings

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
# Set by the proxy around its admission and settle: their transactions then skip botocore's layers
# (data/dynamo_wire.py). Everything else, and every test on moto, goes through boto3.
_hot_path: ContextVar[bool] = ContextVar("dynamodb_hot_path", default=False)


@contextmanager
def hot_path() -> Iterator[None]:
    token = _hot_path.set(True)
    try:
        yield
    finally:
        _hot_path.reset(token)


# One call's attempts, timeouts and backoffs must end before the shortest function timeout (10 s) with this much
# left to answer in the error format; tests/unit/test_template_operations.py checks every function against it.
ANSWER_MARGIN_SECONDS = 2
_BACKOFF_CAP_SECONDS = 20  # botocore standard mode: up to min(20, 2**n) s, random, before the n-th retry


def client_config(local: bool = False) -> Config:
    """DynamoDB answers in milliseconds: 1 s to connect and 2 s to answer are generous, and a second attempt
    covers a dropped connection or a throttle. DynamoDB Local on a loaded test machine is far slower, and no
    function timeout applies there. A pool as large as the proxy's worker threads, so requests reuse connections."""
    if local:
        return Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=64,
        )
    return Config(
        retries={"mode": "standard", "total_max_attempts": 2},
        connect_timeout=1,
        read_timeout=2,
        max_pool_connections=64,
    )


def worst_case_call_seconds(config: Config | None = None) -> float:
    """The longest one call can take on AWS before it raises (this client's, or ``config``'s): every attempt timing
    out, and the longest backoff before each retry."""
    config = config or client_config()
    # botocore's Config sets its options as attributes at run time: the stubs cannot name them.
    options: Any = config
    attempts = options.retries["total_max_attempts"]
    backoff = sum(min(_BACKOFF_CAP_SECONDS, 2**n) for n in range(attempts - 1))
    return attempts * (options.connect_timeout + options.read_timeout) + backoff


@cache
def client() -> Any:
    settings = get_settings()
    return boto3.client(
        "dynamodb",
        endpoint_url=settings.dynamodb_endpoint_url,
        config=client_config(local=settings.dynamodb_endpoint_url is not None),
    )


# A number DynamoDB holds exactly: boto3 refuses (Inexact) an int of more than 38 digits.
_MAX_NUMBER = 10**38


def to_attribute(value: Any) -> dict[str, Any]:
    """``TypeSerializer().serialize(value)``, the same output, with the exact types the tables hold (str, int,
    bool, None, dict, list) done here: boto3's dispatch spends ~2 us per value in type checks, and a proxied
    request serialises ~50 values. Any other type (Decimal, float, sets, bytes, subclasses) goes to boto3."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int:
        if -_MAX_NUMBER < value < _MAX_NUMBER:
            return {"N": str(value)}
    elif kind is bool:
        return {"BOOL": value}
    elif kind is dict:
        return {"M": {name: to_attribute(item) for name, item in value.items()}}
    elif kind is list:
        return {"L": [to_attribute(item) for item in value]}
    elif value is None:
        return {"NULL": True}
    return cast(dict[str, Any], _serializer.serialize(value))


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    """Serialize a record, leaving out ``None`` values (absent attributes keep sparse indexes sparse)."""
    return {name: to_attribute(value) for name, value in record.items() if value is not None}


def to_values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: to_attribute(value) for name, value in values.items()}


@overload
def from_item(item: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def from_item(item: Mapping[str, Any] | None) -> dict[str, Any] | None: ...
def from_item(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def query_all(**kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a Query, deserialized."""
    items: list[dict[str, Any]] = []
    paginator = client().get_paginator("query")
    for page in paginator.paginate(**kwargs):
        items.extend(from_item(item) for item in page["Items"])
    return items


def query_index_page(
    table: str,
    index: str,
    partition: tuple[str, str],
    sort_key: str,
    after: str | None,
    limit: int,
    keep: Callable[[dict[str, Any]], bool] | None = None,
    max_read: int = 1000,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` items of a GSI partition in sort-key order, after the sort-key value ``after``, that
    ``keep`` accepts; and the sort-key value to continue after (None: no more). Bounded work: at most
    ``max_read`` items are read, so a page of filtered items may come back short with a cursor."""
    names, values = {"#pk": partition[0]}, {":pk": partition[1]}
    condition = "#pk = :pk"
    if after is not None:
        condition += " AND #sk > :after"
        names["#sk"], values[":after"] = sort_key, after
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_values(values),
    }
    kept: list[dict[str, Any]] = []
    read, last = 0, after
    while True:
        response = client().query(**request, Limit=min(limit + 1, max_read - read))
        for raw in response["Items"]:
            item = from_item(raw)
            if keep is None or keep(item):
                if len(kept) == limit:  # one more than asked exists: the next page starts after the last kept
                    return kept, kept[-1][sort_key]
                kept.append(item)
            read, last = read + 1, item[sort_key]
        if "LastEvaluatedKey" not in response:
            return kept, None
        if read >= max_read:
            return kept, last
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class WriteRefused(Exception):
    """A conditional write found the state changed underneath it (revoked key, inactive subscription,
    balance too low). ``reasons`` holds one code per transaction item (``"None"`` where it passed) and
    ``items`` the item as it was where the item asked for ``ReturnValuesOnConditionCheckFailure``."""

    def __init__(self, reasons: list[str], items: list[dict[str, Any] | None] | None = None) -> None:
        super().__init__(f"conditional write refused: {reasons}")
        self.reasons = reasons
        self.items = items or [None] * len(reasons)


_CONFLICT_ATTEMPTS = 8


def _cancellation_reasons(error: ClientError) -> list[str] | None:
    """The per-item reasons of a cancelled transaction; None for any other error."""
    if error.response["Error"]["Code"] != "TransactionCanceledException":
        return None
    return [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]


def gave_up_on_conflicts(error: BaseException) -> bool:
    """True for the error ``transact`` raises when every attempt collided with other transactions (the key,
    subscription or account is hot: the proxy promotes such a key to key shards as when a retry succeeds)."""
    reasons = _cancellation_reasons(error) if isinstance(error, ClientError) else None
    return (
        reasons is not None and "TransactionConflict" in reasons and not set(reasons) - {"None", "TransactionConflict"}
    )


def transact(items: list[dict[str, Any]], **kwargs: Any) -> int:
    """One TransactWriteItems, retried while it only collided with another transaction on the same
    items (``TransactionConflict``: concurrent requests of one key, subscription or account). A failed
    condition becomes ``WriteRefused``; anything else is raised. Returns how many conflicts it retried
    (the proxy promotes a key that meets them to key shards, see ``domain.hot_keys``)."""
    write: Callable[..., object] = _boto3_transact
    if _hot_path.get():
        from llm_platform.data.dynamo_wire import transact_write_items as write
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            write(items, **kwargs)
            return attempt
        except ClientError as error:
            reasons = _cancellation_reasons(error)
            if reasons is None:
                raise
            if "ConditionalCheckFailed" in reasons:
                raw = error.response.get("CancellationReasons", [])
                raise WriteRefused(reasons, [from_item(reason.get("Item")) for reason in raw]) from error
            if not set(reasons) - {"None", "TransactionConflict"} and attempt < _CONFLICT_ATTEMPTS - 1:
                time.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter, not security
                continue
            raise
    raise AssertionError("unreachable")


def _boto3_transact(items: list[dict[str, Any]], **kwargs: Any) -> None:
    client().transact_write_items(TransactItems=items, **kwargs)


def query_index(
    table: str, index: str, partition: tuple[str, str], sort: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every item of a GSI partition (optionally one sort-key value): ``("accountId", id)``."""
    condition, names, values = "#pk = :pk", {"#pk": partition[0]}, {":pk": partition[1]}
    if sort is not None:
        condition += " AND #sk = :sk"
        names["#sk"], values[":sk"] = sort
    return query_all(
        TableName=table,
        IndexName=index,
        KeyConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_values(values),
    )


def update_if(**kwargs: Any) -> dict[str, Any] | None:
    """A conditional UpdateItem: the new attributes asked for (``{}`` if none) when it applied, None
    when its condition did not hold. Other errors are raised."""
    try:
        response = client().update_item(**kwargs)
    except ClientError as error:
        if is_condition_failure(error):
            return None
        raise
    return from_item(response.get("Attributes")) or {}


def is_condition_failure(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code == "ConditionalCheckFailedException"
