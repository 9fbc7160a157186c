"""CORS on /v1 over real HTTP, through the local stack's gateway (the template's routes, OPTIONS included) to
the proxy, with DynamoDB Local: browser clients from an allowed origin get preflights without a key and
readable answers (plain, streamed, errors, 429s); other origins get nothing; the management API never sends
CORS headers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from llm_platform.domain import accounts, api_keys
from llm_platform.domain.accounts import Caller
from tests.support.dynamodb_calls import dynamodb_operations

APP = "https://app.example.com"
OTHER = "https://evil.example.com"
# What the openai JS SDK sends from a browser (besides the safelisted ones).
SDK_HEADERS = (
    "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,"
    "x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout"
)
V1_ROUTES = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
    "/v1/models/test/echo": "GET",
    "/v1/key": "GET",
}


@pytest.fixture
def cors_on(local_stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The stack's proxy with CorsAllowedOrigins = APP and a dev server's origin (settings read again)."""
    from llm_platform.config import get_settings

    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{APP},http://localhost:5173")
    get_settings.cache_clear()
    yield local_stack.api_url
    monkeypatch.undo()
    get_settings.cache_clear()


def credit_key(rpm: int = 1000) -> str:
    created = accounts.create_account("cors-test")
    accounts.grant_credit(created.account_id, 1_000_000, "test")
    _, plaintext = api_keys.create_credit_key(
        Caller(created.account_id, created.management_key_id), "browser", None, rpm, 10_000_000
    )
    return plaintext


def preflight(url: str, path: str, origin: str, method: str = "POST") -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": SDK_HEADERS}
    return httpx.options(url + path, headers=headers, timeout=30)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def exposed(response: httpx.Response) -> set[str]:
    return {name.strip() for name in response.headers["access-control-expose-headers"].split(",")}


def test_preflights_from_an_allowed_origin_pass_on_every_v1_route_without_dynamodb(cors_on) -> None:
    # Given every DynamoDB call of this process observed (botocore and the proxy's own wire client)
    with dynamodb_operations() as operations:
        # When a browser on the allowed origin preflights every /v1 route through the gateway, without a key
        answers = {path: preflight(cors_on, path, APP, method) for path, method in V1_ROUTES.items()}

    # Then each is 204 with the exact origin, the route's method and the SDK's headers
    for path, response in answers.items():
        assert response.status_code == 204, (path, response.text)
        assert response.headers["access-control-allow-origin"] == APP, path
        assert response.headers["access-control-allow-methods"] == f"{V1_ROUTES[path]}, OPTIONS", path
        allowed = {name.strip() for name in response.headers["access-control-allow-headers"].split(",")}
        assert set(SDK_HEADERS.split(",")) <= allowed, path
        assert int(response.headers["access-control-max-age"]) > 0
    # And not one DynamoDB call was made for them
    assert operations == []


def test_a_preflight_from_another_origin_is_refused(cors_on) -> None:
    response = preflight(cors_on, "/v1/chat/completions", OTHER)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert cors_headers(response) == {}


def test_answers_to_an_allowed_origin_are_readable_plain_and_streamed(cors_on) -> None:
    # Given a key, used from a page on the allowed origin
    key = credit_key()
    headers = {"Origin": APP, "Authorization": f"Bearer {key}"}
    body = {"model": "test/echo", "messages": [{"role": "user", "content": "hello from a browser"}]}

    # When it asks for a completion, plainly and streamed
    plain = httpx.post(f"{cors_on}/v1/chat/completions", headers=headers, json=body, timeout=30)
    with httpx.stream(
        "POST", f"{cors_on}/v1/chat/completions", headers=headers, json={**body, "stream": True}, timeout=30
    ) as streamed:
        frames = [line for line in streamed.iter_lines() if line.startswith("data: ")]

    # Then both carry the origin and expose the request id, the cost and the rate-limit headers
    assert plain.status_code == 200, plain.text
    assert plain.headers["access-control-allow-origin"] == APP and "Origin" in plain.headers["vary"]
    assert {"x-request-id", "x-request-cost", "x-ratelimit-remaining-requests"} <= exposed(plain)
    assert {"x-request-id", "x-request-cost", "x-ratelimit-remaining-requests"} <= set(plain.headers)
    assert streamed.status_code == 200
    assert streamed.headers["access-control-allow-origin"] == APP
    assert streamed.headers["content-type"].startswith("text/event-stream")
    # And the stream itself is whole
    assert frames[-1] == "data: [DONE]" and json.loads(frames[0][6:])["object"] == "chat.completion.chunk"


def test_errors_and_429s_to_an_allowed_origin_are_readable(cors_on) -> None:
    # Given a key allowed one request a minute
    key = credit_key(rpm=1)
    headers = {"Origin": APP, "Authorization": f"Bearer {key}"}
    body = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}

    # When the browser sends two, then one with a wrong key
    first = httpx.post(f"{cors_on}/v1/chat/completions", headers=headers, json=body, timeout=30)
    second = httpx.post(f"{cors_on}/v1/chat/completions", headers=headers, json=body, timeout=30)
    wrong = httpx.get(f"{cors_on}/v1/models", headers={"Origin": APP, "Authorization": "Bearer sk_live_nope"})

    # Then the 429 and the 401 carry the origin, and the 429's retry-after and limits are readable
    assert first.status_code == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.headers["access-control-allow-origin"] == APP
    assert {"retry-after", "x-ratelimit-remaining-requests"} <= exposed(second) & set(second.headers)
    assert wrong.status_code == 401 and wrong.headers["access-control-allow-origin"] == APP


def test_answers_to_another_origin_carry_no_cors_headers(cors_on) -> None:
    key = credit_key()
    response = httpx.get(f"{cors_on}/v1/models", headers={"Origin": OTHER, "Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert cors_headers(response) == {} and response.headers["vary"] == "Origin"


def test_the_management_api_never_sends_cors_headers(cors_on, local_stack) -> None:
    # Given CORS on for APP, and a management key
    mk = {"Origin": APP, "Authorization": f"Bearer {local_stack.demo_management_key}"}

    # When a page on APP calls the management API, and preflights it
    plans = httpx.get(f"{cors_on}/api/plans", headers=mk)
    keys = httpx.get(f"{cors_on}/api/keys", headers=mk)
    options = preflight(cors_on, "/api/keys/credit", APP)

    assert plans.status_code == keys.status_code == 200
    # Then it gets no CORS header at all: the browser keeps the answers from the page (cookies stay safe)
    for response in (plans, keys, options):
        assert cors_headers(response) == {}, response.request.url
    # And there is no preflight route there: API Gateway's (and the gateway's) 404
    assert options.status_code == 404 and options.json()["error"]["code"] == "route_not_found"
