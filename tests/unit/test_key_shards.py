"""Key shards (issue 16): what promotes a key (a ``TransactionConflict`` met by its writes, injected here:
neither moto nor DynamoDB Local reports one), and how big a refill's slice is (proxy/shards.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from llm_platform.core.clock import utc_now
from llm_platform.data import metering as store
from llm_platform.proxy.keys import KeyCache, KeySnapshot
from llm_platform.proxy.leases import LeasePolicy
from llm_platform.proxy.metering import Meter
from llm_platform.proxy.shards import KeyShards, ShardPolicy


def _conflicts_first(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The next ``times`` transactions are cancelled by a TransactionConflict (retried by ``transact``)."""
    from llm_platform.data import dynamo

    real = dynamo._boto3_transact
    left = [times]

    def transact(items: list[dict[str, Any]], **kwargs: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(items) - 1),
                },
                "TransactWriteItems",
            )
        real(items, **kwargs)

    monkeypatch.setattr(dynamo, "_boto3_transact", transact)
    return left


def _credit_key(account, budget_reset: str | None = None) -> tuple[str, Any]:
    from llm_platform.domain import accounts, api_keys
    from llm_platform.domain.accounts import Caller

    accounts.grant_credit(account.account_id, 10_000_000, "test")
    caller = Caller(account.account_id, account.management_key_id)
    max_budget = 5_000_000 if budget_reset else None
    key, plaintext = api_keys.create_credit_key(caller, "hot", max_budget, 1_000, 1_000_000)
    if budget_reset:
        api_keys.update_key(caller, key.key_id, name=None, disabled=None, limits={"budget_reset": budget_reset})
    return plaintext, key


def _stored(table: str, key: dict[str, Any]) -> dict[str, Any]:
    from llm_platform.data.dynamo import client, from_item

    return from_item(client().get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])


def test_a_conflict_on_the_direct_path_promotes_a_credit_key_to_eight_shards(account, tables, monkeypatch) -> None:
    """Given a credit key on the direct path, when its admission meets a TransactionConflict (retried, then
    admitted), then the key item gets shards = 8 and logShards = 16, the account logShards = 16, the registry
    lists the key, and this environment's snapshot is read again (shard mode for its next request)."""
    plaintext, key = _credit_key(account)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False))
    snapshot = meter.keys.lookup(plaintext)
    assert snapshot is not None and snapshot.shards == 0
    left = _conflicts_first(monkeypatch, 1)
    admission = meter.admit(snapshot, 2_000, 10, str(uuid.uuid4()), utc_now())
    assert left == [0] and admission.shard is None  # admitted directly, after the conflict's retry
    stored_key = _stored(tables["ApiKeysTable"], {"keyHash": {"S": key.key_hash}})
    assert (stored_key["shards"], stored_key["logShards"], stored_key.get("version", 0)) == (8, 16, key.version)
    assert _stored(tables["AccountsTable"], {"accountId": {"S": account.account_id}})["logShards"] == 16
    registry = _stored(tables["UsageCountersTable"], {"pk": {"S": "hotkeys"}, "sk": {"S": f"key#{key.key_id}"}})
    assert (registry["shards"], registry["keyHash"]) == (8, key.key_hash)
    fresh = meter.keys.lookup(plaintext)
    assert fresh is not None and fresh.shards == 8 and meter.shards.serves(fresh, 10)


def test_conflicts_on_every_attempt_fail_the_request_but_still_promote_the_key(account, tables, monkeypatch) -> None:
    """Given a credit key on the direct path, when its admission collides on every attempt (the key is at its
    hottest), then that request fails as before (the conflict error is raised, nothing is admitted), and the
    key is promoted all the same: this environment's next request of it is served from shards."""
    from llm_platform.data.dynamo import gave_up_on_conflicts

    plaintext, key = _credit_key(account)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False))
    snapshot = meter.keys.lookup(plaintext)
    assert snapshot is not None and snapshot.shards == 0
    left = _conflicts_first(monkeypatch, 8)  # data.dynamo's _CONFLICT_ATTEMPTS
    with pytest.raises(ClientError) as failed:
        meter.admit(snapshot, 2_000, 10, str(uuid.uuid4()), utc_now())
    assert left == [0] and gave_up_on_conflicts(failed.value)
    stored_key = _stored(tables["ApiKeysTable"], {"keyHash": {"S": key.key_hash}})
    assert (stored_key["shards"], stored_key.get("spendMicros", 0), stored_key.get("version", 0)) == (8, 0, key.version)
    fresh = meter.keys.lookup(plaintext)
    assert fresh is not None and fresh.shards == 8 and meter.shards.serves(fresh, 10)
    admission = meter.admit(fresh, 2_000, 10, str(uuid.uuid4()), utc_now())
    assert admission.shard is not None


def test_no_conflict_promotes_nothing_and_a_key_with_a_budget_reset_stays_direct(account, tables, monkeypatch) -> None:
    """Given credit keys admitted without conflicts, then nothing is promoted; given a key with a budget reset
    (not served from shards), then a conflict promotes nothing either."""
    plaintext, key = _credit_key(account)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False))
    meter.admit(meter.keys.lookup(plaintext), 2_000, 10, str(uuid.uuid4()), utc_now())
    assert "shards" not in _stored(tables["ApiKeysTable"], {"keyHash": {"S": key.key_hash}})
    plaintext, key = _credit_key(account, budget_reset="daily")
    _conflicts_first(monkeypatch, 1)
    meter.admit(meter.keys.lookup(plaintext), 2_000, 10, str(uuid.uuid4()), utc_now())
    assert "shards" not in _stored(tables["ApiKeysTable"], {"keyHash": {"S": key.key_hash}})


def test_a_conflict_on_a_shard_doubles_the_shards(account, tables, monkeypatch) -> None:
    """Given a key in shard mode (8), when an admission on one of its shards meets a conflict, then the key
    has 16 shards (a promotion never lowers the count; at most 256)."""
    from llm_platform.domain import hot_keys

    plaintext, key = _credit_key(account)
    assert hot_keys.promote(key.key_hash, key.key_id, account.account_id)
    meter = Meter(KeyCache(), LeasePolicy(enabled=False), KeyShards(choose=lambda shards: 0))
    snapshot = meter.keys.lookup(plaintext)
    assert snapshot.shards == 8
    first = meter.admit(snapshot, 2_000, 10, str(uuid.uuid4()), utc_now())  # refills shard 0
    assert first.shard is not None and first.shard.refilled_requests >= 2
    _conflicts_first(monkeypatch, 1)
    second = meter.admit(snapshot, 2_000, 10, str(uuid.uuid4()), utc_now())  # on shard 0, after a conflict
    assert second.shard is not None and second.shard.conflicts == 1
    assert _stored(tables["ApiKeysTable"], {"keyHash": {"S": key.key_hash}})["shards"] == 16
    assert meter.keys.lookup(plaintext).shards == 16
    assert not hot_keys.promote(key.key_hash, key.key_id, account.account_id, 8)  # never fewer
    assert hot_keys.next_shards(0) == 8 and hot_keys.next_shards(256) == 256


def _snapshot(rpm: int = 1_000, tpm: int = 1_000_000, shards: int = 8) -> KeySnapshot:
    return KeySnapshot("hash", "hash", "key_1", "acct", True, rpm, tpm, None, None, None, None, shards=shards)


def _plan(reserve_tokens: int = 10) -> store.AdmitPlan:
    return store.AdmitPlan("hash", "key_1", "acct", ("key#key_1", "minute#1"), 0, 1_000, 1_000_000, 2_000,
                           reserve_tokens, "now", 0)  # fmt: skip


def test_a_slice_follows_the_shards_rate_within_its_bounds() -> None:
    """A shard's first slice is 2 requests; then what its last slice served over the time since x 10 s, at
    most 4x the last slice and rpm // S; TPM likewise; none when a shard's share cannot hold 2 requests."""
    shards = KeyShards(ShardPolicy())
    key, plan = _snapshot(), _plan()
    assert shards.slice(key, plan, {}, 0) == (2, 20)
    # 8 requests served in 2 s: 4/s x 10 s = 40, capped at 4 x 8 = 32
    assert shards.slice(key, plan, {"slice": 8, "requestsLeft": 0, "refilledAt": 0}, 2_000) == (32, 320)
    # 2 served in 10 s: 2
    assert shards.slice(key, plan, {"slice": 2, "requestsLeft": 0, "refilledAt": 0}, 10_000) == (2, 20)
    # capped at rpm // S = 125 and tpm // S
    busy = {"slice": 100, "requestsLeft": 0, "refilledAt": 0}
    assert shards.slice(key, plan, busy, 100) == (125, 1_250)
    assert shards.slice(_snapshot(tpm=8_000), plan, busy, 100) == (125, 1_000)
    assert not shards.serves(_snapshot(rpm=15), 10) and shards.serves(_snapshot(rpm=16), 10)
    assert not shards.serves(_snapshot(shards=0), 10) and not KeyShards(ShardPolicy(enabled=False)).serves(key, 10)
