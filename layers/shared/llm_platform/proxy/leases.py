"""This instance's side of leases (issue 16; the DynamoDB side is ``data.leases``): when to lease a key, how
big a slice to take, and the local view of each lease it holds (which the lease item enforces anyway).

A key is leased only when it is hot on this instance: a credit key whose admissions here have run above
``min_rate`` per second (an exponentially weighted rate) for at least ``warmup_seconds``. Quiet keys, short
bursts and subscription keys keep the direct path (one central transaction to admit, one to settle), so a
small account is never refused because a slice of its balance sits idle on another instance."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime

from llm_platform.config import get_settings


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    min_rate: float = 2.0  # admissions per second of one key on this instance before it is leased
    warmup_seconds: float = 5.0  # ... sustained this long (a burst is not a hot key)
    horizon_seconds: float = 2.0  # a slice covers about this long at the observed rate
    lifetime_seconds: float = 5.0  # a lease admits nothing after this (and never past its minute)
    max_share: int = 8  # a slice is at most 1/8 of the key's RPM and TPM, so instances share
    enabled: bool = True
    return_in_background: bool = True  # False: only ``Meter.flush`` returns leases (a test's own timing)

    @classmethod
    def from_settings(cls) -> LeasePolicy:
        """``LEASES_ENABLED`` (true), ``LEASE_MIN_RATE_PER_SECOND`` (2; 0 leases every credit key at once)."""
        settings = get_settings()
        if not settings.leases_enabled:
            return cls(enabled=False)
        rate = settings.lease_min_rate_per_second
        return cls(min_rate=float(rate), warmup_seconds=0.0 if rate == 0 else 5.0)

    def hot(self, rate: float, seen_seconds: float) -> bool:
        return self.enabled and rate > self.min_rate and seen_seconds >= self.warmup_seconds


class KeyRate:
    """An exponentially weighted rate of events per key (time constant ``tau`` seconds), and since when it
    has stayed above a given rate (a key is hot once it stayed there through the warm-up)."""

    def __init__(self, tau: float = 2.0) -> None:
        self.tau = tau
        self._state: dict[str, tuple[float, float, float]] = {}  # key -> (last, rate, above the rate since)
        self._lock = threading.Lock()

    def observe(self, key: str, now: float, warm_rate: float) -> tuple[float, float]:
        """Count one event now; the key's rate and how long it has been above ``warm_rate``."""
        with self._lock:
            last, rate, since = self._state.get(key, (now, 0.0, now))
            decayed = rate * math.exp(-(now - last) / self.tau)
            if decayed <= warm_rate:  # not above it before this event: a warm-up starts (again) here
                since = now
            rate = decayed + 1.0 / self.tau
            if len(self._state) > 10_000:
                self._state.clear()
            self._state[key] = (now, rate, since)
            return rate, now - since


@dataclass
class Lease:
    """What this instance knows of one of its leases (the lease item holds the truth)."""

    lease_id: str
    key_hash: str
    version: int
    minute: int
    requests: int  # n
    tokens: int  # t
    micros: int  # m
    ends_at: datetime
    admitted: int = 0
    open: int = 0
    committed_micros: int = 0
    committed_tokens: int = 0
    ended: bool = False
    returning: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reserve(self, micros: int, tokens: int, minute: int, now: datetime) -> bool:
        """Hold room for one request on this lease, if it has room and is still live."""
        with self.lock:
            if self.ended or now >= self.ends_at or minute != self.minute:
                self.ended = True
                return False
            if (
                self.admitted >= self.requests
                or self.committed_micros + micros > self.micros
                or self.committed_tokens + tokens > self.tokens
            ):
                self.ended = True  # used up: the next request takes a new lease
                return False
            self.admitted += 1
            self.open += 1
            self.committed_micros += micros
            self.committed_tokens += tokens
            return True

    def unreserve(self, micros: int, tokens: int) -> None:
        with self.lock:
            self.admitted -= 1
            self.open -= 1
            self.committed_micros -= micros
            self.committed_tokens -= tokens
            self.ended = True

    def settled(self, reserve_micros: int, cost_micros: int, reserve_tokens: int, tokens: int) -> None:
        with self.lock:
            self.open -= 1
            self.committed_micros += cost_micros - reserve_micros
            self.committed_tokens += tokens - reserve_tokens

    def idle_and_over(self, now: datetime) -> bool:
        with self.lock:
            if now >= self.ends_at:
                self.ended = True
            return self.ended and self.open == 0 and not self.returning
