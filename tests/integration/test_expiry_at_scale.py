"""The expiry job cannot be stalled by one customer (issue 13, item 3), on DynamoDB Local: a lapsed
subscription with 5,000 keys expires in one run, with its keys revoked in bounded batches, and the
subscription due after it still renews in that run, before any revocation work."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from llm_platform.core.entities import PaymentMethod
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import client
from llm_platform.data.records import to_record_item
from llm_platform.domain import accounts, billing, subscriptions
from llm_platform.domain.accounts import create_account
from llm_platform.domain.api_keys import new_subscription_key
from llm_platform.domain.plans import catalog

MANY = 5_000


def _lapsed(account_id: str, plan: str, method: PaymentMethod, days_ago: int):
    start = datetime.now(UTC) - timedelta(days=days_ago)
    subscription = billing.new_subscription(account_id, catalog().plan(plan), method, start)
    subscriptions_table.add(subscription)
    return subscription


def _many_keys(table: str, account_id: str, subscription, count: int) -> list[str]:
    """``count`` keys on the subscription, written in batches (as keys piled up before the caps)."""
    hashes = []
    requests = []
    for n in range(count):
        key, _ = new_subscription_key(account_id, subscription, f"k{n}")
        hashes.append(key.key_hash)
        requests.append({"PutRequest": {"Item": to_record_item(key)}})
    for i in range(0, len(requests), 25):
        batch = {table: requests[i : i + 25]}
        while batch:
            batch = client().batch_write_item(RequestItems=batch).get("UnprocessedItems") or None
    return hashes


def _statuses(table: str, hashes: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(0, len(hashes), 100):
        keys = [{"keyHash": {"S": h}} for h in hashes[i : i + 100]]
        pending = {table: {"Keys": keys, "ProjectionExpression": "#s", "ExpressionAttributeNames": {"#s": "status"}}}
        while pending:
            response = client().batch_get_item(RequestItems=pending)
            for item in response["Responses"][table]:
                counts[item["status"]["S"]] = counts.get(item["status"]["S"], 0) + 1
            pending = response.get("UnprocessedKeys") or None
    return counts


def test_5000_keys_on_a_lapsed_subscription_expire_in_one_run_and_the_next_still_renews(
    local_stack, monkeypatch
) -> None:
    table = local_stack.table_names["ApiKeysTable"]
    # Given a lapsed (granted, not renewable) subscription with 5,000 keys, due first
    hoarder = create_account("hoarder")
    crowded = _lapsed(hoarder.account_id, "pro", PaymentMethod.GRANT, days_ago=60)
    hashes = _many_keys(table, hoarder.account_id, crowded, MANY)
    # And another customer's credit-paid subscription due after it, with the balance to renew
    payer = create_account("payer")
    accounts.grant_credit(payer.account_id, 20_000_000, "test")
    renewing = _lapsed(payer.account_id, "standard", PaymentMethod.CREDIT, days_ago=31)
    # (what the run writes, in order)
    writes: list[str] = []
    real_transact = subscriptions.transact

    def recording_transact(items, **kwargs):
        writes.append("renewal" if any("Ledger" in str(i) for i in items) else "other")
        return real_transact(items, **kwargs)

    monkeypatch.setattr(subscriptions, "transact", recording_transact)
    calls = {"UpdateItem": 0, "TransactWriteItems": 0}
    real_client = client()
    for operation, method in (("UpdateItem", "update_item"), ("TransactWriteItems", "transact_write_items")):
        real = getattr(real_client, method)

        def counted(*args, _real=real, _op=operation, **kwargs):
            calls[_op] += 1
            if (
                _op == "UpdateItem"
                and "keyHash" in kwargs.get("Key", {})
                or _op == "TransactWriteItems"
                and any("keyHash" in item.get("Update", {}).get("Key", {}) for item in kwargs.get("TransactItems", []))
            ):
                writes.append("revoke")
            return _real(*args, **kwargs)

        monkeypatch.setattr(real_client, method, counted)

    # When the expiry job runs once
    started = time.monotonic()
    report = subscriptions.run_expiry()
    elapsed = time.monotonic() - started
    print(f"\none run: {elapsed:.1f} s, {calls} for {MANY} keys")

    # Then the crowded subscription expired and every one of its keys is revoked
    assert subscriptions_table.get(crowded.subscription_id).status == "expired"
    assert report.keys_revoked == MANY
    assert _statuses(table, hashes) == {"revoked": MANY}
    # And the other customer's subscription renewed in the same run, before any key was revoked
    assert report.renewed == [renewing.subscription_id]
    assert subscriptions_table.get(renewing.subscription_id).current_period_end > renewing.current_period_end
    assert writes.index("renewal") < writes.index("revoke")
    # And the revocations were batched: a few dozen writes for 5,000 keys, not one per key
    assert calls["UpdateItem"] + calls["TransactWriteItems"] < MANY / 20
    # And the next run has nothing left to do
    again = subscriptions.run_expiry()
    assert (again.renewed, again.expired, again.keys_revoked) == ([], [], 0)


def test_revocation_is_resumable_under_a_per_run_budget(local_stack, monkeypatch) -> None:
    """With a budget of 300 revocations a run, 1,000 keys take 4 runs, each continuing where the last
    stopped; the subscription expires (and its keys are refused by admission) in the first."""
    table = local_stack.table_names["ApiKeysTable"]
    monkeypatch.setenv("EXPIRY_REVOCATIONS_PER_RUN", "300")
    from llm_platform.config import get_settings

    get_settings.cache_clear()
    owner = create_account("budgeted")
    lapsed = _lapsed(owner.account_id, "pro", PaymentMethod.GRANT, days_ago=45)
    hashes = _many_keys(table, owner.account_id, lapsed, 1_000)
    revoked_per_run = []
    for _ in range(4):
        report = subscriptions.run_expiry()
        revoked_per_run.append(report.keys_revoked)
        assert subscriptions_table.get(lapsed.subscription_id).status == "expired"
    get_settings.cache_clear()
    assert revoked_per_run == [300, 300, 300, 100]
    assert _statuses(table, hashes) == {"revoked": 1_000}
    assert subscriptions.run_expiry().keys_revoked == 0
    assert replace(lapsed).subscription_id not in [s.subscription_id for s in subscriptions_table.due("9999")]
