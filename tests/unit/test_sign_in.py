"""Sign-in by emailed code and the session cookie, on moto (the fast rules; races and HTTP are in
tests/integration/test_sign_in_http.py): enumeration-proof start, rate limit, single-use hashed codes,
5 tries, expiry (the clock moved), account creation, sessions, sign-out and the origin rule."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import REPO, SIGN_IN_SENDER
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from llm_platform.core import clock
from tests.support.lambda_events import FakeContext, api_event

HOST = "abc123.execute-api.us-east-1.amazonaws.com"
ORIGIN = f"https://{HOST}"


@pytest.fixture
def moved_clock(monkeypatch: pytest.MonkeyPatch):
    """``moved_clock(seconds)`` moves the sign-in code's and session's clock forward, as time passing would."""
    real = clock.utc_now
    offset = timedelta()

    def now():
        return real() + offset

    monkeypatch.setattr(clock, "utc_now", now)

    def move(seconds: float) -> None:
        nonlocal offset
        offset += timedelta(seconds=seconds)

    return move


def browser(origin: str | None = ORIGIN, cookie: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Host": HOST, "X-Forwarded-Proto": "https", **extra}
    if origin:
        headers["Origin"] = origin
    if cookie:
        headers["Cookie"] = f"__Host-llm_session={cookie}"
    return headers


def sent_mail() -> list[Any]:
    """What (moto's) SES sent, oldest first."""
    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def code_for(email: str) -> str:
    mine = [m for m in sent_mail() if m.destinations["ToAddresses"] == [email]]
    return re.search(r"\b(\d{6})\b", mine[-1].body).group(1)


def start(invoke, email: str, **headers: str) -> tuple[int, dict]:
    return invoke(
        "auth_email_start", "POST", "/api/auth/email/start", body={"email": email}, headers=browser(**headers)
    )


def verify(invoke, email: str, code: str) -> tuple[int, dict]:
    return invoke(
        "auth_email_verify", "POST", "/api/auth/email/verify", body={"email": email, "code": code}, headers=browser()
    )


def verify_raw(email: str, code: str, origin: str = ORIGIN) -> dict:
    """The verify handler's raw proxy response (for its Set-Cookie header)."""
    module = _load_handler("auth_email_verify")
    event = api_event("POST", "/api/auth/email/verify", body={"email": email, "code": code}, headers=browser(origin))
    return module.lambda_handler(event, FakeContext())


def _load_handler(folder: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"raw_{folder}", REPO / "functions" / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session_from(response: dict) -> str:
    cookies = response["multiValueHeaders"]["Set-Cookie"]
    return re.match(r"__Host-llm_session=([^;]+);", cookies[0]).group(1)


def sign_in(invoke, email: str) -> str:
    assert start(invoke, email)[0] == 202
    response = verify_raw(email, code_for(email))
    assert response["statusCode"] == 200, response["body"]
    return session_from(response)


def scan(table: str) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


# ---------------------------------------------------------------------------------------------- start


def test_start_answers_the_same_for_known_and_unknown_addresses_and_does_the_same_work(invoke, tables, account) -> None:
    from llm_platform.data.dynamo import client
    from llm_platform.domain.sign_in import link_email

    # Given an address with an account and one without
    link_email("known@example.com", account.account_id)
    calls: list[str] = []
    client().meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    answers, work = [], []
    for email in ("known@example.com", "unknown@example.com"):
        calls.clear()
        # When a code is asked for each
        answers.append(start(invoke, email))
        work.append(list(calls))
    # Then the answers are identical, the same DynamoDB calls were made, and each address got a code
    assert answers[0] == answers[1] == (202, {"data": {"sent": True}})
    assert work[0] == work[1] == ["UpdateItem", "PutItem"]  # the account is never looked up
    assert [m.destinations["ToAddresses"] for m in sent_mail()] == [["known@example.com"], ["unknown@example.com"]]
    message = sent_mail()[0]
    assert message.source == SIGN_IN_SENDER and re.search(r"\b\d{6}\b", message.body)


def test_the_code_is_random_six_digits_stored_only_salted_and_hashed(invoke, tables) -> None:
    for _ in range(3):
        start(invoke, "hash@example.com")
    codes = [re.search(r"\b(\d{6})\b", m.body).group(1) for m in sent_mail()]
    assert all(len(code) == 6 for code in codes)
    items = json.dumps(scan(tables["AuthTable"]))
    # Then no code (the last one is stored) appears in the table, only its hash
    assert codes[-1] not in items and "codeHash" in items and "salt" in items


@pytest.mark.parametrize("bad", ["not-an-email", "a@b", "two@@example.com", "x@exa mple.com", "@example.com"])
def test_a_malformed_address_is_refused_and_nothing_is_sent(invoke, tables, bad: str) -> None:
    status, body = start(invoke, bad)
    assert (status, body["error"]["code"]) == (400, "invalid_email")
    assert sent_mail() == [] and scan(tables["AuthTable"]) == []


def test_a_missing_or_extra_field_is_a_validation_error(invoke, tables) -> None:
    for body in ({}, {"email": "a@example.com", "admin": True}):
        status, answer = invoke("auth_email_start", "POST", "/api/auth/email/start", body=body, headers=browser())
        assert (status, answer["error"]["code"]) == (422, "validation_error")


def test_codes_per_address_are_limited_per_15_minutes(invoke, tables, moved_clock) -> None:
    moved_clock(900 - clock.utc_now().timestamp() % 900 + 1)  # at the start of a window
    # Given 5 codes sent to one address
    for _ in range(5):
        assert start(invoke, "busy@example.com")[0] == 202
    # When a 6th is asked for (in any spelling of the address)
    status, body = start(invoke, "  BUSY@example.com ")
    # Then it is refused and not sent; another address is not affected
    assert (status, body["error"]["code"]) == (429, "too_many_codes")
    assert len(sent_mail()) == 5
    assert start(invoke, "other@example.com")[0] == 202
    # And in the next window it works again
    moved_clock(900)
    assert start(invoke, "busy@example.com")[0] == 202


def test_the_rate_limit_answer_says_when_to_retry(tables) -> None:
    from llm_platform.api.app import build_app

    app = build_app(public=True)

    @app.post("/api/auth/email/start")
    def limited():
        from llm_platform.domain.errors import TooManyRequests

        raise TooManyRequests("later", code="too_many_codes", retry_after=42)

    response = app.resolve(api_event("POST", "/api/auth/email/start", body={}), FakeContext())
    assert response["statusCode"] == 429 and response["multiValueHeaders"]["Retry-After"] == ["42"]


def test_mail_failures_are_503_in_the_error_format(invoke, tables, monkeypatch) -> None:
    from llm_platform.config import get_settings

    # SES refuses (e.g. the sender is not verified)
    monkeypatch.setenv("SIGN_IN_EMAIL_SENDER", "unverified@elsewhere.example")
    get_settings.cache_clear()
    status, body = start(invoke, "a@example.com")
    assert (status, body["error"]["code"]) == (503, "mail_unavailable")
    # No sender configured at all
    monkeypatch.delenv("SIGN_IN_EMAIL_SENDER")
    get_settings.cache_clear()
    status, body = start(invoke, "b@example.com")
    assert (status, body["error"]["code"]) == (503, "mail_not_configured")


# ---------------------------------------------------------------------------------------------- verify


def test_the_first_sign_in_of_an_address_creates_its_account_later_ones_sign_in(invoke, tables) -> None:
    from llm_platform.data import auth as auth_table
    from llm_platform.domain.accounts import get_account

    # When an unknown address signs in
    start(invoke, " New.Customer@Example.COM ")
    status, body = verify(invoke, "new.customer@example.com", code_for("new.customer@example.com"))
    # Then an account is created, named after the address, and the address maps to it
    assert status == 200 and body["data"]["created"] is True
    account_id = body["data"]["accountId"]
    assert get_account(account_id).name == "new.customer@example.com"
    assert get_account(account_id).management_key_count == 0
    assert auth_table.account_of("new.customer@example.com") == account_id
    # And the next sign-in, in another spelling, reaches the same account
    start(invoke, "NEW.customer@example.com")
    status, body = verify(invoke, " new.customer@EXAMPLE.com", code_for("new.customer@example.com"))
    assert (status, body["data"]) == (200, {"accountId": account_id, "created": False})


def test_an_address_linked_to_an_account_signs_in_to_it(invoke, tables, account) -> None:
    from llm_platform.domain.errors import Conflict
    from llm_platform.domain.sign_in import link_email

    assert link_email(" Owner@Example.com", account.account_id) == "owner@example.com"
    with pytest.raises(Conflict):
        link_email("owner@example.com", "acct_" + "0" * 32)
    start(invoke, "owner@example.com")
    status, body = verify(invoke, "owner@example.com", code_for("owner@example.com"))
    assert (status, body["data"]) == (200, {"accountId": account.account_id, "created": False})


def test_a_code_works_once(invoke, tables) -> None:
    start(invoke, "once@example.com")
    code = code_for("once@example.com")
    assert verify(invoke, "once@example.com", code)[0] == 200
    status, body = verify(invoke, "once@example.com", code)
    assert (status, body["error"]["code"]) == (400, "code_expired")


def test_a_wrong_code_is_400_invalid_code(invoke, tables) -> None:
    start(invoke, "wrong@example.com")
    right = code_for("wrong@example.com")
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    status, body = verify(invoke, "wrong@example.com", wrong)
    assert (status, body["error"]["code"]) == (400, "invalid_code")
    assert "4 tries left" in body["error"]["message"]
    assert verify(invoke, "wrong@example.com", right)[0] == 200  # the 2nd try, right: fine


def test_after_five_wrong_tries_even_the_right_code_is_refused(invoke, tables) -> None:
    start(invoke, "guess@example.com")
    right = code_for("guess@example.com")
    wrongs = [f"{(int(right) + n) % 10**6:06d}" for n in range(1, 6)]
    # Given 5 wrong tries
    assert [verify(invoke, "guess@example.com", w)[1]["error"]["code"] for w in wrongs] == ["invalid_code"] * 5
    # When the 6th try has the right code, then it is refused: too many
    status, body = verify(invoke, "guess@example.com", right)
    assert (status, body["error"]["code"]) == (429, "too_many_attempts")
    # And a new code works
    start(invoke, "guess@example.com")
    assert verify(invoke, "guess@example.com", code_for("guess@example.com"))[0] == 200


def test_a_new_code_replaces_the_previous_one(invoke, tables) -> None:
    start(invoke, "twice@example.com")
    first = code_for("twice@example.com")
    start(invoke, "twice@example.com")
    second = code_for("twice@example.com")
    if first != second:  # (one in a million they are equal)
        assert verify(invoke, "twice@example.com", first)[1]["error"]["code"] == "invalid_code"
    assert verify(invoke, "twice@example.com", second)[0] == 200


def test_an_expired_code_is_refused(invoke, tables, moved_clock) -> None:
    start(invoke, "late@example.com")
    code = code_for("late@example.com")
    # When 10 minutes pass (the code's lifetime; the spec allows at most 15)
    moved_clock(600)
    status, body = verify(invoke, "late@example.com", code)
    assert (status, body["error"]["code"]) == (400, "code_expired")


def test_a_code_just_before_expiry_still_works(invoke, tables, moved_clock) -> None:
    start(invoke, "intime@example.com")
    moved_clock(590)
    assert verify(invoke, "intime@example.com", code_for("intime@example.com"))[0] == 200


def test_a_code_for_one_address_does_not_sign_in_another(invoke, tables) -> None:
    start(invoke, "alice@example.com")
    start(invoke, "mallory@example.com")
    status, body = verify(invoke, "mallory@example.com", code_for("alice@example.com"))
    if code_for("alice@example.com") != code_for("mallory@example.com"):
        assert (status, body["error"]["code"]) == (400, "invalid_code")


# ---------------------------------------------------------------------------------------------- sessions


def test_the_session_cookie_is_httponly_strict_secure_host_prefixed_and_stored_hashed(invoke, tables) -> None:
    start(invoke, "cookie@example.com")
    response = verify_raw("cookie@example.com", code_for("cookie@example.com"))
    [cookie] = response["multiValueHeaders"]["Set-Cookie"]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert cookie.startswith("__Host-llm_session=")
    assert attributes == {"Path", "Max-Age", "HttpOnly", "Secure", "SameSite"}
    assert "SameSite=Strict" in cookie and "Path=/;" in cookie and "Max-Age=43200" in cookie  # 12 h
    token = session_from(response)
    assert len(token) >= 40
    items = json.dumps(scan(tables["AuthTable"]))
    assert token not in items and "session#" in items


def test_the_cookie_authenticates_management_routes(invoke, tables) -> None:
    token = sign_in(invoke, "user@example.com")
    status, body = invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))
    assert (status, body) == (200, {"data": [], "nextCursor": None})
    status, body = invoke(
        "create_credit_key", "POST", "/api/keys/credit", body={"name": "dash"}, headers=browser(cookie=token)
    )
    assert status == 201 and body["data"]["apiKey"].startswith("sk_live_")
    status, body = invoke("list_management_keys", "GET", "/api/management-keys", headers=browser(cookie=token))
    assert (status, body) == (
        200,
        {"data": [], "nextCursor": None},
    )  # a self-signed-up account starts without management keys


def test_a_session_expires_after_12_hours(invoke, tables, moved_clock) -> None:
    token = sign_in(invoke, "tired@example.com")
    moved_clock(12 * 3600 - 5)
    assert invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))[0] == 200
    moved_clock(10)
    status, body = invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))
    assert (status, body["error"]["code"]) == (401, "invalid_session")


def test_sign_out_ends_the_session_server_side_and_clears_the_cookie(invoke, tables) -> None:
    token = sign_in(invoke, "leaving@example.com")
    status, body = invoke("auth_logout", "POST", "/api/auth/logout", headers=browser(cookie=token))
    assert (status, body) == (200, {"data": {"signedOut": True}})
    status, body = invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))
    assert (status, body["error"]["code"]) == (401, "invalid_session")
    assert "session#" not in json.dumps(scan(tables["AuthTable"]))
    # Signing out without a session is harmless
    assert invoke("auth_logout", "POST", "/api/auth/logout", headers=browser())[0] == 200


# ---------------------------------------------------------------------------------------------- the origin rule


def test_a_cookie_from_another_origin_is_refused_and_changes_nothing(invoke, tables) -> None:
    token = sign_in(invoke, "victim@example.com")
    for origin in ("https://evil.example", "http://" + HOST, "null", ORIGIN + ".evil.example"):
        status, body = invoke(
            "create_credit_key", "POST", "/api/keys/credit", body={"name": "csrf"}, headers=browser(origin, token)
        )
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed"), origin
    assert invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))[1] == {"data": [], "nextCursor": None}
    # A foreign page cannot sign the visitor out either
    assert invoke("auth_logout", "POST", "/api/auth/logout", headers=browser("https://evil.example", token))[0] == 403
    assert invoke("list_keys", "GET", "/api/keys", headers=browser(cookie=token))[0] == 200


def test_a_state_changing_cookie_request_without_origin_is_refused_reads_are_fine(invoke, tables) -> None:
    token = sign_in(invoke, "noorigin@example.com")
    status, body = invoke(
        "create_credit_key", "POST", "/api/keys/credit", body={"name": "x"}, headers=browser(None, token)
    )
    assert (status, body["error"]["code"]) == (403, "origin_required")
    assert invoke("list_keys", "GET", "/api/keys", headers=browser(None, token))[0] == 200
    # Unless the browser says the read comes from another site
    cross = browser(None, token, **{"Sec-Fetch-Site": "cross-site"})
    assert invoke("list_keys", "GET", "/api/keys", headers=cross)[1]["error"]["code"] == "origin_not_allowed"


def test_bearer_requests_are_not_subject_to_the_origin_rule_and_win_over_the_cookie(invoke, tables, account) -> None:
    token = sign_in(invoke, "both@example.com")
    foreign = browser("https://evil.example") | {"Authorization": f"Bearer {account.management_key}"}
    assert invoke("list_keys", "GET", "/api/keys", headers=foreign)[0] == 200
    # A wrong management key is 401 even with a valid cookie
    wrong = browser(cookie=token) | {"Authorization": "Bearer mk_wrong"}
    assert invoke("list_keys", "GET", "/api/keys", headers=wrong)[1]["error"]["code"] == "invalid_management_key"
    # Neither: 401 as before
    status, body = invoke("list_keys", "GET", "/api/keys", headers=browser())
    assert (status, body["error"]["code"]) == (401, "missing_management_key")


def test_sign_in_from_another_website_is_refused(invoke, tables) -> None:
    assert start(invoke, "x@example.com", origin="https://evil.example")[1]["error"]["code"] == "origin_not_allowed"
    assert sent_mail() == []
    # curl and other non-browser clients send no Origin: fine
    assert start(invoke, "x@example.com", origin=None)[0] == 202


def test_a_configured_dashboard_origin_replaces_the_request_origin(invoke, tables, monkeypatch) -> None:
    from llm_platform.config import get_settings

    monkeypatch.setenv("DASHBOARD_ORIGIN", "https://console.example.com, https://other.example.com/")
    get_settings.cache_clear()
    token = sign_in_with_origin(invoke, "custom@example.com", "https://console.example.com")
    for origin, expected in (("https://console.example.com", 200), ("https://other.example.com", 200), (ORIGIN, 403)):
        assert invoke("list_keys", "GET", "/api/keys", headers=browser(origin, token))[0] == expected, origin


def sign_in_with_origin(invoke, email: str, origin: str) -> str:
    assert start(invoke, email, origin=origin)[0] == 202
    response = verify_raw(email, code_for(email), origin)
    assert response["statusCode"] == 200, response["body"]
    return session_from(response)


def test_an_account_created_with_an_address_signs_in_and_a_taken_address_creates_nothing(invoke, tables) -> None:
    from llm_platform.domain.accounts import create_account
    from llm_platform.domain.errors import BadRequest, Conflict

    created = create_account("operator-made", email=" Boss@Example.com ")
    start(invoke, "boss@example.com")
    status, body = verify(invoke, "boss@example.com", code_for("boss@example.com"))
    assert (status, body["data"]) == (200, {"accountId": created.account_id, "created": False})
    # Given the address is taken, when another account is created with it: refused, and nothing is created
    accounts_before = scan(tables["AccountsTable"])
    with pytest.raises(Conflict):
        create_account("second", email="boss@example.com")
    with pytest.raises(BadRequest):
        create_account("third", email="not an address")
    assert scan(tables["AccountsTable"]) == accounts_before
