"""API-key lookup for the proxy. Only attributes that never change after creation (account, kind,
limits, subscription and its budget) are cached per container; whether the key is still active is
proved by every admission transaction, so a revoke or disable applies to the very next request."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Lock

from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain.credentials import API_KEY_PREFIX, hash_secret
from llm_platform.domain.entities import KeyKind, KeyStatus

_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    key_hash: str
    key_id: str
    account_id: str
    credit: bool
    rpm: int
    tpm: int
    max_budget_micros: int | None
    subscription_id: str | None
    budget_micros: int | None
    window_anchor: str | None  # the subscription's start: budget windows are anchored there


class KeyCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, KeySnapshot] = {}
        self._lock = Lock()

    def cached(self, token: str) -> KeySnapshot | None:
        """The snapshot if this instance has it (no I/O: safe on the event loop)."""
        if not token.startswith(API_KEY_PREFIX) or len(token) > 128:
            return None
        return self._snapshots.get(hash_secret(token))

    def lookup(self, token: str) -> KeySnapshot | None:
        """The snapshot for a presented key, or None when it is not a live key (checked on a miss only)."""
        if not token.startswith(API_KEY_PREFIX) or len(token) > 128:
            return None
        key_hash = hash_secret(token)
        snapshot = self._snapshots.get(key_hash)
        if snapshot is not None:
            return snapshot
        snapshot = _load(key_hash)
        if snapshot is not None:
            with self._lock:
                if len(self._snapshots) >= _MAX_CACHED:
                    self._snapshots.clear()
                self._snapshots[key_hash] = snapshot
        return snapshot

    def forget(self, key_hash: str) -> None:
        with self._lock:
            self._snapshots.pop(key_hash, None)


def _load(key_hash: str) -> KeySnapshot | None:
    key = api_keys_table.get_by_hash(key_hash)
    if key is None or key.status != KeyStatus.ACTIVE:
        return None
    subscription = None
    if key.kind == KeyKind.SUBSCRIPTION:
        subscription = subscriptions_table.get(key.subscription_id)
        if subscription is None:
            return None
    return KeySnapshot(
        key_hash=key.key_hash,
        key_id=key.key_id,
        account_id=key.account_id,
        credit=key.kind == KeyKind.CREDIT,
        rpm=key.rpm,
        tpm=key.tpm,
        max_budget_micros=key.max_budget_micros,
        subscription_id=key.subscription_id,
        budget_micros=subscription.budget_per_window_micros if subscription else None,
        window_anchor=subscription.created_at if subscription else None,
    )
