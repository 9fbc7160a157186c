"""Management API handlers called as Lambda would call them (API Gateway events), on moto."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from llm_platform.core.clock import from_iso, to_iso
from llm_platform.core.entities import PaymentMethod, SubscriptionStatus
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain import billing
from llm_platform.domain.accounts import create_account
from llm_platform.domain.plans import catalog

# ------------------------------------------------------------------ billing status


def test_status_of_a_new_account_is_empty_with_zero_balance(invoke, account) -> None:
    status, body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    assert status == 200
    assert body == {"data": {"subscriptions": [], "creditBalance": "0.00"}}


def test_status_lists_subscriptions_with_their_live_keys(invoke, account) -> None:
    # Given a pro subscription with two keys, one of them revoked
    subscription = billing.grant_subscription(account.account_id, "pro")
    keys = []
    for name in ("prod-api", "staging"):
        _, created = invoke(
            "create_subscription_key",
            "POST",
            "/api/keys/subscription",
            key=account.management_key,
            body={"name": name, "subscriptionId": subscription.subscription_id},
        )
        keys.append(created["data"])
    invoke("delete_key", "DELETE", f"/api/keys/{keys[1]['id']}", resource="/api/keys/{id}", key=account.management_key)
    # When the status is read
    status, body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    # Then the subscription shows in the documented shape with only the live key
    assert status == 200
    [shown] = body["data"]["subscriptions"]
    assert shown == {
        "id": subscription.subscription_id,
        "planSlug": "pro",
        "status": "active",
        "currentPeriodEnd": subscription.current_period_end,
        "cancelAtPeriodEnd": False,
        "keyCount": 1,
        "keys": [{"id": keys[0]["id"], "name": "prod-api"}],
        "budgetWindow": {
            "start": subscription.created_at,  # its first 5-hour window, anchored at its start
            "resetsAt": to_iso(from_iso(subscription.created_at) + timedelta(hours=5)),
            "budget": "0.42",
            "spent": "0.00",
        },
    }
    assert shown["currentPeriodEnd"].endswith("Z")


def test_status_gives_a_subscription_without_keys_its_current_budget_window(invoke, account, tables) -> None:
    # Given a pro subscription started 6 hours ago (now in its second 5-hour window) with no key at all,
    # the proxy's counter of that window at $0.15 and the first window's left over at $0.40
    started = datetime.now(UTC) - timedelta(hours=6)
    subscription = billing.new_subscription(account.account_id, catalog().plan("pro"), PaymentMethod.GRANT, started)
    subscriptions_table.add(subscription)
    for window, spent in (("window#1", "150000"), ("window#0", "400000")):
        boto3.client("dynamodb").put_item(
            TableName=tables["UsageCountersTable"],
            Item={
                "pk": {"S": f"sub#{subscription.subscription_id}"},
                "sk": {"S": window},
                "spendMicros": {"N": spent},
            },
        )
    # And an expired subscription
    expired = billing.new_subscription(account.account_id, catalog().plan("standard"), PaymentMethod.GRANT, started)
    subscriptions_table.add(replace(expired, subscription_id="sub_expired", status=SubscriptionStatus.EXPIRED))

    # When the status is read
    status, body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)

    # Then the keyless subscription says what its keys spent in the current window and when it resets
    assert status == 200
    windows = {s["id"]: s["budgetWindow"] for s in body["data"]["subscriptions"]}
    second_start = from_iso(subscription.created_at) + timedelta(hours=5)
    assert windows[subscription.subscription_id] == {
        "start": to_iso(second_start),
        "resetsAt": to_iso(second_start + timedelta(hours=5)),
        "budget": "0.42",
        "spent": "0.15",
    }
    # And the expired one has no window (nothing to spend)
    assert windows["sub_expired"] is None


# ------------------------------------------------------------------ credit keys


def test_credit_key_is_returned_once_and_stored_only_as_hash(invoke, account, tables) -> None:
    status, body = invoke(
        "create_credit_key",
        "POST",
        "/api/keys/credit",
        key=account.management_key,
        body={"name": "client-acme", "maxBudget": 25, "rpm": 100, "tpm": 50000},
    )
    assert status == 201
    created = body["data"]
    assert set(created) == {"id", "name", "apiKey"}
    assert created["apiKey"].startswith("sk_live_")
    # The table holds the hash and a prefix, never the plaintext
    items = boto3.client("dynamodb").scan(TableName=tables["ApiKeysTable"])["Items"]
    [stored] = [item for item in items if "accountId" in item]  # the other is its id pointer (hash only)
    assert stored["keyHash"]["S"] == hashlib.sha256(created["apiKey"].encode()).hexdigest()
    assert {item["keyHash"]["S"] for item in items} == {stored["keyHash"]["S"], f"id#{created['id']}"}
    assert created["apiKey"] not in json.dumps(items)
    # And listing shows the limits but no secret
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    [shown] = listed["data"]
    assert shown["maxBudget"] == "25.00" and shown["rpm"] == 100 and shown["tpm"] == 50000
    assert shown["type"] == "credit" and shown["status"] == "active"
    assert created["apiKey"] not in json.dumps(listed)


def test_credit_key_without_limits_gets_the_catalog_defaults(invoke, account) -> None:
    invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, body={"name": "k"})
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    policy = catalog().credit_keys
    assert (listed["data"][0]["rpm"], listed["data"][0]["tpm"]) == (policy.default_rpm, policy.default_tpm)
    assert listed["data"][0]["maxBudget"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 65},
        {"name": "bad\nname"},
        {"name": "k", "maxBudget": 0},
        {"name": "k", "maxBudget": -5},
        {"name": "k", "maxBudget": "abc"},
        {"name": "k", "maxBudget": True},
        {"name": "k", "maxBudget": 0.0000001},
        {"name": "k", "maxBudget": 10_000_001},
        {"name": "k", "rpm": 0},
        {"name": "k", "rpm": "5"},
        {"name": "k", "rpm": 2.5},
        {"name": "k", "rpm": 10**9},
        {"name": "k", "tpm": -1},
        {"name": "k", "budget": 5},
        {"name": 5},
    ],
)
def test_bad_credit_key_bodies_are_refused_with_422_and_create_nothing(invoke, account, body) -> None:
    status, response = invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, body=body)
    assert status == 422
    assert response["error"]["code"] == "validation_error"
    assert response["error"]["message"]
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert listed["data"] == []


def test_max_budget_keeps_decimal_precision(invoke, account) -> None:
    invoke(
        "create_credit_key",
        "POST",
        "/api/keys/credit",
        key=account.management_key,
        body={"name": "k", "maxBudget": "0.1"},
    )
    invoke(
        "create_credit_key",
        "POST",
        "/api/keys/credit",
        key=account.management_key,
        body={"name": "j", "maxBudget": 12.345678},
    )
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert sorted(k["maxBudget"] for k in listed["data"]) == ["0.10", "12.345678"]


# ------------------------------------------------------------------ subscription keys


def test_subscription_key_takes_the_plan_limits(invoke, account) -> None:
    subscription = billing.grant_subscription(account.account_id, "standard")
    status, body = invoke(
        "create_subscription_key",
        "POST",
        "/api/keys/subscription",
        key=account.management_key,
        body={"name": "prod-api", "subscriptionId": subscription.subscription_id},
    )
    assert status == 201 and body["data"]["apiKey"].startswith("sk_live_")
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    [key] = listed["data"]
    assert (key["type"], key["subscriptionId"], key["rpm"], key["tpm"]) == (
        "subscription",
        subscription.subscription_id,
        60,
        3333,
    )


def test_subscription_key_on_another_accounts_subscription_is_not_found(invoke, account) -> None:
    other = create_account("other")
    theirs = billing.grant_subscription(other.account_id, "pro")
    for subscription_id in (theirs.subscription_id, "sub_doesnotexist"):
        status, body = invoke(
            "create_subscription_key",
            "POST",
            "/api/keys/subscription",
            key=account.management_key,
            body={"name": "steal", "subscriptionId": subscription_id},
        )
        assert (status, body["error"]["code"]) == (404, "not_found")
    _, listed = invoke("list_keys", "GET", "/api/keys", key=other.management_key)
    assert listed["data"] == []


@pytest.mark.parametrize("lapse", ["expired_status", "period_over"])
def test_subscription_key_needs_an_active_subscription(invoke, account, lapse) -> None:
    # Given a subscription that is expired, or whose period is over
    start = datetime.now(UTC) - timedelta(days=40)
    subscription = billing.new_subscription(account.account_id, catalog().plan("pro"), PaymentMethod.CREDIT, start)
    if lapse == "expired_status":
        subscription = type(subscription)(
            **{
                **{f: getattr(subscription, f) for f in subscription.__slots__},
                "status": SubscriptionStatus.EXPIRED,
                "current_period_end": to_iso(datetime.now(UTC) + timedelta(days=1)),
            }
        )
    subscriptions_table.add(subscription)
    # When a key is requested on it, then 409 and no key
    status, body = invoke(
        "create_subscription_key",
        "POST",
        "/api/keys/subscription",
        key=account.management_key,
        body={"name": "late", "subscriptionId": subscription.subscription_id},
    )
    assert (status, body["error"]["code"]) == (409, "subscription_not_active")
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert listed["data"] == []


# ------------------------------------------------------------------ update and delete


@pytest.fixture
def credit_key(invoke, account) -> dict:
    _, body = invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, body={"name": "k1"})
    return body["data"]


def _patch(invoke, mk, key_id, body):
    return invoke("update_key", "PATCH", f"/api/keys/{key_id}", resource="/api/keys/{id}", key=mk, body=body)


def test_disable_enable_and_rename_a_key(invoke, account, credit_key) -> None:
    status, body = _patch(invoke, account.management_key, credit_key["id"], {"disabled": True})
    assert status == 200 and body["data"]["status"] == "disabled" and body["data"]["disabled"] is True
    status, body = _patch(invoke, account.management_key, credit_key["id"], {"disabled": False, "name": "renamed"})
    assert status == 200 and body["data"]["status"] == "active" and body["data"]["name"] == "renamed"


@pytest.mark.parametrize("body", [{}, {"disabled": "yes"}, {"disabled": 1}, {"status": "active"}, {"name": ""}])
def test_bad_update_bodies_are_refused(invoke, account, credit_key, body) -> None:
    status, response = _patch(invoke, account.management_key, credit_key["id"], body)
    assert (status, response["error"]["code"]) == (422, "validation_error")
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert listed["data"][0]["name"] == "k1" and listed["data"][0]["status"] == "active"


def test_delete_revokes_at_once_and_a_second_delete_is_not_found(invoke, account, credit_key) -> None:
    path, resource = f"/api/keys/{credit_key['id']}", "/api/keys/{id}"
    status, body = invoke("delete_key", "DELETE", path, resource=resource, key=account.management_key)
    assert status == 200 and body["data"] == {"id": credit_key["id"], "revoked": True}
    from llm_platform.data import api_keys as api_keys_table

    stored = api_keys_table.get_by_hash(hashlib.sha256(credit_key["apiKey"].encode()).hexdigest())
    assert stored.status == "revoked" and stored.revoked_at
    status, body = invoke("delete_key", "DELETE", path, resource=resource, key=account.management_key)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = _patch(invoke, account.management_key, credit_key["id"], {"disabled": False})
    assert status == 404
    _, listed = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert listed["data"] == []


def test_another_accounts_key_cannot_be_seen_changed_or_deleted(invoke, account, credit_key) -> None:
    other = create_account("intruder")
    path, resource = f"/api/keys/{credit_key['id']}", "/api/keys/{id}"
    assert _patch(invoke, other.management_key, credit_key["id"], {"disabled": True})[0] == 404
    assert invoke("delete_key", "DELETE", path, resource=resource, key=other.management_key)[0] == 404
    _, listed = invoke("list_keys", "GET", "/api/keys", key=other.management_key)
    assert listed["data"] == []
    _, usage = invoke("get_usage", "GET", "/api/usage", key=other.management_key)
    assert usage["data"] == []
    # The owner's key is untouched
    _, mine = invoke("list_keys", "GET", "/api/keys", key=account.management_key)
    assert mine["data"][0]["status"] == "active"


# ------------------------------------------------------------------ usage


def test_usage_reads_the_counters_the_proxy_writes(invoke, account, tables) -> None:
    # Given a subscription key, and counters as the proxy leaves them for this minute and window
    subscription = billing.grant_subscription(account.account_id, "pro")
    _, created = invoke(
        "create_subscription_key",
        "POST",
        "/api/keys/subscription",
        key=account.management_key,
        body={"name": "k", "subscriptionId": subscription.subscription_id},
    )
    key_id = created["data"]["id"]
    from llm_platform.domain.windows import minute_window

    dynamodb = boto3.client("dynamodb")
    minute = minute_window(datetime.now(UTC)).index
    dynamodb.put_item(
        TableName=tables["UsageCountersTable"],
        Item={
            "pk": {"S": f"key#{key_id}"},
            "sk": {"S": f"minute#{minute}"},
            "requests": {"N": "3"},
            "tokens": {"N": "120"},
        },
    )
    dynamodb.put_item(
        TableName=tables["UsageCountersTable"],
        Item={
            "pk": {"S": f"sub#{subscription.subscription_id}"},
            "sk": {"S": "window#0"},
            "spendMicros": {"N": "100000"},
            "requests": {"N": "3"},
            "tokens": {"N": "120"},
        },
    )
    # When usage is read
    status, body = invoke("get_usage", "GET", "/api/usage", key=account.management_key)
    # Then the key shows its subscription, limits and current windows
    assert status == 200
    [entry] = body["data"]
    assert entry["subscription"]["id"] == subscription.subscription_id
    assert entry["limits"] == {"rpm": 200, "tpm": 13333, "maxBudget": None, "budgetPer5h": "0.42"}
    assert entry["usage"]["currentMinute"]["requests"] == 3 and entry["usage"]["currentMinute"]["tokens"] == 120
    window = entry["usage"]["currentBudgetWindow"]
    assert (window["spend"], window["remaining"], window["budget"]) == ("0.10", "0.32", "0.42")
    assert entry["usage"]["lifetime"] == {
        "requests": 0,
        "inputTokens": 0,
        "outputTokens": 0,
        "totalTokens": 0,
        "spend": "0.00",
    }


def test_usage_keeps_revoked_keys_for_history(invoke, account, credit_key) -> None:
    invoke(
        "delete_key", "DELETE", f"/api/keys/{credit_key['id']}", resource="/api/keys/{id}", key=account.management_key
    )
    _, body = invoke("get_usage", "GET", "/api/usage", key=account.management_key)
    assert [(k["id"], k["status"]) for k in body["data"]] == [(credit_key["id"], "revoked")]


# ------------------------------------------------------------------ management keys


def test_management_keys_create_list_use_and_delete(invoke, account) -> None:
    status, body = invoke(
        "create_management_key", "POST", "/api/management-keys", key=account.management_key, body={"name": "ci"}
    )
    assert status == 201
    second = body["data"]
    assert second["managementKey"].startswith("mk_") and second["name"] == "ci"
    # The new key works, and the listing marks which key is calling
    status, listed = invoke("list_management_keys", "GET", "/api/management-keys", key=second["managementKey"])
    assert status == 200
    assert [(k["name"], k["current"]) for k in listed["data"]] == [("default", False), ("ci", True)]
    assert second["managementKey"] not in json.dumps(listed)
    # Deleting it makes it stop working at once
    status, _ = invoke(
        "delete_management_key",
        "DELETE",
        f"/api/management-keys/{second['id']}",
        resource="/api/management-keys/{id}",
        key=account.management_key,
    )
    assert status == 200
    status, body = invoke("list_keys", "GET", "/api/keys", key=second["managementKey"])
    assert (status, body["error"]["code"]) == (401, "invalid_management_key")


def test_the_last_management_key_cannot_be_deleted(invoke, account) -> None:
    _, listed = invoke("list_management_keys", "GET", "/api/management-keys", key=account.management_key)
    [only] = listed["data"]
    status, body = invoke(
        "delete_management_key",
        "DELETE",
        f"/api/management-keys/{only['id']}",
        resource="/api/management-keys/{id}",
        key=account.management_key,
    )
    assert (status, body["error"]["code"]) == (409, "last_management_key")
    assert invoke("list_keys", "GET", "/api/keys", key=account.management_key)[0] == 200


def test_another_accounts_management_key_is_not_found(invoke, account) -> None:
    other = create_account("other")
    _, listed = invoke("list_management_keys", "GET", "/api/management-keys", key=other.management_key)
    status, _ = invoke(
        "delete_management_key",
        "DELETE",
        f"/api/management-keys/{listed['data'][0]['id']}",
        resource="/api/management-keys/{id}",
        key=account.management_key,
    )
    assert status == 404
    assert invoke("list_keys", "GET", "/api/keys", key=other.management_key)[0] == 200


# ------------------------------------------------------------------ auth and request hygiene


@pytest.mark.parametrize(
    ("headers_key", "code"),
    [
        (None, "missing_management_key"),
        ("mk_notarealkey", "invalid_management_key"),
        ("sk_live_abc", "invalid_management_key"),
    ],
)
def test_requests_without_a_valid_management_key_get_401(invoke, tables, headers_key, code) -> None:
    status, body = invoke("billing_status", "GET", "/api/billing/status", key=headers_key)
    assert (status, body["error"]["code"]) == (401, code)


def test_an_api_key_is_not_a_management_key(invoke, account, credit_key) -> None:
    status, body = invoke("list_keys", "GET", "/api/keys", key=credit_key["apiKey"])
    assert (status, body["error"]["code"]) == (401, "invalid_management_key")


def test_auth_is_checked_before_the_body(invoke, tables) -> None:
    status, body = invoke("create_credit_key", "POST", "/api/keys/credit", key="mk_wrong", body={"unknown": 1})
    assert status == 401


def test_malformed_json_is_400(invoke, account) -> None:
    status, body = invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, raw='{"name": ')
    assert (status, body["error"]["code"]) == (400, "invalid_json")


@pytest.mark.parametrize("raw", ["[]", '"name"', "42", "null"])
def test_json_that_is_not_an_object_is_422(invoke, account, raw) -> None:
    status, body = invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, raw=raw)
    assert status == 422, body


def test_oversize_body_is_413_and_creates_nothing(invoke, account) -> None:
    big = json.dumps({"name": "k", "pad": "x" * 20_000})
    status, body = invoke("create_credit_key", "POST", "/api/keys/credit", key=account.management_key, raw=big)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert invoke("list_keys", "GET", "/api/keys", key=account.management_key)[1]["data"] == []


def test_base64_bodies_from_api_gateway_are_decoded(invoke, account) -> None:
    status, body = invoke(
        "create_credit_key",
        "POST",
        "/api/keys/credit",
        key=account.management_key,
        body={"name": "b64"},
        base64_body=True,
    )
    assert status == 201 and body["data"]["name"] == "b64"


def test_body_size_cap_counts_decoded_bytes(invoke, account) -> None:
    raw = json.dumps({"name": "k", "pad": "x" * 20_000})
    status, _ = invoke(
        "create_credit_key", "POST", "/api/keys/credit", key=account.management_key, raw=raw, base64_body=True
    )
    assert status == 413


def test_keys_never_reach_the_logs(invoke, account) -> None:
    # Given the structured log stream captured exactly as Lambda would ship it
    from llm_platform.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        # When a key is created and then (wrongly) used as a management key
        _, body = invoke(
            "create_credit_key", "POST", "/api/keys/credit", key=account.management_key, body={"name": "k"}
        )
        invoke("list_keys", "GET", "/api/keys", key=body["data"]["apiKey"])
    finally:
        logger.removeHandler(handler)
    logs = stream.getvalue()
    # Then requests are logged, the refused one without the previous caller's account, and no secret
    lines = [json.loads(line) for line in logs.splitlines()]
    assert [line["message"] for line in lines] == ["request handled", "request refused"]
    assert lines[0]["account_id"] == account.account_id and "account_id" not in lines[1]
    assert "request handled" in logs and account.account_id in logs  # the structured logger did write
    assert account.management_key not in logs and body["data"]["apiKey"] not in logs


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/x-www-form-urlencoded", "name=x", 415, "unsupported_media_type"),
        ("multipart/form-data", '{"name": "x"}', 415, "unsupported_media_type"),
        ("text/plain", '{"name": "x"}', 415, "unsupported_media_type"),
        ("Application/JSON; charset=UTF-8", '{"name": "x"}', 201, None),
        ("application/vnd.api+json", '{"name": "x"}', 201, None),
    ],
)
def test_a_body_must_be_json(invoke, account, content_type, body, status, code) -> None:
    got, response = invoke(
        "create_management_key",
        "POST",
        "/api/management-keys",
        key=account.management_key,
        raw=body,
        headers={"Content-Type": content_type},
    )
    assert got == status, response
    assert code is None or response["error"]["code"] == code


def test_a_body_sent_with_get_or_delete_is_ignored_as_before(invoke, account, credit_key) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    got, _ = invoke("list_keys", "GET", "/api/keys", key=account.management_key, raw="{}", headers=form)
    assert got == 200
    got, response = invoke(
        "delete_key",
        "DELETE",
        f"/api/keys/{credit_key['id']}",
        resource="/api/keys/{id}",
        key=account.management_key,
        raw="{}",
        headers=form,
    )
    assert got == 200, response


def test_dynamodb_failing_while_authenticating_is_a_json_500_not_a_lambda_error(invoke, account, monkeypatch) -> None:
    # Given DynamoDB refusing to read management keys (throttled past botocore's retries)
    from botocore.exceptions import ClientError

    from llm_platform.data import management_keys

    class Throttled:
        def get_item(self, **_: object) -> None:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetItem")

    monkeypatch.setattr(management_keys, "client", Throttled)

    # When a request with a management key arrives
    status, body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)

    # Then the app answers 500 in the error format itself (an escaped exception is API Gateway's 502)
    assert (status, body) == (
        500,
        {"error": {"code": "internal_error", "message": "Something went wrong on our side."}},
    )
