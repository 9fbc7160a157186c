"""Sign-in by emailed code over real HTTP on the local stack (DynamoDB Local, the outbox), and its races on
DynamoDB Local with real threads: the same answer for every address, single-use codes, 5 tries, expiry
(the clock moved), sign-out and session expiry, the origin rule, and the cookie on every management route."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_platform.core import clock
from llm_platform.domain import sign_in
from llm_platform.domain.accounts import create_account
from llm_platform.domain.errors import DomainError
from local_stack.template import api_routes, load_template
from tests.support.sign_in import COOKIE, latest_code, session_headers
from tests.support.sign_in import sign_in as sign_in_over_http

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api(local_stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def moved_clock(monkeypatch: pytest.MonkeyPatch):
    """``moved_clock(seconds)``: the handlers (in this process, behind the gateway) see time move forward."""
    real = clock.utc_now
    offset = timedelta()
    monkeypatch.setattr(clock, "utc_now", lambda: real() + offset)

    def move(seconds: float) -> None:
        nonlocal offset
        offset += timedelta(seconds=seconds)

    return move


def new_email(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}@signin.example"


def origin(api: httpx.Client) -> dict[str, str]:
    return {"Origin": str(api.base_url).rstrip("/")}


def start(api: httpx.Client, email: str) -> httpx.Response:
    return api.post("/api/auth/email/start", json={"email": email}, headers=origin(api))


def verify(api: httpx.Client, email: str, code: str) -> httpx.Response:
    response = api.post("/api/auth/email/verify", json={"email": email, "code": code}, headers=origin(api))
    api.cookies.clear()
    return response


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def other_code(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10**6:06d}"


def test_start_gives_known_and_unknown_addresses_the_same_answer(api, local_stack) -> None:
    # Given an address of an existing account, and one nobody uses
    known = sign_in.link_email(new_email("known"), create_account("known").account_id)
    unknown = new_email("unknown")
    # When a code is asked for each
    answers = [start(api, email) for email in (known, unknown)]
    # Then status, body and headers (but the request id and date) are the same; both got their code
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content == b'{"data":{"sent":true}}'

    def shape(r: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, "" if k in ("x-amzn-requestid", "date") else v) for k, v in r.headers.items())

    assert shape(answers[0]) == shape(answers[1])
    assert latest_code(local_stack.mail_url, known) and latest_code(local_stack.mail_url, unknown)


def test_a_code_works_once_and_signs_up_an_unknown_address(api, local_stack) -> None:
    email = new_email("once")
    assert start(api, email).status_code == 202
    code = latest_code(local_stack.mail_url, email)
    first = verify(api, email, code)
    assert first.status_code == 200 and first.json()["data"]["created"] is True
    # The same code again: used
    assert error(verify(api, email, code)) == (400, "code_expired")
    # The session works: the new account is empty
    token = first.cookies[COOKIE]
    status = api.get("/api/billing/status", headers=session_headers(local_stack.api_url, token))
    assert status.json()["data"] == {"subscriptions": [], "creditBalance": "0.00"}


def test_five_wrong_tries_then_the_right_code_is_refused(api, local_stack) -> None:
    email = new_email("guess")
    start(api, email)
    right = latest_code(local_stack.mail_url, email)
    assert [error(verify(api, email, other_code(right, n))) for n in range(1, 6)] == [(400, "invalid_code")] * 5
    sixth = verify(api, email, right)
    assert error(sixth) == (429, "too_many_attempts") and "set-cookie" not in sixth.headers


def test_an_expired_code_is_refused(api, local_stack, moved_clock) -> None:
    email = new_email("late")
    start(api, email)
    code = latest_code(local_stack.mail_url, email)
    moved_clock(10 * 60)  # the code's lifetime
    assert error(verify(api, email, code)) == (400, "code_expired")


def test_the_start_rate_limit_over_http(api, local_stack) -> None:
    email = new_email("busy")
    answers = [start(api, email) for _ in range(6)]
    statuses = [a.status_code for a in answers]
    # 5 per 15-minute window (a window may end between two requests: then the 6th is allowed too)
    assert statuses[:5] == [202] * 5 and statuses[5] in (202, 429)
    if statuses[5] == 429:
        assert answers[5].json()["error"]["code"] == "too_many_codes"
        assert 0 < int(answers[5].headers["retry-after"]) <= 900


def test_sign_out_kills_the_session(api, local_stack) -> None:
    token, _ = sign_in_over_http(api, local_stack.mail_url, new_email("out"))
    headers = session_headers(local_stack.api_url, token)
    assert api.get("/api/keys", headers=headers).status_code == 200
    out = api.post("/api/auth/logout", headers=headers)
    assert out.status_code == 200 and f"{COOKIE}=;" in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    # Then the cookie, sent again (a copy the browser still had), is refused
    assert error(api.get("/api/keys", headers=headers)) == (401, "invalid_session")


def test_a_session_expires(api, local_stack, moved_clock) -> None:
    token, _ = sign_in_over_http(api, local_stack.mail_url, new_email("expiring"))
    headers = session_headers(local_stack.api_url, token)
    moved_clock(12 * 3600 - 60)
    assert api.get("/api/keys", headers=headers).status_code == 200
    moved_clock(120)
    assert error(api.get("/api/keys", headers=headers)) == (401, "invalid_session")


def test_a_valid_cookie_from_a_foreign_origin_is_refused_and_changes_nothing(api, local_stack) -> None:
    token, signed_in = sign_in_over_http(api, local_stack.mail_url, new_email("victim"))
    mine = session_headers(local_stack.api_url, token)
    key = api.post("/api/keys/credit", headers=mine, json={"name": "kept"}).json()["data"]
    before = api.get("/api/keys", headers=mine).json()["data"]
    foreign = {**mine, "Origin": "https://evil.example"}
    attempts = [
        api.post("/api/keys/credit", headers=foreign, json={"name": "csrf"}),
        api.patch(f"/api/keys/{key['id']}", headers=foreign, json={"disabled": True}),
        api.delete(f"/api/keys/{key['id']}", headers=foreign),
        api.post("/api/management-keys", headers=foreign, json={"name": "csrf"}),
        api.get("/api/keys", headers=foreign),
        api.post("/api/auth/logout", headers=foreign),
        # without any Origin, a state-changing request is refused too
        api.delete(f"/api/keys/{key['id']}", headers={"Cookie": f"{COOKIE}={token}"}),
    ]
    assert [error(a) for a in attempts] == [(403, "origin_not_allowed")] * 6 + [(403, "origin_required")]
    # Nothing changed, and the session still works
    assert api.get("/api/keys", headers=mine).json()["data"] == before
    assert api.get("/api/management-keys", headers=mine).json()["data"] == []


MANAGEMENT_ROUTES = sorted(
    (r.method, r.path)
    for r in api_routes(load_template(REPO / "template.yaml"))
    if r.path.startswith("/api/") and not r.path.startswith("/api/auth/") and r.path != "/api/billing/webhook"
)


def test_every_management_route_is_covered() -> None:
    # 18 of the first management API, 5 of the history (SPEC 9) and the plans list
    assert len(MANAGEMENT_ROUTES) == 24


@pytest.fixture(scope="module")
def session_token(api, local_stack) -> str:
    return sign_in_over_http(api, local_stack.mail_url, new_email("everywhere"))[0]


@pytest.mark.parametrize(("method", "path"), MANAGEMENT_ROUTES)
def test_the_cookie_works_on_every_management_route(api, local_stack, session_token, method: str, path: str) -> None:
    concrete = path.replace("{id}", "key_" + "0" * 32)
    body = {} if method in ("POST", "PATCH") else None
    # With the cookie from the dashboard's origin: authenticated (then validation, or not found, answers)
    response = api.request(method, concrete, headers=session_headers(local_stack.api_url, session_token), json=body)
    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text
    # Without it: 401 as before; with it from another origin: 403
    assert error(api.request(method, concrete, json=body)) == (401, "missing_management_key")
    foreign = {**session_headers(local_stack.api_url, session_token), "Origin": "https://evil.example"}
    assert error(api.request(method, concrete, headers=foreign, json=body)) == (403, "origin_not_allowed")


# ---------------------------------------------------------------------------------------------------------
# Races: the domain from threads on DynamoDB Local (the gateway runs one handler at a time, as Lambda does
# per container; many containers run at once on AWS)
# ---------------------------------------------------------------------------------------------------------


def _attempt(call: Any) -> Any:
    try:
        return call()
    except DomainError as refused:
        return refused.code


def test_concurrent_verifies_of_one_code_create_one_account(local_stack, ddb) -> None:
    email = new_email("race")
    sign_in.start(email)
    code = latest_code(local_stack.mail_url, email)
    # When 8 verifies of the right code run at once
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _attempt(lambda: sign_in.verify(email, code)), range(8)))
    # Then exactly one signs in, creating the account; the others find the code used (or, every try
    # counting, its 5 tries spent)
    winners = [o for o in outcomes if isinstance(o, sign_in.SignedIn)]
    assert len(winners) == 1 and winners[0].created is True, outcomes
    refusals = {"invalid_code", "code_expired", "too_many_attempts"}
    assert all(o in refusals for o in outcomes if o is not winners[0]), outcomes
    # And exactly one account carries the address, which maps to it
    accounts = ddb.scan(
        TableName=local_stack.table_names["AccountsTable"],
        FilterExpression="email = :email",
        ExpressionAttributeValues={":email": {"S": email}},
        ConsistentRead=True,
    )["Items"]
    assert [a["accountId"]["S"] for a in accounts] == [winners[0].account_id]


def test_concurrent_tries_get_exactly_five(local_stack) -> None:
    email = new_email("swarm")
    sign_in.start(email)
    right = latest_code(local_stack.mail_url, email)
    wrong = [other_code(right, n) for n in range(1, 13)]
    # When 12 wrong tries run at once
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda c: _attempt(lambda: sign_in.verify(email, c)), wrong))
    # Then exactly 5 were compared (wrong), the rest refused as too many, and the right code is refused now
    assert sorted(outcomes) == ["invalid_code"] * 5 + ["too_many_attempts"] * 7
    assert _attempt(lambda: sign_in.verify(email, right)) == "too_many_attempts"
