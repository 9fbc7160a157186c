"""API-key lookup for the proxy. A key's snapshot (account, kind, limits, expiry, subscription and its
budget) is cached per container, keyed by the presented secret's hash. Every admission transaction
proves the key is still active and still at the snapshot's ``version``; when a change (limits, expiry,
rotation) bumped it, the snapshot is dropped and read again, so changes apply to the very next request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from threading import Lock

from llm_platform.core.clock import from_iso
from llm_platform.core.entities import KeyKind, KeyStatus
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain.credentials import API_KEY_PREFIX, hash_secret

_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    key_hash: str  # the key item's hash (its first secret's), which admission writes to
    secret_hash: str  # the presented secret's hash (the cache's key)
    key_id: str
    account_id: str
    credit: bool
    rpm: int
    tpm: int
    max_budget_micros: int | None
    subscription_id: str | None
    budget_micros: int | None
    window_anchor: str | None  # the subscription's start: budget windows are anchored there
    version: int = 0
    log_shards: int = 0  # the key's log shards (data/log_shards.py): 0 unsharded
    budget_reset: str | None = None
    expires_at: datetime | None = None  # the key's own expiry
    secret_expires_at: datetime | None = None  # the presented secret's, once rotated away
    shards: int = 0  # key shards (issue 16, proxy/shards.py): >= 2 puts a credit key in shard mode

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def secret_retired(self, now: datetime) -> bool:
        return self.secret_expires_at is not None and self.secret_expires_at <= now


class KeyCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, KeySnapshot] = {}
        self._lock = Lock()

    def cached(self, token: str) -> KeySnapshot | None:
        """The snapshot if this instance has it (no I/O: safe on the event loop)."""
        if not token.startswith(API_KEY_PREFIX) or len(token) > 128:
            return None
        return self._snapshots.get(hash_secret(token))

    def lookup(self, token: str, fresh: bool = False) -> KeySnapshot | None:
        """The snapshot for a presented key, or None when it is not a live key: checked on a miss only,
        or read again whatever is cached when ``fresh``."""
        if not token.startswith(API_KEY_PREFIX) or len(token) > 128:
            return None
        secret_hash = hash_secret(token)
        snapshot = None if fresh else self._snapshots.get(secret_hash)
        if snapshot is not None:
            return snapshot
        return self.reload(secret_hash)

    def reload(self, secret_hash: str) -> KeySnapshot | None:
        """Read the key again (its version changed, or it was never seen) and cache what is read."""
        snapshot = _load(secret_hash)
        with self._lock:
            if snapshot is None:
                self._snapshots.pop(secret_hash, None)
                return None
            if len(self._snapshots) >= _MAX_CACHED:
                self._snapshots.clear()
            self._snapshots[secret_hash] = snapshot
        return snapshot

    def forget(self, secret_hash: str) -> None:
        with self._lock:
            self._snapshots.pop(secret_hash, None)


def _load(secret_hash: str) -> KeySnapshot | None:
    presented = api_keys_table.resolve_secret(secret_hash)
    if presented is None or presented.key.status != KeyStatus.ACTIVE:
        return None
    key = presented.key
    subscription = None
    if key.kind == KeyKind.SUBSCRIPTION:
        subscription = subscriptions_table.get(key.subscription_id) if key.subscription_id else None
        if subscription is None:
            return None
    return KeySnapshot(
        key_hash=key.key_hash,
        secret_hash=secret_hash,
        key_id=key.key_id,
        account_id=key.account_id,
        credit=key.kind == KeyKind.CREDIT,
        rpm=key.rpm,
        tpm=key.tpm,
        max_budget_micros=key.max_budget_micros,
        subscription_id=key.subscription_id,
        budget_micros=subscription.budget_per_window_micros if subscription else None,
        window_anchor=subscription.created_at if subscription else None,
        version=key.version,
        log_shards=key.log_shards or 0,
        budget_reset=key.budget_reset if key.kind == KeyKind.CREDIT else None,
        expires_at=from_iso(key.key_expires_at) if key.key_expires_at else None,
        secret_expires_at=from_iso(presented.secret_expires_at) if presented.secret_expires_at else None,
        shards=key.shards or 0,
    )
