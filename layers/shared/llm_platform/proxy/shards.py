"""This environment's side of key shards (issue 16; the DynamoDB side is ``data.shards``): which requests are
admitted on a shard, which shard, how big a slice a refill takes, and what this environment last saw of each
shard (to skip an admission the shard would refuse). Nothing here is needed for exactness: every limit is a
condition on the shard item (admit) or on the central items (refill).

A credit key is served from shards when its item has ``shards`` >= 2 (a promoted key, ``domain.hot_keys``),
it has no budget reset, and a shard's share of its RPM (rpm // S) is at least 2 requests and its share of TPM
covers the request. Each request picks a shard at random: one transaction on it admits the request (one round
trip); a refused admission returns the shard's state, and the request refills the shard (one transaction on
the central items carrying the request: the second round trip). A refill refused for room sends the request
the direct path (exact: admitted if one request still fits, else the usual 429/402)."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import metering as store
from llm_platform.data import shards as shard_store
from llm_platform.proxy.keys import KeySnapshot


@dataclass(frozen=True, slots=True)
class ShardPolicy:
    enabled: bool = True
    horizon_seconds: float = 10.0  # a refill covers about this long at the shard's observed rate
    min_slice: int = 2  # requests per refill at least (a slice of one is a direct admission, dearer)
    growth: int = 4  # a slice is at most this many times the shard's previous one (a ramp, not a jump)

    @classmethod
    def from_settings(cls) -> ShardPolicy:
        """``KEY_SHARDS_ENABLED`` (true)."""
        return cls(enabled=get_settings().key_shards_enabled)


@dataclass(frozen=True, slots=True)
class ShardAdmission:
    """A request admitted on a shard (``shard``: its partition key), by an admission on it or by a refill."""

    shard: str
    refilled_micros: int = 0  # the refill's slice m (taken from the balance, added to the key's spend)
    refilled_requests: int = 0  # n
    synced: shard_store.Sync | None = None  # what the refill moved off the shard to the ledger and key totals
    conflicts: int = 0  # TransactionConflict retries met on the shard (a hint to double S)


class ShardOutdated(Exception):
    """The shard was refilled at a newer key version than this environment's snapshot: read the key again."""


class KeyShards:
    """One environment's key shards: its per-key slice divisor (doubled after a refill refused for room,
    halved after one granted) and the state it last saw of each shard."""

    def __init__(self, policy: ShardPolicy | None = None, choose: Callable[[int], int] | None = None) -> None:
        self._policy = policy
        self._choose = choose or random.randrange
        self._seen: dict[str, dict[str, Any]] = {}  # shard -> its state as last seen (refused admission, refill)
        self._shrink: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def policy(self) -> ShardPolicy:
        if self._policy is None:
            self._policy = ShardPolicy.from_settings()
        return self._policy

    def serves(self, key: KeySnapshot, reserve_tokens: int) -> bool:
        """Whether this request of the key is admitted on a shard (else the direct path)."""
        shards = key.shards
        return (
            self.policy.enabled
            and key.credit
            and shards >= 2
            and key.budget_reset is None
            and key.rpm // shards >= self.policy.min_slice
            and key.tpm // shards >= reserve_tokens
        )

    def admit(self, key: KeySnapshot, plan: store.AdmitPlan, minute: int, now: datetime) -> ShardAdmission | None:
        """Admit on a random shard of the key, refilling it if it cannot serve. None: the direct path.
        Raises ``ShardOutdated`` (read the key again) or ``store.AdmissionRefused`` (the key's own refusal)."""
        if plan.reservation is None:
            return None
        shard = shard_store.shard_key(key.key_id, self._choose(key.shards))
        now_ms = int(now.timestamp() * 1000)
        with self._lock:
            seen = self._seen.get(shard)
        fresh = False
        if seen is None or self._may_serve(seen, key, plan, minute):
            try:
                conflicts = shard_store.admit(
                    shard,
                    version=key.version,
                    minute=minute,
                    reserve_micros=plan.reserve_micros,
                    reserve_tokens=plan.reserve_tokens,
                    reservation=plan.reservation,
                    now_ms=now_ms,
                )
            except shard_store.ShardRefused as refused:
                seen, fresh = refused.item or {}, True
                self._remember(shard, seen)
                if int(seen.get("version", 0)) > key.version:
                    raise ShardOutdated from refused
            else:
                self._admitted(shard, plan)
                return ShardAdmission(shard, conflicts=conflicts)
        return self._refill(key, plan, shard, seen or {}, fresh, minute, now_ms)

    def _may_serve(self, seen: dict[str, Any], key: KeySnapshot, plan: store.AdmitPlan, minute: int) -> bool:
        """False only when what was last seen of the shard, in this minute, says it has too little left."""
        if seen.get("minute") != minute or seen.get("status") != "active" or seen.get("version") != key.version:
            return True
        return (
            seen.get("requestsLeft", 0) >= 1
            and seen.get("tokensLeft", 0) >= plan.reserve_tokens
            and seen.get("available", 0) >= plan.reserve_micros
        )

    def _remember(self, shard: str, state: dict[str, Any]) -> None:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[shard] = state

    def _admitted(self, shard: str, plan: store.AdmitPlan) -> None:
        with self._lock:
            seen = self._seen.get(shard)
            if seen is not None:
                seen["requestsLeft"] = seen.get("requestsLeft", 0) - 1
                seen["tokensLeft"] = seen.get("tokensLeft", 0) - plan.reserve_tokens
                seen["available"] = seen.get("available", 0) - plan.reserve_micros

    def slice(self, key: KeySnapshot, plan: store.AdmitPlan, seen: dict[str, Any], now_ms: int) -> tuple[int, int]:
        """(n, t) of a refill: the shard's observed rate (what its last slice served, over the time since it
        was refilled) x the horizon, at least ``min_slice``, at most ``growth`` x the last slice and 1/S of
        the key's RPM and TPM; divided by this environment's divisor after refused refills. (0, 0): none."""
        policy = self.policy
        previous = int(seen.get("slice", 0))
        if previous and seen.get("refilledAt") is not None:
            used = max(1, previous - max(0, int(seen.get("requestsLeft", 0))))
            elapsed = max(0.05, (now_ms - int(seen["refilledAt"])) / 1000)
            wanted = min(math.ceil(used * policy.horizon_seconds / elapsed), policy.growth * previous)
        else:
            wanted = policy.min_slice
        divisor = self._shrink.get(key.key_hash, 1)
        requests = min(max(policy.min_slice, math.ceil(wanted / divisor)), key.rpm // key.shards)
        tokens = min(requests * plan.reserve_tokens, key.tpm // key.shards)
        if requests < policy.min_slice or tokens < plan.reserve_tokens:
            return 0, 0
        return requests, tokens

    def _refill(
        self,
        key: KeySnapshot,
        plan: store.AdmitPlan,
        shard: str,
        seen: dict[str, Any],
        fresh: bool,
        minute: int,
        now_ms: int,
    ) -> ShardAdmission | None:
        requests, tokens = self.slice(key, plan, seen, now_ms)
        if not requests:
            return None
        micros = requests * plan.reserve_micros
        for attempt in range(2):
            # Sync only what a read in this request saw (a remembered state may be older than a sync since).
            sync = shard_store.Sync.of(seen) if fresh else shard_store.Sync()
            new_minute = seen.get("minute") is None or int(seen["minute"]) < minute
            refill = shard_store.RefillPlan(
                admit=plan,
                shard=shard,
                minute=minute,
                requests=requests,
                tokens=tokens,
                micros=micros,
                new_minute=new_minute,
                sync=sync,
                now_ms=now_ms,
                shards=key.shards,
            )
            try:
                shard_store.refill(refill)
            except store.AdmissionRefused as refused:
                item = refused.refusal.item or {}
                if refused.refusal.check == "shard":
                    if attempt == 0:  # changed since read (another minute, a refill or sync): once more, as it is
                        seen, fresh = item, True
                        self._remember(shard, seen)
                        continue
                    return None
                if refused.refusal.check == "key" and (
                    item.get("status") != "active" or item.get("version", 0) != key.version
                ):
                    raise  # revoked, disabled or changed: as on the direct path
                # No room centrally for the slice: this request goes the direct path, the next slice is smaller.
                with self._lock:
                    self._shrink[key.key_hash] = min(64, self._shrink.get(key.key_hash, 1) * 2)
                return None
            with self._lock:
                self._shrink[key.key_hash] = max(1, self._shrink.get(key.key_hash, 1) // 2)
            self._remember(shard, _after_refill(seen, refill))
            return ShardAdmission(shard, refilled_micros=micros, refilled_requests=requests, synced=sync)
        return None


def _after_refill(seen: dict[str, Any], plan: shard_store.RefillPlan) -> dict[str, Any]:
    """The shard as this refill left it, as far as this environment knows."""
    admit = plan.admit
    state = dict(seen) if not plan.new_minute else {}
    state.update(
        minute=plan.minute,
        status="active",
        version=admit.version,
        slice=plan.requests,
        refilledAt=plan.now_ms,
        requestsLeft=state.get("requestsLeft", 0) + plan.requests - 1,
        tokensLeft=state.get("tokensLeft", 0) + plan.tokens - admit.reserve_tokens,
        available=int(seen.get("available", 0)) + plan.micros - admit.reserve_micros,
    )
    return state
