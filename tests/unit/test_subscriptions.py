"""Subscriptions paid from credits, cancel, and the expiry run, on moto (races: tests/integration)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from llm_platform.core.entities import PaymentMethod
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain import accounts, billing, subscriptions
from llm_platform.domain.accounts import Caller, create_account
from llm_platform.domain.credentials import hash_secret
from llm_platform.domain.plans import catalog


def subscribe(invoke, mk: str, **body) -> tuple[int, dict]:
    return invoke("subscribe", "POST", "/api/billing/subscribe", key=mk, body=body)


def balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


def ledger_sum(tables, account_id: str) -> int:
    items = boto3.client("dynamodb").query(
        TableName=tables["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account_id}},
    )["Items"]
    return sum(int(i["amountMicros"]["N"]) for i in items)


def test_subscribe_pays_one_period_and_returns_the_key_once(invoke, account, tables) -> None:
    accounts.grant_credit(account.account_id, 100_000_000, "test")
    status, body = subscribe(invoke, account.management_key, planSlug="pro", createKey=True, keyName="client-acme")
    assert status == 201
    subscription, key = body["data"]["subscription"], body["data"]["key"]
    assert subscription["planSlug"] == "pro" and subscription["status"] == "active"
    assert key["name"] == "client-acme" and key["apiKey"].startswith("sk_live_")
    assert balance(account.account_id) == 40_000_000 == ledger_sum(tables, account.account_id)
    stored = api_keys_table.get_by_hash(hash_secret(key["apiKey"]))
    assert (stored.subscription_id, stored.rpm, stored.tpm) == (subscription["id"], 200, 13333)
    _, status_body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    assert status_body["data"]["subscriptions"][0]["keyCount"] == 1
    assert status_body["data"]["creditBalance"] == "40.00"


def test_subscribe_without_key(invoke, account) -> None:
    accounts.grant_credit(account.account_id, 20_000_000, "test")
    status, body = subscribe(invoke, account.management_key, planSlug="standard")
    assert status == 201 and "key" not in body["data"]
    assert balance(account.account_id) == 0


def test_a_short_balance_is_402_and_leaves_nothing(invoke, account, tables) -> None:
    accounts.grant_credit(account.account_id, 59_999_999, "test")
    status, body = subscribe(invoke, account.management_key, planSlug="pro", createKey=True)
    assert (status, body["error"]["code"]) == (402, "insufficient_credit")
    assert balance(account.account_id) == 59_999_999 == ledger_sum(tables, account.account_id)
    _, status_body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    assert status_body["data"]["subscriptions"] == []
    assert invoke("list_keys", "GET", "/api/keys", key=account.management_key)[1]["data"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"planSlug": "enterprise"}, 400, "unknown_plan"),
        ({}, 422, "validation_error"),
        ({"planSlug": "pro", "createKey": "yes"}, 422, "validation_error"),
        ({"planSlug": "pro", "keyName": ""}, 422, "validation_error"),
        ({"planSlug": "pro", "coupon": "FREE"}, 422, "validation_error"),
    ],
)
def test_bad_subscribe_requests(invoke, account, body, status, code) -> None:
    accounts.grant_credit(account.account_id, 100_000_000, "test")
    got, response = subscribe(invoke, account.management_key, **body)
    assert (got, response["error"]["code"]) == (status, code)
    assert balance(account.account_id) == 100_000_000


def test_cancel_keeps_it_active_to_period_end_once(invoke, account) -> None:
    accounts.grant_credit(account.account_id, 20_000_000, "test")
    _, body = subscribe(invoke, account.management_key, planSlug="standard")
    sub = body["data"]["subscription"]
    status, cancelled = invoke(
        "cancel_subscription",
        "POST",
        "/api/billing/cancel",
        key=account.management_key,
        body={"subscriptionId": sub["id"]},
    )
    assert status == 200
    assert cancelled["data"] == {
        "id": sub["id"],
        "cancelAtPeriodEnd": True,
        "currentPeriodEnd": sub["currentPeriodEnd"],
    }
    _, status_body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    assert status_body["data"]["subscriptions"][0]["status"] == "active"
    assert status_body["data"]["subscriptions"][0]["cancelAtPeriodEnd"] is True
    status, again = invoke(
        "cancel_subscription",
        "POST",
        "/api/billing/cancel",
        key=account.management_key,
        body={"subscriptionId": sub["id"]},
    )
    assert (status, again["error"]["code"]) == (409, "already_cancelled")
    other = create_account("other")
    status, _ = invoke(
        "cancel_subscription",
        "POST",
        "/api/billing/cancel",
        key=other.management_key,
        body={"subscriptionId": sub["id"]},
    )
    assert status == 404


# ------------------------------------------------------------------ the expiry run


def _lapsed(account_id: str, plan: str, method: PaymentMethod, *, cancel: bool = False, days_ago: int = 31):
    """A subscription whose period ended ``days_ago - 30``-ish days ago, with one key."""
    start = datetime.now(UTC) - timedelta(days=days_ago)
    subscription = billing.new_subscription(account_id, catalog().plan(plan), method, start)
    subscription = replace(subscription, cancel_at_period_end=cancel)
    subscriptions_table.add(subscription)
    from llm_platform.domain.api_keys import new_subscription_key

    key, plaintext = new_subscription_key(account_id, subscription, "k")
    api_keys_table.add(key)
    return subscription, plaintext


def test_expiry_renews_from_credit_or_expires_and_touches_nothing_else(tables) -> None:
    rich = create_account("rich")
    accounts.grant_credit(rich.account_id, 25_000_000, "test")
    poor = create_account("poor")
    renewing, renewing_key = _lapsed(rich.account_id, "standard", PaymentMethod.CREDIT)
    short, short_key = _lapsed(poor.account_id, "pro", PaymentMethod.CREDIT)
    cancelled, cancelled_key = _lapsed(rich.account_id, "standard", PaymentMethod.CREDIT, cancel=True)
    granted, granted_key = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT)
    current, current_key = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT, days_ago=1)

    report = subscriptions.run_expiry()

    assert report.renewed == [renewing.subscription_id]
    assert sorted(report.expired) == sorted([short.subscription_id, cancelled.subscription_id, granted.subscription_id])
    assert report.keys_revoked == 3
    # The renewed one moved one period on, paid from the balance (with a ledger entry), keys intact
    renewed = subscriptions_table.get(renewing.subscription_id)
    assert renewed.current_period_start == renewing.current_period_end
    assert renewed.current_period_end > renewing.current_period_end and renewed.status == "active"
    assert balance(rich.account_id) == 5_000_000 == ledger_sum(tables, rich.account_id)
    assert api_keys_table.get_by_hash(hash_secret(renewing_key)).status == "active"
    # The others expired with their keys revoked; the current one and its key are untouched
    for sub, key in ((short, short_key), (cancelled, cancelled_key), (granted, granted_key)):
        assert subscriptions_table.get(sub.subscription_id).status == "expired"
        assert api_keys_table.get_by_hash(hash_secret(key)).status == "revoked"
    assert subscriptions_table.get(current.subscription_id).status == "active"
    assert api_keys_table.get_by_hash(hash_secret(current_key)).status == "active"
    assert balance(poor.account_id) == 0
    # And running it again changes nothing
    again = subscriptions.run_expiry()
    assert (again.renewed, again.expired, again.keys_revoked) == ([], [], 0)
    assert balance(rich.account_id) == 5_000_000


def test_a_run_that_stopped_half_way_is_finished_by_the_next(tables) -> None:
    poor = create_account("poor")
    lapsed, key = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT)
    subscriptions_table.mark_expired(lapsed)  # the previous run died right after this step
    report = subscriptions.run_expiry()
    assert report.expired == [lapsed.subscription_id] and report.keys_revoked == 1
    assert api_keys_table.get_by_hash(hash_secret(key)).status == "revoked"
    assert subscriptions.run_expiry().expired == []


def test_a_renewal_between_read_and_expiry_wins(tables, monkeypatch) -> None:
    poor = create_account("poor")
    lapsed, key = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT)
    # Given the run reads the subscription, then its period is extended (e.g. a payment) before it acts
    extended = replace(lapsed, current_period_end=(datetime.now(UTC) + timedelta(days=30)).isoformat())
    monkeypatch.setattr(subscriptions_table, "due", lambda now: [lapsed])
    boto3.client("dynamodb").update_item(
        TableName=tables["SubscriptionsTable"],
        Key={"subscriptionId": {"S": lapsed.subscription_id}},
        UpdateExpression="SET currentPeriodEnd = :end",
        ExpressionAttributeValues={":end": {"S": extended.current_period_end}},
    )
    # Then nothing is expired or revoked
    report = subscriptions.run_expiry()
    assert report.expired == [] and report.keys_revoked == 0
    assert api_keys_table.get_by_hash(hash_secret(key)).status == "active"


def test_items_without_cancel_flag_still_renew_and_cancel(tables, invoke) -> None:
    rich = create_account("legacy")
    accounts.grant_credit(rich.account_id, 50_000_000, "test")
    lapsed, _ = _lapsed(rich.account_id, "standard", PaymentMethod.CREDIT)
    boto3.client("dynamodb").update_item(
        TableName=tables["SubscriptionsTable"],
        Key={"subscriptionId": {"S": lapsed.subscription_id}},
        UpdateExpression="REMOVE cancelAtPeriodEnd",
    )
    assert subscriptions.run_expiry().renewed == [lapsed.subscription_id]
    status, body = invoke(
        "cancel_subscription",
        "POST",
        "/api/billing/cancel",
        key=rich.management_key,
        body={"subscriptionId": lapsed.subscription_id},
    )
    assert status == 200 and body["data"]["cancelAtPeriodEnd"] is True


def test_only_a_short_balance_is_402(account, monkeypatch) -> None:
    from llm_platform.data.dynamo import WriteRefused

    def refused(items, **_):
        raise WriteRefused(["None", "ConditionalCheckFailed", "None"])  # e.g. a retried, committed request

    monkeypatch.setattr(subscriptions, "transact", refused)
    caller = Caller(account.account_id, account.management_key_id)
    with pytest.raises(WriteRefused):
        subscriptions.subscribe_with_credit(caller, "standard", False, None)


def test_one_failing_subscription_does_not_hold_up_the_others(tables, monkeypatch) -> None:
    poor = create_account("poor")
    broken, _ = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT, days_ago=40)
    fine, fine_key = _lapsed(poor.account_id, "pro", PaymentMethod.GRANT, days_ago=35)
    real = subscriptions.revoke_subscription_keys

    def flaky(subscription_id, now, budget, deadline=None):
        if subscription_id == broken.subscription_id:
            raise RuntimeError("boom")
        return real(subscription_id, now, budget, deadline)

    monkeypatch.setattr(subscriptions, "revoke_subscription_keys", flaky)
    with pytest.raises(subscriptions.ExpiryIncomplete) as incomplete:
        subscriptions.run_expiry()
    assert incomplete.value.failed == [broken.subscription_id]
    # (both expired first: admission refuses their keys whatever happens to the revocation)
    assert incomplete.value.report.expired == [broken.subscription_id, fine.subscription_id]
    assert api_keys_table.get_by_hash(hash_secret(fine_key)).status == "revoked"
    # The broken one stays due, so the next (healthy) run finishes it
    monkeypatch.setattr(subscriptions, "revoke_subscription_keys", real)
    assert subscriptions.run_expiry().expired == [broken.subscription_id]


def test_after_a_long_lapse_the_new_period_starts_now_and_is_charged_once(tables) -> None:
    rich = create_account("returning")
    accounts.grant_credit(rich.account_id, 100_000_000, "test")
    lapsed, _ = _lapsed(rich.account_id, "standard", PaymentMethod.CREDIT, days_ago=120)
    before = datetime.now(UTC)
    assert subscriptions.run_expiry().renewed == [lapsed.subscription_id]
    renewed = subscriptions_table.get(lapsed.subscription_id)
    assert renewed.current_period_start >= before.isoformat()[:19]  # started now, not months ago
    assert renewed.current_period_end > datetime.now(UTC).isoformat()[:19]
    assert balance(rich.account_id) == 80_000_000  # one period, not four
    assert subscriptions.run_expiry().renewed == []
