"""The reservation reconciler: settles the reservations of requests that died before they were settled
(a Lambda stopped mid-request, a settle that kept failing). Each request's admission put a reservation
record holding what is needed: once the request's deadline has passed (it cannot be running any more),
its prompt's cost is charged (estimated at admission, at most the reservation), the rest released, and
a log record and, for credit keys, a ledger entry written, in the same transaction as the proxy's own
settle. That transaction deletes the record on condition it still exists, so a late settle of the
request itself and the reconciler (or two reconciler runs) can never both apply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from llm_platform.config import get_settings
from llm_platform.core.clock import from_iso, to_iso, utc_now
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import leases as lease_store
from llm_platform.data import metering as store
from llm_platform.data import shards as shard_store
from llm_platform.data.dynamo import WriteRefused
from llm_platform.data.usage_counters import daily_counter
from llm_platform.observability import logger

# A request the proxy could not settle gets this status in the log: it ended without an answer we know of.
RECONCILED_STATUS = 504
_BATCH = 100  # reservations per shard per query


@dataclass
class ReconcileReport:
    settled: int = 0
    already_settled: int = 0
    failed: list[str] = field(default_factory=list)
    charged_micros: int = 0
    leases_returned: int = 0  # leases of instances that did not return them (died, frozen)
    leases_waiting: int = 0  # ended leases with requests still open on them: returned by a later run
    shards_returned: list[shard_store.GivenBack] = field(default_factory=list)  # idle key shards given back


def reconcile(now: datetime | None = None) -> ReconcileReport:
    """Settle every reservation whose request's deadline passed more than the grace ago. Idempotent:
    a reservation settled meanwhile is skipped. A failure is logged and the others go on; the caller
    fails the run when any failed (so the alarm fires and the next run tries again)."""
    now = now or utc_now()
    settings = get_settings()
    cutoff = to_iso(now - timedelta(seconds=settings.reconcile_grace_seconds))
    report = ReconcileReport()
    leases: dict[str, dict[str, Any]] = {}
    log_shards: dict[str, int] = {}  # key hash -> the key's log shards, read once per run
    # Every shard of the index, 0-63: reservations put when there were 16 are on shards 0-15, covered too.
    for index in range(store.RESERVATION_SHARDS):
        shard = f"open#{index}"
        while True:
            due = store.due_reservations(shard, cutoff, _BATCH)
            progressed = False
            for record in due:
                if record.get("kind") == "lease":  # returned below, once its due requests are settled
                    leases[record["leaseId"]] = record
                    continue
                try:
                    report.charged_micros += _settle_abandoned(record, now, log_shards, cutoff)
                    report.settled += 1
                    progressed = True
                except WriteRefused:  # settled by its request (or another run), or its deadline pushed out, meanwhile
                    report.already_settled += 1
                except Exception:
                    logger.exception("reconcile failed", extra={"requestId": record.get("requestId")})
                    report.failed.append(record.get("requestId", "?"))
            if len(due) < _BATCH or not progressed:
                break
    for lease_id in leases:
        try:
            _return_abandoned(lease_id, now, report)
        except Exception:
            logger.exception("lease return failed", extra={"leaseId": lease_id})
            report.failed.append(f"lease#{lease_id}")
    _return_idle_shards(now, report)
    return report


SHARD_IDLE_SECONDS = 60  # a key shard unused this long (and nothing open on it) is given back


def _return_idle_shards(now: datetime, report: ReconcileReport) -> None:
    """Give back every key shard idle for ``SHARD_IDLE_SECONDS`` with nothing open on it: its money to the
    balance (and off the key's spend), its unsynced spend to the ledger (one usage entry), its counts to the
    key; once (conditioned on the shard as read). Shards with requests open wait for those requests' own
    deadlines (settled into the shard above, in a run after them)."""
    idle_before = int((now - timedelta(seconds=SHARD_IDLE_SECONDS)).timestamp() * 1000)
    for key in shard_store.registered_keys():
        try:
            for item in shard_store.read(key["keyId"], int(key["shards"])).values():
                if int(item.get("lastUsed", 0)) > idle_before:
                    continue
                given = shard_store.give_back(item, to_iso(now))
                if given is not None:
                    report.shards_returned.append(given)
                    logger.info(
                        "key shard returned",
                        extra={"shard": given.shard, "returnedMicros": given.returned_micros, "synced": given.synced},
                    )
        except Exception:
            logger.exception("shard return failed", extra={"keyId": key.get("keyId")})
            report.failed.append(f"shards#{key.get('keyId')}")


def _return_abandoned(lease_id: str, now: datetime, report: ReconcileReport) -> None:
    """Return a lease whose end passed more than the grace ago (its instance died or never returned it):
    what its requests spent goes onto the central items, the rest comes back, exactly once (the same
    conditional transaction the instance would have written)."""
    lease = lease_store.read(lease_id)
    if lease is None:  # returned meanwhile
        return
    if lease.get("openCount", 0) > 0:  # requests still open: settled when their own deadlines pass
        report.leases_waiting += 1
        return
    if lease_store.give_back(lease, to_iso(now)):
        report.leases_returned += 1
        logger.warning(
            "lease reclaimed",
            extra={
                "leaseId": lease_id,
                "keyId": lease["keyId"],
                "grantedMicros": lease["grantedMicros"],
                "spentMicros": lease.get("spentMicros", 0),
            },
        )


def _key_log_shards(record: dict[str, Any], known: dict[str, int]) -> int:
    """The log shards of the reservation's key (as the request would have settled: any shard a reader
    covers will do, the request's own settle and this one can never both apply)."""
    if "logShards" in record:
        return int(record["logShards"])
    key_hash = record["keyHash"]
    if key_hash not in known:
        key = api_keys_table.get_by_hash(key_hash)
        known[key_hash] = (key.log_shards or 0) if key is not None else 0
    return known[key_hash]


def _settle_abandoned(record: dict[str, Any], now: datetime, log_shards: dict[str, int], cutoff: str) -> int:
    reserve = int(record["reserveMicros"])
    cost = min(int(record.get("promptCostMicros", 0)), reserve)
    prompt_tokens = int(record.get("promptTokens", 0))
    reserved_at = record["reservedAt"]
    log_record = {
        "id": record["requestId"],
        "accountId": record["accountId"],
        "keyId": record["keyId"],
        "model": record.get("model") or "unknown",
        "provider": None,
        "status": RECONCILED_STATUS,
        "stream": bool(record.get("stream")),
        "promptTokens": prompt_tokens,
        "completionTokens": 0,
        "costMicros": cost,
        "createdAt": reserved_at,
        "durationMs": max(0, int((now - from_iso(reserved_at)).total_seconds() * 1000)),
    }
    retention = get_settings().request_log_retention_days * 86400
    lease_id, shard = record.get("leaseId"), record.get("shardKey")
    settle: Callable[[store.SettlePlan], int] = store.settle
    if lease_id:
        settle = lambda plan: lease_store.settle(plan, lease_id)  # noqa: E731 - one line each
    elif shard:  # settled into its key shard, as the request would have been
        settle = lambda plan: shard_store.settle(plan, shard)  # noqa: E731
    settle(
        store.SettlePlan(
            request_id=record["requestId"],
            key_hash=record["keyHash"],
            account_id=record["accountId"],
            minute=tuple(record["minute"]),
            reserve_micros=reserve,
            reserve_tokens=int(record["reserveTokens"]),
            cost_micros=cost,
            input_tokens=prompt_tokens,
            output_tokens=0,
            counted=True,
            now_iso=to_iso(now),
            log_record=log_record,
            log_expires_at=int(from_iso(reserved_at).timestamp()) + retention,
            daily=daily_counter(record["accountId"], reserved_at[:10], record["keyId"], log_record["model"]),
            window=tuple(record["window"]) if record.get("window") else None,
            credit=bool(record.get("credit")),
            budget_period=tuple(record["budgetPeriod"]) if record.get("budgetPeriod") else None,
            by="reconciler",
            due_before=cutoff,
            log_shards=_key_log_shards(record, log_shards),
        )
    )
    logger.warning(
        "reservation reconciled",
        extra={
            "requestId": record["requestId"],
            "keyId": record["keyId"],
            "reserveMicros": reserve,
            "costMicros": cost,
        },
    )
    return cost
