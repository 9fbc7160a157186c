"""The management API over real HTTP: local gateway (routes from template.yaml) + DynamoDB Local."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from llm_platform.domain import billing
from llm_platform.domain.accounts import CreatedAccount, create_account


@pytest.fixture
def api(local_stack) -> httpx.Client:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def alice(local_stack) -> CreatedAccount:
    return create_account("alice")


@pytest.fixture
def bob(local_stack) -> CreatedAccount:
    return create_account("bob")


def auth(account: CreatedAccount) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.management_key}"}


def test_seed_flow_subscribe_key_list_delete(api, alice) -> None:
    # Given a pro subscription (granted: payment comes with the billing issue)
    subscription = billing.grant_subscription(alice.account_id, "pro")
    # When a key is created on it, as the docs show
    created = api.post(
        "/api/keys/subscription",
        headers={**auth(alice), "Content-Type": "application/json"},
        content=json.dumps({"name": "prod-api", "subscriptionId": subscription.subscription_id}),
    )
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    # Then the status shows it under the subscription
    status = api.get("/api/billing/status", headers=auth(alice)).json()["data"]
    assert status["subscriptions"][0]["keys"] == [{"id": key["id"], "name": "prod-api"}]
    assert status["subscriptions"][0]["keyCount"] == 1 and status["creditBalance"] == "0.00"
    # And a credit key sits beside it; listing shows both without secrets
    credit = api.post(
        "/api/keys/credit", headers=auth(alice), json={"name": "client-acme", "maxBudget": 25, "rpm": 100, "tpm": 50000}
    )
    assert credit.status_code == 201
    listed = api.get("/api/keys", headers=auth(alice))
    assert {k["name"] for k in listed.json()["data"]} == {"prod-api", "client-acme"}
    assert key["apiKey"] not in listed.text and credit.json()["data"]["apiKey"] not in listed.text
    # When the key is deleted, it is gone from the list and usage marks it revoked
    assert api.delete(f"/api/keys/{key['id']}", headers=auth(alice)).status_code == 200
    assert {k["name"] for k in api.get("/api/keys", headers=auth(alice)).json()["data"]} == {"client-acme"}
    usage = api.get("/api/usage", headers=auth(alice)).json()["data"]
    assert {(k["name"], k["status"]) for k in usage} == {("prod-api", "revoked"), ("client-acme", "active")}


def test_revocation_and_disable_are_visible_to_the_next_lookup(api, alice) -> None:
    """What the proxy will read (a consistent GetItem by hash) changes with the management call."""
    from llm_platform.data import api_keys as api_keys_table
    from llm_platform.domain.credentials import hash_secret

    created = api.post("/api/keys/credit", headers=auth(alice), json={"name": "k"}).json()["data"]
    key_hash = hash_secret(created["apiKey"])
    assert api.patch(f"/api/keys/{created['id']}", headers=auth(alice), json={"disabled": True}).status_code == 200
    assert api_keys_table.get_by_hash(key_hash).status == "disabled"
    assert api.patch(f"/api/keys/{created['id']}", headers=auth(alice), json={"disabled": False}).status_code == 200
    assert api_keys_table.get_by_hash(key_hash).status == "active"
    assert api.delete(f"/api/keys/{created['id']}", headers=auth(alice)).status_code == 200
    assert api_keys_table.get_by_hash(key_hash).status == "revoked"


def test_isolation_matrix_other_accounts_ids(api, alice, bob) -> None:
    # Given alice's key, management key and subscription
    subscription = billing.grant_subscription(alice.account_id, "standard")
    key = api.post("/api/keys/credit", headers=auth(alice), json={"name": "mine"}).json()["data"]
    second_mk = api.post("/api/management-keys", headers=auth(alice), json={"name": "second"}).json()["data"]
    # When bob tries every id route on them, then each is 404 not_found
    attempts = [
        api.patch(f"/api/keys/{key['id']}", headers=auth(bob), json={"disabled": True}),
        api.patch(f"/api/keys/{key['id']}", headers=auth(bob), json={"name": "pwned"}),
        api.delete(f"/api/keys/{key['id']}", headers=auth(bob)),
        api.delete(f"/api/management-keys/{second_mk['id']}", headers=auth(bob)),
        api.delete(f"/api/management-keys/{alice.management_key_id}", headers=auth(bob)),
        api.post(
            "/api/keys/subscription",
            headers=auth(bob),
            json={"name": "x", "subscriptionId": subscription.subscription_id},
        ),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in attempts] == [(404, "not_found")] * len(attempts)
    # And bob sees none of it; alice's things are unchanged
    for path in ("/api/keys", "/api/usage", "/api/billing/status", "/api/management-keys"):
        text = api.get(path, headers=auth(bob)).text
        assert key["id"] not in text and subscription.subscription_id not in text and second_mk["id"] not in text
    mine = api.get("/api/keys", headers=auth(alice)).json()["data"]
    assert [(k["name"], k["status"]) for k in mine] == [("mine", "active")]
    assert len(api.get("/api/management-keys", headers=auth(alice)).json()["data"]) == 2
    assert api.get("/api/billing/status", headers=auth(bob)).json()["data"]["subscriptions"] == []


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_management_key"),
        ({"Authorization": "Basic YWxpY2U6cGFzcw=="}, "missing_management_key"),
        ({"Authorization": "Bearer"}, "missing_management_key"),
        ({"Authorization": "Bearer mk_" + "A" * 43}, "invalid_management_key"),
        ({"Authorization": "Bearer sk_live_" + "A" * 43}, "invalid_management_key"),
        ({"Authorization": "Bearer mk_" + "A" * 5000}, "invalid_management_key"),
    ],
)
def test_auth_failures_are_401_on_every_route(api, local_stack, headers, code) -> None:
    for method, path in [
        ("GET", "/api/billing/status"),
        ("POST", "/api/keys/credit"),
        ("GET", "/api/keys"),
        ("PATCH", "/api/keys/key_x"),
        ("DELETE", "/api/keys/key_x"),
        ("GET", "/api/usage"),
        ("POST", "/api/keys/subscription"),
        ("GET", "/api/management-keys"),
        ("POST", "/api/management-keys"),
        ("DELETE", "/api/management-keys/mkey_x"),
    ]:
        response = api.request(
            method, path, headers=headers, json={"name": "x"} if method in ("POST", "PATCH") else None
        )
        assert (response.status_code, response.json()["error"]["code"]) == (401, code), (method, path)


def test_a_deleted_management_key_stops_working(api, alice) -> None:
    second = api.post("/api/management-keys", headers=auth(alice), json={"name": "temp"}).json()["data"]
    headers = {"Authorization": f"Bearer {second['managementKey']}"}
    assert api.get("/api/keys", headers=headers).status_code == 200
    assert api.delete(f"/api/management-keys/{second['id']}", headers=auth(alice)).status_code == 200
    response = api.get("/api/keys", headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_management_key")


def test_bad_bodies_get_clear_errors_and_change_nothing(api, alice) -> None:
    cases = [
        (
            api.post(
                "/api/keys/credit",
                headers={**auth(alice), "Content-Type": "application/json"},
                content=b'{"name": "a",',
            ),
            400,
            "invalid_json",
        ),
        (api.post("/api/keys/credit", headers=auth(alice), json={"name": "a", "admin": True}), 422, "validation_error"),
        (api.post("/api/keys/credit", headers=auth(alice), json={"name": "a", "rpm": -1}), 422, "validation_error"),
        (api.post("/api/management-keys", headers=auth(alice), json={}), 422, "validation_error"),
        (
            api.post("/api/keys/credit", headers={**auth(alice), "Content-Type": "text/plain"}, content=b"name=a"),
            415,
            "unsupported_media_type",
        ),
        (
            api.post("/api/keys/credit", headers=auth(alice), json={"name": "a", "pad": "x" * 20_000}),
            413,
            "payload_too_large",
        ),
        (
            api.post("/api/keys/credit", headers=auth(alice), content=b"x" * (10 * 1024 * 1024 + 1)),
            413,
            "payload_too_large",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert response.json()["error"]["message"]
    assert api.get("/api/keys", headers=auth(alice)).json()["data"] == []
    assert len(api.get("/api/management-keys", headers=auth(alice)).json()["data"]) == 1


def test_unknown_routes_and_methods_are_404_in_the_error_format(api, alice) -> None:
    for method, path in [("GET", "/api/nope"), ("PUT", "/api/keys"), ("POST", "/api/usage"), ("GET", "/api/keys/x/y")]:
        response = api.request(method, path, headers=auth(alice))
        assert (response.status_code, response.json()["error"]["code"]) == (404, "route_not_found"), (method, path)


def test_concurrent_requests_each_see_only_their_own_account(api, local_stack) -> None:
    # Given four accounts
    accounts = [create_account(f"tenant-{i}") for i in range(4)]

    def own_keys_only(i: int) -> bool:
        account = accounts[i % 4]
        response = api.get("/api/management-keys", headers=auth(account))
        return {k["id"] for k in response.json()["data"]} == {account.management_key_id}

    # When they call in parallel through the gateway, then nobody ever sees another's data
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(own_keys_only, range(120)))
    assert results.count(False) == 0


@pytest.mark.parametrize("bad_id", ["key_" + "a" * 2000, "not-an-id", "key_ABCDEF", "mkey_" + "0" * 32 + "x"])
def test_ids_that_cannot_exist_are_404_not_500(api, alice, bad_id) -> None:
    for response in (
        api.patch(f"/api/keys/{bad_id}", headers=auth(alice), json={"disabled": True}),
        api.delete(f"/api/keys/{bad_id}", headers=auth(alice)),
        api.delete(f"/api/management-keys/{bad_id}", headers=auth(alice)),
        api.post("/api/keys/subscription", headers=auth(alice), json={"name": "x", "subscriptionId": bad_id[:64]}),
    ):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), response.text
