"""Per-request metering: reserve the most a request can cost, admit it atomically (key active,
RPM/TPM, budget window or balance), then settle the real cost. Built on ``data.metering``."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from llm_platform.config import get_settings
from llm_platform.core.clock import to_iso, utc_now
from llm_platform.data import leases as lease_store
from llm_platform.data import metering as store
from llm_platform.data import shards as shard_store
from llm_platform.data.dynamo import gave_up_on_conflicts
from llm_platform.data.usage_counters import budget_period_counter, daily_counter, minute_counter, window_counter
from llm_platform.domain.money import format_usd
from llm_platform.domain.windows import Window, budget_period, budget_window, budget_window_hours, minute_window
from llm_platform.proxy.errors import ProxyError, bad_request, unauthorized
from llm_platform.proxy.keys import KeyCache, KeySnapshot
from llm_platform.proxy.leases import KeyRate, Lease, LeasePolicy
from llm_platform.proxy.shards import KeyShards, ShardAdmission, ShardOutdated

_log = logging.getLogger("llm_platform.proxy")
_MINUTE_TTL = 3 * 3600
_WINDOW_TTL = 40 * 24 * 3600
_PERIOD_TTL = 40 * 24 * 3600


def check_usable(key: KeySnapshot, now: datetime) -> None:
    """Refuse an expired key, or a secret whose rotation grace period is over."""
    if key.expired(now):
        raise ProxyError(401, "key_expired", "This API key has expired.", type_="authentication_error")
    if key.secret_retired(now):
        raise unauthorized("This API key was rotated: use its new secret.")


@dataclass(frozen=True, slots=True)
class Admission:
    request_id: str
    key: KeySnapshot
    minute: Window
    window: Window | None
    reserve_micros: int
    reserve_tokens: int
    rate_headers: dict[str, str]
    admitted_at: datetime
    budget_period: Window | None = None  # credit keys with budgetReset
    lease: Lease | None = None  # admitted on this instance's lease of the key (None: the direct path)
    shard: ShardAdmission | None = None  # admitted on one of the key's shards (key shards, proxy/shards.py)


@dataclass(frozen=True, slots=True)
class Pending:
    """What the reservation record keeps for the reconciler: should the request die unsettled, its
    prompt's cost is charged (estimated at admission, at most the reservation) and the rest released."""

    model: str
    stream: bool
    prompt_tokens: int
    prompt_cost_micros: int


def reservation_deadline(admitted_at: datetime, now: datetime) -> datetime:
    """When a request's reservation becomes the reconciler's if no heartbeat pushes it out: a while after
    ``now``, but never past the most a request can run, so a request that is never settled (a bug) cannot
    hold its reservation for longer than one that died."""
    settings = get_settings()
    return min(
        now + timedelta(seconds=settings.reservation_deadline_seconds),
        admitted_at + timedelta(seconds=settings.reservation_timeout_seconds),
    )


class _Outdated(Exception):
    """Admission found the key at another version than the cached snapshot."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the request log records of how a request ended."""

    model: str
    provider: str | None  # None when no provider answered
    status: int  # the HTTP status the client got
    stream: bool


class RateView:
    """This instance's view of each key's current minute, for the ``x-ratelimit-*`` headers.
    Enforcement is exact in DynamoDB; the headers are exact when one instance serves the key (as
    locally) and an upper bound on what remains when several do."""

    def __init__(self) -> None:
        self._minutes: dict[str, tuple[int, int, int]] = {}
        self._lock = threading.Lock()

    def _add(self, key_id: str, minute: int, requests: int, tokens: int, exact: bool = False) -> tuple[int, int]:
        with self._lock:
            seen_minute, seen_requests, seen_tokens = self._minutes.get(key_id, (minute, 0, 0))
            if seen_minute != minute or exact:
                seen_requests, seen_tokens = 0, 0
            state = (minute, seen_requests + requests, seen_tokens + tokens)
            if len(self._minutes) > 10_000:
                self._minutes.clear()
            self._minutes[key_id] = state
            return state[1], state[2]

    def admitted(self, key: KeySnapshot, minute: Window, now: datetime, tokens: int) -> dict[str, str]:
        requests, tokens = self._add(key.key_id, minute.index, 1, tokens)
        return headers(key, minute, now, requests, tokens)

    def current(self, key: KeySnapshot, minute: Window, now: datetime) -> dict[str, str]:
        """The headers as they stand, for a request refused on money: it took nothing of the minute."""
        return headers(key, minute, now, *self._add(key.key_id, minute.index, 0, 0))

    def refused(self, key: KeySnapshot, minute: Window, now: datetime, item: dict | None) -> dict[str, str]:
        item = item or {}
        requests, tokens = self._add(key.key_id, minute.index, item.get("requests", 0), item.get("tokens", 0), True)
        return headers(key, minute, now, requests, tokens)

    def settled(self, key_id: str, minute: Window, tokens: int) -> None:
        self._add(key_id, minute.index, 0, tokens)


def headers(key: KeySnapshot, minute: Window, now: datetime, requests: int, tokens: int) -> dict[str, str]:
    reset = f"{max(1, int((minute.end - now).total_seconds() + 0.999))}s"
    return {
        "x-ratelimit-limit-requests": str(key.rpm),
        "x-ratelimit-remaining-requests": str(max(0, key.rpm - requests)),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(key.tpm),
        "x-ratelimit-remaining-tokens": str(max(0, key.tpm - tokens)),
        "x-ratelimit-reset-tokens": reset,
    }


def _seconds_until(moment: datetime, now: datetime) -> str:
    return str(max(1, int((moment - now).total_seconds() + 0.999)))


class Meter:
    """One proxy instance's metering. ``leases`` says when a hot key is served from leases (default: the
    settings'); every lease this instance holds is returned by a background thread once it has ended and
    nothing is in flight on it (``flush`` returns them all at once)."""

    def __init__(self, keys: KeyCache, leases: LeasePolicy | None = None, shards: KeyShards | None = None) -> None:
        self.keys = keys
        self.shards = shards or KeyShards()  # a promoted hot key's shards (after leases, before the direct path)
        self.rates = RateView()
        self._lease_policy = leases  # None: the settings', read on first use (not at import)
        self.instance_id = uuid.uuid4().hex
        self._key_rates = KeyRate()
        self._held: dict[str, Lease] = {}  # key hash -> the lease new requests of the key use
        self._leases: dict[str, Lease] = {}  # lease id -> every lease held and not yet returned
        self._shrink: dict[str, int] = {}  # key hash -> divisor of the next slice after refused takes
        self._take_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._returner: threading.Thread | None = None

    def admit(
        self,
        key: KeySnapshot,
        reserve_micros: int,
        reserve_tokens: int,
        request_id: str,
        now: datetime,
        pending: Pending | None = None,
    ) -> Admission:
        """Admit with the key's current limits: when admission finds the cached snapshot outdated (a
        change bumped the key's version), the key is read again and admission retried once with it.
        ``pending`` says what the reconciler charges should the request die before it is settled."""
        pending = pending or Pending(model="", stream=False, prompt_tokens=0, prompt_cost_micros=0)
        for attempt in range(2):
            check_usable(key, now)
            try:
                return self._admit(key, reserve_micros, reserve_tokens, request_id, now, pending)
            except _Outdated:
                if attempt == 1:  # changed twice within one request: it still has to be served right
                    raise ProxyError(409, "key_changed", "The key changed during the request; retry.") from None
            except ProxyError as refused:
                # Refused by the cached limits alone: read the key once more before saying no, its limits
                # may have been raised since.
                if refused.code != "request_too_large" or attempt == 1:
                    raise
            fresh = self.keys.reload(key.secret_hash)
            if fresh is None:
                raise unauthorized("This API key is revoked or disabled.") from None
            key = fresh
        raise AssertionError("unreachable")

    def _admit(
        self,
        key: KeySnapshot,
        reserve_micros: int,
        reserve_tokens: int,
        request_id: str,
        now: datetime,
        pending: Pending,
    ) -> Admission:
        if reserve_tokens > key.tpm:
            raise bad_request(
                f"This request could use up to {reserve_tokens} tokens, more than this key's limit of {key.tpm} "
                "tokens per minute: lower max_tokens, or send a shorter prompt or fewer inputs.",
                code="request_too_large",
                param="max_tokens",
            )
        minute = minute_window(now)
        window = None
        period = None
        plan_fields: dict = {}
        if key.subscription_id is not None:
            anchor, budget_micros = key.window_anchor, key.budget_micros
            if anchor is None or budget_micros is None:  # read with its subscription: never, but say so
                raise ValueError(f"subscription key {key.key_id} was read without its subscription's terms")
            window = budget_window(anchor, now, budget_window_hours())
            if reserve_micros > budget_micros:
                raise bad_request(
                    f"This request could cost up to ${format_usd(reserve_micros)}, more than the whole 5-hour "
                    f"budget of ${format_usd(budget_micros)}: lower max_tokens or shorten the prompt.",
                    code="request_too_large",
                    param="max_tokens",
                )
            plan_fields = {
                "subscription_id": key.subscription_id,
                "window": window_counter(key.subscription_id, window.index),
                "window_expires_at": int(window.end.timestamp()) + _WINDOW_TTL,
                "budget_micros": key.budget_micros,
            }
        else:
            if key.max_budget_micros is not None and reserve_micros > key.max_budget_micros:
                raise bad_request(
                    f"This request could cost up to ${format_usd(reserve_micros)}, more than this key's whole "
                    f"maxBudget of ${format_usd(key.max_budget_micros)}: lower max_tokens or shorten the prompt.",
                    code="request_too_large",
                    param="max_tokens",
                )
            plan_fields = {"max_budget_micros": key.max_budget_micros}
            if key.budget_reset is not None and key.max_budget_micros is not None:
                period = budget_period(key.budget_reset, now)
                plan_fields["budget_period"] = budget_period_counter(key.key_id, key.budget_reset, period.index)
                plan_fields["budget_period_expires_at"] = int(period.end.timestamp()) + _PERIOD_TTL
        minute_id = minute_counter(key.key_id, minute.index)
        reservation = {
            "requestId": request_id,
            "openShard": store.reservation_shard(request_id),
            "deadline": to_iso(reservation_deadline(now, now)),
            "reservedAt": to_iso(now),
            "keyHash": key.key_hash,
            "keyId": key.key_id,
            "accountId": key.account_id,
            "credit": key.credit,
            "minute": list(minute_id),
            "window": list(plan_fields["window"]) if "window" in plan_fields else None,
            "budgetPeriod": list(plan_fields["budget_period"]) if "budget_period" in plan_fields else None,
            "reserveMicros": reserve_micros,
            "reserveTokens": reserve_tokens,
            "promptTokens": pending.prompt_tokens,
            "promptCostMicros": min(pending.prompt_cost_micros, reserve_micros),
            "model": pending.model,
            "stream": pending.stream,
        }
        plan = store.AdmitPlan(
            key_hash=key.key_hash,
            key_id=key.key_id,
            account_id=key.account_id,
            minute=minute_counter(key.key_id, minute.index),
            minute_expires_at=int(minute.end.timestamp()) + _MINUTE_TTL,
            rpm=key.rpm,
            tpm=key.tpm,
            reserve_micros=reserve_micros,
            reserve_tokens=reserve_tokens,
            now_iso=to_iso(now),
            version=key.version,
            reservation=reservation,
            **plan_fields,
        )
        lease = None
        shard = None
        conflicts = 0
        try:
            rate = self._hot_rate(key, reserve_tokens)
            if rate is not None:
                lease = self._admit_on_lease(key, plan, minute.index, now, rate)
            if lease is None and self.shards.serves(key, reserve_tokens):
                shard = self.shards.admit(key, plan, minute.index, now)
            if lease is None and shard is None:
                conflicts = store.admit(plan)
        except ShardOutdated:
            raise _Outdated from None
        except store.AdmissionRefused as refused:
            item = refused.refusal.item or {}
            if (
                refused.refusal.check == "key"
                and item.get("status") == "active"
                and item.get("version", 0) != key.version
            ):
                raise _Outdated from refused
            raise self._refusal_error(key, refused.refusal, minute, window, period, now) from refused
        except Exception as error:
            # Every attempt collided (the key is hottest exactly then): this request fails as before (503),
            # but the key is promoted, or its shards doubled, so this environment's next request spreads out.
            if gave_up_on_conflicts(error) and lease is None:
                self._conflicted(key, on_shard=shard is not None or self.shards.serves(key, reserve_tokens))
            raise
        if conflicts:
            self._conflicted(key, on_shard=False)
        elif shard is not None and shard.conflicts:
            self._conflicted(key, on_shard=True)
        rate_headers = self.rates.admitted(key, minute, now, reserve_tokens)
        return Admission(
            request_id, key, minute, window, reserve_micros, reserve_tokens, rate_headers, now, period, lease, shard
        )

    def extend_reservation(self, admission: Admission, now: datetime) -> bool:
        """A running request's heartbeat: its reservation's deadline pushed out (one conditional write). False
        when it cannot be any more: settled, reconciled, or at the most a request can run."""
        deadline = reservation_deadline(admission.admitted_at, now)
        return store.extend_reservation(admission.request_id, to_iso(deadline))

    def _conflicted(self, key: KeySnapshot, *, on_shard: bool) -> None:
        """A write of this key met ``TransactionConflict``: the key is hot across environments. A credit key
        on the direct path is promoted to 8 key shards; a conflict on one of its shards doubles them (256 at
        most). This environment then reads the key again (others learn when they meet a conflict, or reload).
        Never fails the request: the promotion is an optimisation."""
        if not key.credit or key.budget_reset is not None or (key.shards >= 2 and not on_shard):
            return
        try:
            from llm_platform.domain import hot_keys  # only on a conflict: kept off the proxy's cold start

            hot_keys.promote(key.key_hash, key.key_id, key.account_id, hot_keys.next_shards(key.shards))
            self.keys.reload(key.secret_hash)
        except Exception:
            _log.exception("key promotion failed", extra={"keyId": key.key_id})

    # ------------------------------------------------------------------ leases (issue 16)
    @property
    def lease_policy(self) -> LeasePolicy:
        if self._lease_policy is None:
            self._lease_policy = LeasePolicy.from_settings()
        return self._lease_policy

    def _hot_rate(self, key: KeySnapshot, reserve_tokens: int) -> float | None:
        """This instance's rate of the key when it is to be leased: a credit key admitted above the policy's
        rate, with room in its limits for slices of two requests. None: the direct path."""
        if not self.lease_policy.enabled or not key.credit:
            return None
        rate, seen = self._key_rates.observe(key.key_hash, time.monotonic(), self.lease_policy.min_rate)
        share = self.lease_policy.max_share
        roomy = key.rpm // share >= 2 and key.tpm // share >= 2 * reserve_tokens
        return rate if roomy and self.lease_policy.hot(rate, seen) else None

    def _admit_on_lease(
        self, key: KeySnapshot, plan: store.AdmitPlan, minute: int, now: datetime, rate: float
    ) -> Lease | None:
        """Admit on this instance's lease of the key (one transaction on the lease item), or take a new
        lease carrying this request (one central transaction). None: admit directly (no slice fits)."""
        lease = self._usable_lease(key, plan, minute, now)
        if lease is not None:
            return lease
        with self._take_lock(key.key_hash):
            lease = self._usable_lease(key, plan, minute, now)  # another request may have just taken one
            if lease is not None:
                return lease
            return self._take(key, plan, minute, now, rate)

    def _usable_lease(self, key: KeySnapshot, plan: store.AdmitPlan, minute: int, now: datetime) -> Lease | None:
        lease = self._held.get(key.key_hash)
        if lease is None or lease.version != key.version or plan.reservation is None:
            return None
        if not lease.reserve(plan.reserve_micros, plan.reserve_tokens, minute, now):
            return None
        try:
            lease_store.admit(
                lease.lease_id,
                granted=(lease.requests, lease.tokens, lease.micros),
                reserve_micros=plan.reserve_micros,
                reserve_tokens=plan.reserve_tokens,
                reservation=plan.reservation,
            )
        except lease_store.LeaseRefused as refused:
            lease.unreserve(plan.reserve_micros, plan.reserve_tokens)
            if refused.item is not None and refused.item.get("status") == "revoked":
                # The key changed (limits, status, rotation): read it again before anything is admitted.
                raise _Outdated from refused
            return None
        return lease

    def _take(self, key: KeySnapshot, plan: store.AdmitPlan, minute: int, now: datetime, rate: float) -> Lease | None:
        """Take a slice sized to this instance's rate of the key (about ``horizon_seconds`` of it), at most
        1/``max_share`` of its RPM and TPM, halved after each refused take and grown back after each taken."""
        policy = self.lease_policy
        divisor = self._shrink.get(key.key_hash, 1)
        wanted = math.ceil(rate * policy.horizon_seconds) + 1
        requests = min(math.ceil(wanted / divisor), key.rpm // policy.max_share)
        tokens = min(requests * plan.reserve_tokens, key.tpm // policy.max_share)
        if requests < 2 or tokens < plan.reserve_tokens:
            return None
        micros = requests * plan.reserve_micros
        minute_end = datetime.fromtimestamp((minute + 1) * 60, tz=now.tzinfo)
        ends_at = min(now + timedelta(seconds=policy.lifetime_seconds), minute_end)
        lease = Lease(
            lease_id=uuid.uuid4().hex,
            key_hash=key.key_hash,
            version=key.version,
            minute=minute,
            requests=requests,
            tokens=tokens,
            micros=micros,
            ends_at=ends_at,
            admitted=1,
            open=1,
            committed_micros=plan.reserve_micros,
            committed_tokens=plan.reserve_tokens,
        )
        try:
            lease_store.take(
                lease_store.TakePlan(
                    admit=plan,
                    lease_id=lease.lease_id,
                    instance_id=self.instance_id,
                    requests=requests,
                    tokens=tokens,
                    micros=micros,
                    lease_end=to_iso(ends_at),
                )
            )
        except store.AdmissionRefused as refused:
            item = refused.refusal.item or {}
            if refused.refusal.check == "key" and (
                item.get("status") != "active" or item.get("version", 0) != key.version
            ):
                raise  # revoked, disabled or changed: as on the direct path
            # No room for the whole slice (RPM, TPM, balance or maxBudget): this request goes the direct
            # path, which admits it exactly or refuses it with the usual error; the next slice is smaller.
            self._shrink[key.key_hash] = min(64, divisor * 2)
            return None
        self._shrink[key.key_hash] = max(1, divisor // 2)
        with self._lock:
            previous = self._held.get(key.key_hash)
            if previous is not None:
                previous.ended = True
            self._held[key.key_hash] = lease
            self._leases[lease.lease_id] = lease
            self._start_returner()
        return lease

    def _take_lock(self, key_hash: str) -> threading.Lock:
        with self._lock:
            return self._take_locks.setdefault(key_hash, threading.Lock())

    def _start_returner(self) -> None:
        if not self.lease_policy.return_in_background:
            return
        if self._returner is None or not self._returner.is_alive():
            self._returner = threading.Thread(target=self._return_loop, name="lease-returner", daemon=True)
            self._returner.start()

    def _return_loop(self) -> None:
        while True:
            time.sleep(0.5)
            try:
                self.return_leases(utc_now())
            except Exception:  # logged; the reconciler returns what this instance cannot
                _log.exception("lease return failed")
            with self._lock:
                if not self._leases:
                    self._returner = None
                    return

    def return_leases(self, now: datetime, *, end_all: bool = False) -> list[dict]:
        """Return every lease that has ended (all of them with ``end_all``) and has nothing in flight: one
        transaction each, off the request path. The lease items returned (as they were)."""
        with self._lock:
            if end_all:
                for lease in self._leases.values():
                    lease.ended = True
            due = [lease for lease in self._leases.values() if lease.idle_and_over(now)]
            for lease in due:
                lease.returning = True
        returned = []
        for lease in due:
            try:
                item = lease_store.read(lease.lease_id)
                done = item is None or lease_store.give_back(item, to_iso(now))
                # Returned (by us, or already by the reconciler), or left for the reconciler: a settle on it
                # failed and its request is open (settled after its deadline, then the lease returned).
                finished = done or (item is not None and item.get("openCount", 0) > 0)
            except Exception:  # DynamoDB failing: tried again on the next round (or by the reconciler)
                _log.exception("lease return failed", extra={"leaseId": lease.lease_id})
                item, done, finished = None, False, False
            with self._lock:
                if self._held.get(lease.key_hash) is lease:
                    del self._held[lease.key_hash]
                if finished:
                    self._leases.pop(lease.lease_id, None)
                else:
                    lease.returning = False
            if done and item is not None:
                returned.append(item)
        return returned

    def leases_held(self) -> int:
        """Leases this instance holds and has not returned."""
        with self._lock:
            return len(self._leases)

    def flush(self, now: datetime | None = None) -> list[dict]:
        """End every lease and return those with nothing in flight (tests, shutdown)."""
        return self.return_leases(now or utc_now(), end_all=True)

    def _refusal_error(
        self,
        key: KeySnapshot,
        refusal: store.Refusal,
        minute: Window,
        window: Window | None,
        period: Window | None,
        now: datetime,
    ) -> ProxyError:
        item = refusal.item or {}
        if refusal.check == "key":
            if item.get("status") == "active":  # active, so the credit key's own cap is what failed
                return ProxyError(
                    402,
                    "insufficient_quota",
                    "This key's maxBudget is spent.",
                    type_="insufficient_quota",
                    headers=self.rates.current(key, minute, now),
                )
            self.keys.forget(key.secret_hash)
            return unauthorized("This API key is revoked or disabled.")
        if refusal.check == "key_budget":
            return ProxyError(
                402,
                "insufficient_quota",
                f"This key's maxBudget for the {key.budget_reset} period is spent"
                + (f"; it resets at {to_iso(period.end)}." if period else "."),
                type_="insufficient_quota",
                headers=self.rates.current(key, minute, now),
            )
        if refusal.check == "subscription":
            self.keys.forget(key.secret_hash)
            return unauthorized("This API key's subscription is not active.")
        if refusal.check == "rate":
            rate_headers = self.rates.refused(key, minute, now, item)
            which = "requests" if item.get("requests", 0) >= key.rpm else "tokens"
            limit = key.rpm if which == "requests" else key.tpm
            return ProxyError(
                429,
                "rate_limit_exceeded",
                f"Rate limit reached: {limit} {which} per minute for this key. Try again in "
                f"{rate_headers['x-ratelimit-reset-requests']}.",
                type_=which,
                headers={**rate_headers, "retry-after": _seconds_until(minute.end, now)},
            )
        if refusal.check == "budget":
            if item.get("spendMicros", 0) < key.budget_micros:  # held by requests still in flight
                return ProxyError(
                    429,
                    "budget_exceeded",
                    "Requests in flight have reserved the rest of this 5-hour budget; retry in a moment.",
                    type_="budget_exceeded",
                    headers={**self.rates.current(key, minute, now), "retry-after": "1"},
                )
            resets = window.end if window else minute.end
            return ProxyError(
                429,
                "budget_exceeded",
                f"The subscription's 5-hour budget is spent; it resets at {to_iso(resets)}.",
                type_="budget_exceeded",
                headers={**self.rates.current(key, minute, now), "retry-after": _seconds_until(resets, now)},
            )
        return ProxyError(
            402,
            "insufficient_quota",
            "Your credit balance does not cover this request's maximum cost (lower max_tokens or top up).",
            type_="insufficient_quota",
            headers=self.rates.current(key, minute, now),
        )

    def settle(
        self,
        admission: Admission,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_micros: int,
        counted: bool,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        key = admission.key
        if cost_micros > admission.reserve_micros:
            # Cannot happen by construction (the reservation bounds every token); should a provider
            # report more, the customer is charged what was reserved and the operator is told.
            _log.error(
                "settle overrun",
                extra={
                    "requestId": admission.request_id,
                    "costMicros": cost_micros,
                    "reserveMicros": admission.reserve_micros,
                },
            )
            cost_micros = admission.reserve_micros
        created_at = to_iso(admission.admitted_at)
        log_record = {
            "id": admission.request_id,
            "accountId": key.account_id,
            "keyId": key.key_id,
            "model": outcome.model,
            "provider": outcome.provider,
            "status": outcome.status,
            "stream": outcome.stream,
            "promptTokens": input_tokens,
            "completionTokens": output_tokens,
            "costMicros": cost_micros,
            "createdAt": created_at,
            "durationMs": max(0, int((now - admission.admitted_at).total_seconds() * 1000)),
        }
        retention = get_settings().request_log_retention_days * 86400
        settle = store.settle
        if admission.shard is not None:
            shard = admission.shard.shard

            def settle(plan: store.SettlePlan) -> int:
                return shard_store.settle(plan, shard)

        if admission.lease is not None:
            lease = admission.lease

            def settle(plan: store.SettlePlan) -> int:
                try:
                    return lease_store.settle(plan, lease.lease_id)
                finally:  # a failed settle stays open on the lease item: the reconciler settles it
                    lease.settled(plan.reserve_micros, plan.cost_micros, plan.reserve_tokens, tokens_used)

        tokens_used = input_tokens + output_tokens
        try:
            conflicts = settle(
                store.SettlePlan(
                    request_id=admission.request_id,
                    key_hash=key.key_hash,
                    account_id=key.account_id,
                    minute=minute_counter(key.key_id, admission.minute.index),
                    reserve_micros=admission.reserve_micros,
                    reserve_tokens=admission.reserve_tokens,
                    cost_micros=cost_micros,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    counted=counted,
                    now_iso=to_iso(now),
                    window=window_counter(key.subscription_id, admission.window.index)
                    if admission.window and key.subscription_id
                    else None,
                    credit=key.credit,
                    budget_period=budget_period_counter(key.key_id, key.budget_reset, admission.budget_period.index)
                    if admission.budget_period and key.budget_reset
                    else None,
                    log_record=log_record,
                    log_expires_at=int(admission.admitted_at.timestamp()) + retention,
                    daily=daily_counter(key.account_id, created_at[:10], key.key_id, outcome.model),
                    log_shards=key.log_shards,
                )
            )
        except Exception as error:
            # Collided on every attempt: the reconciler settles the request; the key is hot, promote it.
            if gave_up_on_conflicts(error) and admission.lease is None:
                self._conflicted(key, on_shard=admission.shard is not None)
            raise
        if conflicts and admission.lease is None:
            self._conflicted(key, on_shard=admission.shard is not None)
        self.rates.settled(key.key_id, admission.minute, input_tokens + output_tokens - admission.reserve_tokens)
