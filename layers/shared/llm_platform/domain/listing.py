"""Pages of the account's lists (keys, management keys, wallets, usage): ``limit`` items after an opaque
cursor. The cursor names the account and the list it came from, so it is refused anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from llm_platform.data.pages import InvalidCursor, decode_cursor, encode_cursor
from llm_platform.domain.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 100  # what a client that does not page sees: every key up to the first 100
MAX_LIMIT = 100


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    cursor: str | None  # where the next page starts; None at the end


def after(account_id: str, list_name: str, cursor: str | None) -> str | None:
    """The position a cursor of this account's ``list_name`` points after; 400 ``invalid_cursor`` otherwise."""
    if cursor is None:
        return None
    try:
        position = decode_cursor(cursor, {"accountId": account_id, "list": list_name})
    except InvalidCursor as error:
        raise BadRequest("The cursor is not one this list returned.", code="invalid_cursor") from error
    if not isinstance(position.get("after"), str):
        raise BadRequest("The cursor is not one this list returned.", code="invalid_cursor")
    return position["after"]


def cursor(account_id: str, list_name: str, next_after: str | None) -> str | None:
    if next_after is None:
        return None
    return encode_cursor({"accountId": account_id, "list": list_name, "after": next_after})
