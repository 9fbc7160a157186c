"""Cursor pagination over DynamoDB queries: a page of records and an opaque cursor that is the last
returned record's key (base64url JSON), accepted back only for the partition it came from."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    cursor: dict[str, Any] | None  # the key after which the next page starts; None at the end


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, expected: dict[str, str]) -> dict[str, Any]:
    """A cursor of ``encode_cursor``, refused unless it points into the same partition (``expected``),
    so a cursor can never read another account's records."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise InvalidCursor(cursor) from error
    if not isinstance(position, dict) or not all(isinstance(v, str) and len(v) <= 300 for v in position.values()):
        raise InvalidCursor(cursor)
    if any(position.get(name) != value for name, value in expected.items()):
        raise InvalidCursor(cursor)
    return position
