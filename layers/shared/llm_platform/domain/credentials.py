"""Secrets (management keys ``mk_…``, API keys ``sk_live_…``) and random ids.

A secret has 256 bits from ``secrets``; only its SHA-256 hex digest and a short display prefix are
stored. The plaintext exists once, in the creation response."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

MANAGEMENT_KEY_PREFIX = "mk_"
API_KEY_PREFIX = "sk_live_"
_DISPLAY_CHARS = 6  # random characters kept after the type prefix, for humans to tell keys apart


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    plaintext: str
    key_hash: str
    display_prefix: str

    def __repr__(self) -> str:  # never let a plaintext key reach a log line by accident
        return f"IssuedSecret(display_prefix={self.display_prefix!r})"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case), or None when the
    header is absent, names another scheme or carries no token: the one parser of the management API and
    the proxy, which each refuse None in their own error format."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_secret(type_prefix: str) -> IssuedSecret:
    plaintext = type_prefix + secrets.token_urlsafe(32)
    return IssuedSecret(
        plaintext=plaintext,
        key_hash=hash_secret(plaintext),
        display_prefix=plaintext[: len(type_prefix) + _DISPLAY_CHARS],
    )


_ID_PATTERN = re.compile(r"[a-z]{2,8}_[0-9a-f]{32}")


def is_id(value: str, kind: str) -> bool:
    """Whether ``value`` has the shape of an id from ``new_id(kind)``; anything else cannot exist (and
    must not reach DynamoDB, which rejects over-long key values with a 500-worthy error)."""
    return value.startswith(f"{kind}_") and _ID_PATTERN.fullmatch(value) is not None


def new_id(kind: str) -> str:
    """``key_…``, ``sub_…``, ``acct_…``: 128 random bits, unguessable."""
    return f"{kind}_{secrets.token_hex(16)}"
