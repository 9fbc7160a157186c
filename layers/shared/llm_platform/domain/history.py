"""What happened, for customers who bill from it: the request log (one record per admitted ``/v1``
request), daily usage per UTC day × key × model (counters kept in the proxy's settle transaction, so
their sums equal the log's), and the ledger of every credit-balance change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.data import accounts as accounts_table
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import ledger as ledger_table
from llm_platform.data import request_log, usage_counters
from llm_platform.data.log_shards import DEFAULT_LOG_SHARDS, MAX_LOG_SHARDS
from llm_platform.data.pages import InvalidCursor, Page, decode_cursor
from llm_platform.domain.accounts import Caller
from llm_platform.domain.credentials import is_id
from llm_platform.domain.errors import BadRequest, NotFound

MAX_DAILY_RANGE_DAYS = 366
DEFAULT_DAILY_RANGE_DAYS = 30


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime | None  # included
    until: datetime | None  # excluded


def moment(value: str, *, end_of_day: bool) -> datetime:
    """An ISO 8601 time (with an offset, or ``Z``) or a date; a date as the end of a range means the
    whole day (its next midnight, excluded)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise BadRequest(f"'{value}' is not an ISO 8601 date or time.", code="invalid_time") from error
    if parsed.tzinfo is None:
        raise BadRequest(f"'{value}' has no time zone: end it with Z.", code="invalid_time")
    return parsed


def _cursor(cursor: str | None, partition: dict[str, str]) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor, partition)
    except InvalidCursor as error:
        raise BadRequest("The cursor is not one this list returned.", code="invalid_cursor") from error


def list_requests(
    caller: Caller,
    *,
    key_id: str | None,
    model: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    model = model or None  # an empty filter is no filter
    start = moment(since, end_of_day=False) if since else None
    end = moment(until, end_of_day=True) if until else None
    if start and end and start >= end:
        raise BadRequest("'from' must be before 'to'.", code="invalid_time_range")
    if key_id:
        key = api_keys_table.find_for_account(caller.account_id, key_id) if is_id(key_id, "key") else None
        if key is None:
            raise NotFound(f"Key {key_id} not found.")
        index, partition, shards = "byKey", {"keyId": key_id}, key.log_shards or 0
    else:
        index, partition, shards = "byAccount", {"accountId": caller.account_id}, _account_log_shards(caller)
    position = _cursor(cursor, partition)
    if position is not None and "sortKey" not in position:
        raise BadRequest("The cursor is not one this list returned.", code="invalid_cursor")
    return request_log.query_newest_first(
        index=index,
        partition=next(iter(partition.values())),
        since=to_iso(start) if start else None,
        until=to_iso(end) if end else None,
        account_id=caller.account_id,
        model=model,
        limit=limit,
        start=position,
        shards=shards,
    )


def _account_log_shards(caller: Caller) -> int:
    """How many log shards the account's lists cover (0: its records are all on the plain partitions)."""
    account = accounts_table.get(caller.account_id)
    return (account.log_shards or 0) if account is not None else 0


def shard_history(
    account_id: str, key_id: str, shards: int = DEFAULT_LOG_SHARDS, *, key_hash: str | None = None
) -> int:
    """Spread the key's per-request partitions (its log records' ``byAccount``/``byKey`` index partitions and
    the account's day counters) over ``shards`` log shards (at most ``MAX_LOG_SHARDS``), for a key too hot
    for one partition. Never lowers or clears them: readers must keep finding the old shards. The account
    first, then the key, so the account's readers cover every shard before the key writes on it. Proxies
    use it from their next read of the key. ``key_hash`` (the key item's, e.g. a proxy's snapshot's) saves
    looking the id up: two UpdateItems then. The key's log shards afterwards; 404 for another account's key
    (with ``key_hash``, the caller's own account may then have been raised: harmless, its lists read more)."""
    if shards < 1:
        raise ValueError(f"log shards must be at least 1, not {shards}")
    shards = min(shards, MAX_LOG_SHARDS)
    if key_hash is None:
        key = api_keys_table.find_for_account(account_id, key_id) if is_id(key_id, "key") else None
        key_hash = key.key_hash if key is not None else None
    if key_hash is None or accounts_table.raise_log_shards(account_id, shards) is None:
        raise NotFound(f"Key {key_id} not found.")
    raised = api_keys_table.raise_log_shards(key_hash, account_id, shards)
    if raised is None:
        raise NotFound(f"Key {key_id} not found.")
    return raised


def get_request(caller: Caller, request_id: str) -> dict[str, Any]:
    record = request_log.get(request_id) if _is_request_id(request_id) else None
    if record is None or record.get("accountId") != caller.account_id:
        raise NotFound(f"Request {request_id} not found.")
    return record


def _is_request_id(value: str) -> bool:
    return len(value) == 36 and all(c in "0123456789abcdef-" for c in value)


def daily_usage(
    caller: Caller, *, first_day: str | None, last_day: str | None, key_id: str | None, model: str | None
) -> list[dict[str, Any]]:
    today = utc_now().date()
    try:
        last = date.fromisoformat(last_day) if last_day else today
        first = date.fromisoformat(first_day) if first_day else last - timedelta(days=DEFAULT_DAILY_RANGE_DAYS - 1)
    except ValueError as error:
        raise BadRequest("'from' and 'to' are dates: YYYY-MM-DD.", code="invalid_date") from error
    if first > last:
        raise BadRequest("'from' must not be after 'to'.", code="invalid_date_range")
    if (last - first).days + 1 > MAX_DAILY_RANGE_DAYS:
        raise BadRequest(f"Ask for at most {MAX_DAILY_RANGE_DAYS} days at a time.", code="date_range_too_long")
    rows = usage_counters.daily_between(
        caller.account_id, first.isoformat(), last.isoformat(), _account_log_shards(caller)
    )
    return [
        row for row in rows if (not key_id or row.get("keyId") == key_id) and (not model or row.get("model") == model)
    ]


def ledger(caller: Caller, *, limit: int, cursor: str | None) -> Page:
    partition = {"accountId": caller.account_id}
    return ledger_table.newest_first(caller.account_id, limit, _cursor(cursor, partition))
