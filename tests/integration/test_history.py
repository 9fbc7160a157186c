"""History and key lifecycle over real HTTP: the request log, daily usage, the ledger, limits changed
on a warm key, budget resets, expiry, rotation and GET /v1/key. DynamoDB Local, the local stack's
management API, a proxy on a catalog of the built-in upstream (healthy) and a dead provider."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from llm_platform.domain import accounts
from local_stack.upstream import UpstreamServer
from tests.support.proxies import catalog_model, proxy_on_catalog


@pytest.fixture(scope="module")
def proxy_url(local_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    healthy = UpstreamServer(name="healthy", chunk_delay=0.001)
    broken = UpstreamServer(name="broken", fail_mode="500")
    healthy.start()
    broken.start()

    catalog = {
        "models": [
            catalog_model("test/echo", "test/echo", [(healthy.url, 0.5)]),
            catalog_model("test/story", "test/story", [(healthy.url, 0.5)]),
            catalog_model("down/echo", "test/echo", [(broken.url, 0.5)]),
        ]
    }
    with proxy_on_catalog(catalog, tmp_path_factory.mktemp("history-catalog")) as (url, _):
        yield url
    healthy.stop()
    broken.stop()


class Clock:
    """The proxy's clock, moved forward as the expiry tests move theirs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        import llm_platform.proxy.asgi as asgi

        real = asgi._now
        monkeypatch.setattr(asgi, "_now", lambda: real() + self.offset)

    def move(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


class Account:
    def __init__(self, api_url: str, credit_usd: int = 5) -> None:
        created = accounts.create_account("history-test")
        self.id = created.account_id
        if credit_usd:
            accounts.grant_credit(self.id, credit_usd * 1_000_000, "test")
        self.api = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {created.management_key}"}, timeout=30
        )

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> dict:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def credit_key(self, **body) -> tuple[str, str]:
        created = self.call("POST", "/api/keys/credit", 201, json={"name": "k", **body})["data"]
        return created["id"], created["apiKey"]

    def all_pages(self, path: str, **params) -> list[dict]:
        items, cursor = [], None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            body = self.call("GET", path, params=query)
            items += body["data"]
            cursor = body["nextCursor"]
            if cursor is None:
                return items


def chat(proxy_url: str, key: str, model: str = "test/echo", **body) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hello history"}])
    return httpx.post(
        f"{proxy_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, **body},
        timeout=30,
    )


def stream(proxy_url: str, key: str) -> httpx.Response:
    with httpx.stream(
        "POST",
        f"{proxy_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "test/story", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "go"}]},
        timeout=30,
    ) as response:
        response.read()
    return response


def key_info(proxy_url: str, key: str) -> httpx.Response:
    return httpx.get(f"{proxy_url}/v1/key", headers={"Authorization": f"Bearer {key}"}, timeout=30)


# ------------------------------------------------------------------ request log, daily usage, ledger


def test_the_log_holds_every_admitted_request_and_the_day_sums_equal_it(local_stack, proxy_url) -> None:
    # Given an account with two credit keys
    account = Account(local_stack.api_url)
    first_id, first = account.credit_key()
    second_id, second = account.credit_key()
    # When it sends plain, streamed and failed-after-admission requests
    responses = [chat(proxy_url, first) for _ in range(3)]
    responses.append(stream(proxy_url, first))
    responses.append(chat(proxy_url, second, model="down/echo"))  # admitted, then no provider: 502
    responses.append(chat(proxy_url, second, model="test/story", max_tokens=5))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 502, 200]
    ids = [r.headers["x-request-id"] for r in responses]

    # Then the log finds every x-request-id, newest first, with what happened
    log = account.all_pages("/api/requests", limit=2)
    assert [r["id"] for r in log] == ids[::-1]
    by_id = {r["id"]: r for r in log}
    assert by_id[ids[3]]["stream"] is True and by_id[ids[0]]["stream"] is False
    failed = by_id[ids[4]]
    assert (failed["status"], failed["cost"], failed["provider"], failed["keyId"]) == (502, "0.00", None, second_id)
    ok = by_id[ids[0]]
    assert ok["status"] == 200 and ok["provider"] == "p0" and ok["model"] == "test/echo"
    assert ok["promptTokens"] > 0 and ok["completionTokens"] > 0 and Decimal(ok["cost"]) > 0
    assert ok["durationMs"] >= 0 and ok["createdAt"].endswith("Z")
    assert account.call("GET", f"/api/requests/{ids[0]}")["data"] == ok
    # And the cost header and the record agree
    assert responses[0].headers["x-request-cost"] == ok["cost"]

    # And filters narrow it: by key, by model, by time
    assert {r["id"] for r in account.all_pages("/api/requests", keyId=second_id)} == {ids[4], ids[5]}
    assert [r["id"] for r in account.all_pages("/api/requests", model="test/story")] == [ids[5], ids[3]]
    assert account.all_pages("/api/requests", to="2000-01-01") == []
    assert len(account.all_pages("/api/requests", **{"from": log[-1]["createdAt"]})) == 6
    assert [
        r["id"] for r in account.all_pages("/api/requests", **{"from": log[1]["createdAt"], "to": log[0]["createdAt"]})
    ] == [ids[4]]

    # And the daily counters sum exactly to the log, per key and model
    daily = account.call("GET", "/api/usage/daily")["data"]
    sums: dict[tuple, list] = {}
    for record in log:
        row = sums.setdefault((record["createdAt"][:10], record["keyId"], record["model"]), [0, 0, 0, Decimal(0)])
        row[0] += 1
        row[1] += record["promptTokens"]
        row[2] += record["completionTokens"]
        row[3] += Decimal(record["cost"])
    assert {
        (d["date"], d["keyId"], d["model"]): [
            d["requests"],
            d["promptTokens"],
            d["completionTokens"],
            Decimal(d["spend"]),
        ]
        for d in daily
    } == sums
    assert account.call("GET", "/api/usage/daily", params={"keyId": first_id, "model": "test/story"})["data"] == [
        d for d in daily if d["keyId"] == first_id and d["model"] == "test/story"
    ]

    # And the ledger sums to the balance: the grant and one usage entry per charged request
    ledger = account.all_pages("/api/billing/ledger", limit=2)
    balance = account.call("GET", "/api/billing/status")["data"]["creditBalance"]
    assert sum(Decimal(e["amount"]) for e in ledger) == Decimal(balance)
    assert sorted(e["kind"] for e in ledger) == ["grant"] + ["usage"] * 5
    assert {e["reference"] for e in ledger if e["kind"] == "usage"} == {ids[i] for i in (0, 1, 2, 3, 5)}
    assert ledger == sorted(ledger, key=lambda e: e["id"], reverse=True)


def test_history_is_the_callers_own(local_stack, proxy_url) -> None:
    # Given two accounts, the victim with a logged request
    victim, intruder = Account(local_stack.api_url), Account(local_stack.api_url)
    victim_key_id, victim_key = victim.credit_key()
    request_id = chat(proxy_url, victim_key).headers["x-request-id"]
    # Then the intruder finds neither the request, nor the key's log, nor any of it in its lists
    assert intruder.call("GET", f"/api/requests/{request_id}", 404)["error"]["code"] == "not_found"
    assert intruder.call("GET", "/api/requests", 404, params={"keyId": victim_key_id})["error"]["code"] == "not_found"
    assert intruder.call("GET", "/api/requests")["data"] == []
    assert intruder.call("GET", "/api/usage/daily")["data"] == []
    assert [e["kind"] for e in intruder.call("GET", "/api/billing/ledger")["data"]] == ["grant"]
    # And a cursor of the victim's list is refused, not followed
    chat(proxy_url, victim_key)
    cursor = victim.call("GET", "/api/requests", params={"limit": 1})["nextCursor"]
    assert intruder.call("GET", "/api/requests", 400, params={"cursor": cursor})["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/requests", {"from": "yesterday"}, 400, "invalid_time"),
        ("/api/requests", {"from": "2026-01-01T00:00:00"}, 400, "invalid_time"),
        ("/api/requests", {"from": "2026-02-01", "to": "2026-01-01"}, 400, "invalid_time_range"),
        ("/api/requests", {"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ("/api/requests", {"limit": "0"}, 422, "validation_error"),
        ("/api/requests", {"limit": "101"}, 422, "validation_error"),
        ("/api/requests/not-an-id", {}, 404, "not_found"),
        ("/api/usage/daily", {"from": "2026-13-01"}, 400, "invalid_date"),
        ("/api/usage/daily", {"from": "2026-02-01", "to": "2026-01-01"}, 400, "invalid_date_range"),
        ("/api/usage/daily", {"from": "2020-01-01", "to": "2026-01-01"}, 400, "date_range_too_long"),
        ("/api/billing/ledger", {"cursor": "e30"}, 400, "invalid_cursor"),
    ],
)
def test_bad_history_queries_are_clear_errors(local_stack, path, params, status, code) -> None:
    account = Account(local_stack.api_url, credit_usd=0)
    assert account.call("GET", path, status, params=params)["error"]["code"] == code


# ------------------------------------------------------------------ limits, resets, expiry, rotation


def test_limits_changed_on_a_warm_key_apply_to_the_next_request(local_stack, proxy_url) -> None:
    # Given a credit key that has just served a request (so the proxy holds it in its cache)
    account = Account(local_stack.api_url)
    key_id, key = account.credit_key(rpm=100)
    assert chat(proxy_url, key).status_code == 200
    # When its RPM is lowered to the one request it already made this minute
    view = account.call("PATCH", f"/api/keys/{key_id}", json={"rpm": 1})["data"]
    assert view["rpm"] == 1
    # Then the very next request is refused by the new limit, with it in the headers
    refused = chat(proxy_url, key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limit_exceeded")
    assert refused.headers["x-ratelimit-limit-requests"] == "1"
    # And raising it again applies at once too
    account.call("PATCH", f"/api/keys/{key_id}", json={"rpm": 100})
    assert chat(proxy_url, key).status_code == 200
    # And a small maxBudget set on the warm key is enforced from the next request: spent within a few
    account.call("PATCH", f"/api/keys/{key_id}", json={"maxBudget": "0.0002"})
    statuses = [chat(proxy_url, key, max_tokens=16).status_code for _ in range(10)]
    assert 402 in statuses and set(statuses[statuses.index(402) :]) == {402}
    # And removing it applies at once too
    account.call("PATCH", f"/api/keys/{key_id}", json={"maxBudget": None})
    assert chat(proxy_url, key, max_tokens=16).status_code == 200


def test_a_daily_reset_restores_a_spent_max_budget_at_the_boundary(local_stack, proxy_url, clock) -> None:
    # Given a credit key with a tiny daily budget, spent today
    account = Account(local_stack.api_url)
    key_id, key = account.credit_key(maxBudget="0.0005", budgetReset="daily")
    while (response := chat(proxy_url, key, max_tokens=16)).status_code == 200:
        pass
    assert (response.status_code, response.json()["error"]["code"]) == (402, "insufficient_quota")
    assert "daily" in response.json()["error"]["message"]
    info = key_info(proxy_url, key).json()["data"]
    assert Decimal(info["remaining"]) < Decimal("0.0002") and info["budgetReset"] == "daily"
    # When the clock passes the next UTC midnight
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    clock.move(seconds=(midnight - now).total_seconds() + 1)
    # Then the key may spend its whole budget again
    assert key_info(proxy_url, key).json()["data"]["remaining"] == "0.0005"
    assert chat(proxy_url, key, max_tokens=16).status_code == 200
    listed = {k["id"]: k for k in account.call("GET", "/api/keys")["data"]}[key_id]
    assert (listed["maxBudget"], listed["budgetReset"]) == ("0.0005", "daily")


def test_an_expired_key_is_401_key_expired(local_stack, proxy_url, clock) -> None:
    # Given a warm key that expires in an hour
    account = Account(local_stack.api_url)
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    key_id, key = account.credit_key(expiresAt=expires)
    assert chat(proxy_url, key).status_code == 200
    assert key_info(proxy_url, key).json()["data"]["expiresAt"] == expires
    # When the hour has passed
    clock.move(hours=1, seconds=1)
    # Then every route refuses it as expired
    for response in (chat(proxy_url, key), key_info(proxy_url, key)):
        assert (response.status_code, response.json()["error"]["code"]) == (401, "key_expired")
    # And a past expiry cannot be set; a future one revives it
    account.call("PATCH", f"/api/keys/{key_id}", 422, json={"expiresAt": "2001-01-01T00:00:00Z"})
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    account.call("PATCH", f"/api/keys/{key_id}", json={"expiresAt": later})
    assert chat(proxy_url, key).status_code == 200


def test_rotation_keeps_the_old_secret_for_its_grace_period_only(local_stack, proxy_url, clock) -> None:
    # Given a warm key with some history
    account = Account(local_stack.api_url)
    key_id, old = account.credit_key(rpm=50)
    assert chat(proxy_url, old).status_code == 200
    # When it is rotated with a 5-second grace period
    before = datetime.now(UTC)
    rotated = account.call("POST", f"/api/keys/{key_id}/rotate", json={"gracePeriodSeconds": 5})["data"]
    after = datetime.now(UTC)
    new = rotated["apiKey"]
    assert rotated["id"] == key_id and new != old and new.startswith("sk_live_")
    # (the answer says when the old secret stops: 5 s after the rotation, to the millisecond)
    grace_ends = _instant(rotated["previousKeyExpiresAt"])
    assert before + timedelta(seconds=4.999) <= grace_ends <= after + timedelta(seconds=5)
    # Then both secrets work during the grace period, as the same key
    assert chat(proxy_url, old).status_code == 200
    assert chat(proxy_url, new).status_code == 200
    listed = {k["id"]: k for k in account.call("GET", "/api/keys")["data"]}[key_id]
    assert listed["prefix"] == new[: len(listed["prefix"])] and listed["rpm"] == 50
    assert {r["keyId"] for r in account.all_pages("/api/requests")} == {key_id}
    # And after it, the old secret is refused and the new one still works
    clock.move(seconds=5.5)
    assert chat(proxy_url, old).status_code == 401
    assert chat(proxy_url, new).status_code == 200
    # And rotating again with no body at all (no grace) retires the second secret at once, on every /v1 route
    before = datetime.now(UTC)
    rotated = account.call("POST", f"/api/keys/{key_id}/rotate")["data"]
    assert before - timedelta(milliseconds=1) <= _instant(rotated["previousKeyExpiresAt"]) <= datetime.now(UTC)
    third = rotated["apiKey"]
    assert chat(proxy_url, new).status_code == 401
    assert _get(proxy_url, "/v1/models", new).status_code == 401
    assert _get(proxy_url, "/v1/key", new).status_code == 401
    assert chat(proxy_url, third).status_code == 200
    assert len(account.all_pages("/api/requests", keyId=key_id)) == 5


def _instant(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _get(proxy_url: str, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{proxy_url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_rotation_refuses_bad_grace_and_other_accounts(local_stack) -> None:
    account, other = Account(local_stack.api_url), Account(local_stack.api_url)
    key_id, _ = account.credit_key()
    account.call("POST", f"/api/keys/{key_id}/rotate", 422, json={"gracePeriodSeconds": 86_401})
    account.call("POST", f"/api/keys/{key_id}/rotate", 422, json={"gracePeriodSeconds": -1})
    other.call("POST", f"/api/keys/{key_id}/rotate", 404, json={})


def test_key_self_info_tells_what_it_may_still_spend(local_stack, proxy_url) -> None:
    # Given a credit key capped at $2 on a $5 balance
    account = Account(local_stack.api_url)
    key_id, key = account.credit_key(maxBudget=2, rpm=30, tpm=40_000)
    info = key_info(proxy_url, key)
    assert info.status_code == 200 and "x-request-id" in info.headers
    data = info.json()["data"]
    assert data == {
        "id": key_id,
        "name": "k",
        "type": "credit",
        "rpm": 30,
        "tpm": 40_000,
        "maxBudget": "2.00",
        "budgetReset": None,
        "expiresAt": None,
        "spend": "0.00",
        "remaining": "2.00",
        "window": None,
    }
    # When it spends
    cost = Decimal(chat(proxy_url, key).headers["x-request-cost"])
    # Then what remains is the budget left (the balance is larger)
    data = key_info(proxy_url, key).json()["data"]
    assert (Decimal(data["spend"]), Decimal(data["remaining"])) == (cost, 2 - cost)
    # And with a balance below the budget, the balance is what remains
    account.call("PATCH", f"/api/keys/{key_id}", json={"maxBudget": 100})
    assert Decimal(key_info(proxy_url, key).json()["data"]["remaining"]) == 5 - cost
    # And a bad key is 401
    assert key_info(proxy_url, "sk_live_" + "x" * 43).status_code == 401


def test_subscription_keys_lower_their_plan_limits_never_raise_them(local_stack, proxy_url) -> None:
    # Given a key on a granted standard subscription (60 RPM, 3,333 TPM)
    account = Account(local_stack.api_url, credit_usd=0)
    from llm_platform.domain import billing

    subscription = billing.grant_subscription(account.id, "standard")
    created = account.call(
        "POST", "/api/keys/subscription", 201, json={"name": "s", "subscriptionId": subscription.subscription_id}
    )["data"]
    key_id = created["id"]
    # Then it may lower RPM/TPM, but not raise them or take a credit budget
    assert account.call("PATCH", f"/api/keys/{key_id}", json={"rpm": 10, "tpm": 1000})["data"]["rpm"] == 10
    for body in ({"rpm": 61}, {"tpm": 3334}, {"maxBudget": 1}, {"budgetReset": "daily"}):
        assert account.call("PATCH", f"/api/keys/{key_id}", 422, json=body)["error"]["code"] == "validation_error"
    # And null puts the plan's limit back
    assert account.call("PATCH", f"/api/keys/{key_id}", json={"rpm": None})["data"]["rpm"] == 60
    # And its self-info shows the 5-hour window
    data = key_info(proxy_url, created["apiKey"]).json()["data"]
    assert data["type"] == "subscription" and data["window"]["budget"] == "0.14"
    assert data["remaining"] == "0.14" and data["window"]["spent"] == "0.00"
    # (the window ends 5 hours after the subscription began: it is the first one)
    assert _instant(data["window"]["resetsAt"]) == _instant(subscription.created_at) + timedelta(hours=5)
