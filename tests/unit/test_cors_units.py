"""CORS on /v1 (proxy/cors.py): the origins setting, origin matching, the preflight's and the answers' headers,
driven through the proxy's ASGI app without a server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llm_platform.config import ConfigError, Settings, _parse
from llm_platform.proxy import cors

APP = "https://app.example.com"
OTHER = "https://evil.example.com"
SDK_HEADERS = (
    "authorization, content-type, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
    "x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout"
)


@pytest.fixture
def origins(tables, monkeypatch: pytest.MonkeyPatch):
    """Set CORS_ALLOWED_ORIGINS (None: unset) and read the settings again (tables: moto, env as on AWS)."""
    from llm_platform.config import get_settings

    def configure(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
        else:
            monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
        get_settings.cache_clear()

    yield configure
    get_settings.cache_clear()


def _call(app: Any, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One request through an ASGI app: (status, headers, body)."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers: dict[str, str] = {}
    for name, value in start["headers"]:
        assert name.decode() not in response_headers, f"header sent twice: {name!r}"
        response_headers[name.decode()] = value.decode()
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, body


def _preflight(origin: str | None, path: str = "/v1/chat/completions", method: str = "POST", **extra: str) -> Any:
    from llm_platform.proxy.asgi import create_app

    headers = {"access-control-request-method": method, "access-control-request-headers": SDK_HEADERS, **extra}
    if origin is not None:
        headers["origin"] = origin
    return _call(create_app(), "OPTIONS", path, headers)


# ------------------------------------------------------------------ the setting


def test_origins_are_read_as_browsers_serialize_them() -> None:
    # Given the variable as an operator writes it
    raw = " https://App.Example.com/ ,http://localhost:5173,"
    # Then it is a typed tuple of exact, lower-case origins without a trailing slash
    assert _parse(Settings.__dataclass_fields__["cors_allowed_origins"].type, raw) == (
        "https://app.example.com",
        "http://localhost:5173",
    )


@pytest.mark.parametrize("raw", ["*", "https://*.example.com", "https://app.example.com/path", "app.example.com"])
def test_anything_but_exact_origins_fails_loudly(raw: str) -> None:
    with pytest.raises(ConfigError):
        _parse("tuple[str, ...]", raw)


def test_unset_means_no_cors(origins) -> None:
    from llm_platform.config import get_settings

    origins(None)
    assert get_settings().cors_allowed_origins == ()


# ------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("sent", "matched"),
    [
        (APP, APP),
        ("https://APP.example.com", "https://APP.example.com"),  # hosts are case-insensitive: echoed as sent
        (OTHER, None),
        ("https://app.example.com.evil.com", None),  # exact, not a prefix
        ("http://app.example.com", None),  # another scheme is another origin
        ("https://app.example.com:8443", None),  # another port too
        ("null", None),  # sandboxed frames and file:// pages
        ("", None),
    ],
)
def test_only_an_exact_origin_matches(sent: str, matched: str | None) -> None:
    scope = {"headers": [(b"origin", sent.encode())]}
    assert cors.allowed_origin(scope, (APP,)) == matched


def test_no_origin_or_no_list_matches_nothing() -> None:
    assert cors.allowed_origin({"headers": []}, (APP,)) is None
    assert cors.allowed_origin({"headers": [(b"origin", APP.encode())]}, ()) is None


def test_route_methods_follow_the_routes() -> None:
    assert cors.route_methods("/v1/chat/completions") == cors.route_methods("/v1/embeddings") == "POST"
    assert cors.route_methods("/v1/models") == cors.route_methods("/v1/key") == "GET"
    assert cors.route_methods("/v1/models/deepseek/deepseek-chat-v3-0324") == "GET"
    assert cors.route_methods("/v1/models/") is None and cors.route_methods("/v1/files") is None


def test_every_proxy_route_of_the_template_has_its_preflight() -> None:
    from conftest import TEMPLATE

    from local_stack.template import api_routes

    # Given the proxy's routes in template.yaml
    routes = [r for r in api_routes(TEMPLATE) if r.function_id == "ProxyFunction"]
    served = {(r.method, r.path) for r in routes if r.method != "OPTIONS"}
    # Then each has an OPTIONS route, and the preflight names its method (a new route cannot be forgotten)
    assert {(r.method, r.path) for r in routes if r.method == "OPTIONS"} == {("OPTIONS", p) for _, p in served}
    for method, path in served:
        assert cors.route_methods(path.replace("{model+}", "deepseek/deepseek-chat-v3-0324")) == method, path


# ------------------------------------------------------------------ the preflight


def test_a_preflight_from_an_allowed_origin_gets_everything_the_sdk_needs(origins) -> None:
    # Given CORS on for two origins
    origins(f"{APP},http://localhost:5173")

    # When the browser preflights the SDK's chat request (no key, as browsers send preflights)
    status, headers, body = _preflight(APP, **{"access-control-request-headers": SDK_HEADERS + ", x-stainless-new"})

    # Then 204, the exact origin (never *), the route's method, every header the SDK sends, a max age
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-methods"] == "POST, OPTIONS"
    allowed = {name.strip() for name in headers["access-control-allow-headers"].split(",")}
    assert {name.strip() for name in SDK_HEADERS.split(",")} <= allowed
    assert {"openai-organization", "openai-project", "idempotency-key", "x-stainless-new"} <= allowed
    assert headers["access-control-max-age"] == "7200"
    assert "Origin" in headers["vary"]
    # And no credentials are invited
    assert "access-control-allow-credentials" not in headers


def test_a_preflight_allows_no_header_outside_the_list(origins) -> None:
    origins(APP)
    _, headers, _ = _preflight(APP, **{"access-control-request-headers": "authorization, x-evil, cookie"})
    allowed = {name.strip() for name in headers["access-control-allow-headers"].split(",")}
    assert "x-evil" not in allowed and "cookie" not in allowed


@pytest.mark.parametrize("path", ["/v1/models", "/v1/key", "/v1/models/test/echo"])
def test_get_routes_preflight_for_get(origins, path: str) -> None:
    origins(APP)
    status, headers, _ = _preflight(APP, path=path, method="GET")
    assert status == 204 and headers["access-control-allow-methods"] == "GET, OPTIONS"


@pytest.mark.parametrize("configured", [APP, None])
def test_a_preflight_from_another_origin_is_refused_in_the_error_format(origins, configured: str | None) -> None:
    # Given CORS on for another origin, or off
    origins(configured)

    # When a foreign origin preflights
    status, headers, body = _preflight(OTHER)

    # Then 403 origin_not_allowed in OpenAI's error shape, with no CORS allowance at all
    assert status == 403
    error = json.loads(body)["error"]
    assert error["code"] == "origin_not_allowed" and set(error) == {"message", "type", "code", "param"}
    assert not [name for name in headers if name.startswith("access-control-")]


def test_options_without_origin_is_not_a_preflight(origins) -> None:
    origins(APP)
    status, headers, _ = _preflight(None)
    assert status == 204 and headers["allow"] == "POST, OPTIONS"
    assert not [name for name in headers if name.startswith("access-control-")]


def test_options_on_an_unknown_path_is_not_found(origins) -> None:
    origins(APP)
    status, _, body = _preflight(APP, path="/v1/files")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


# ------------------------------------------------------------------ actual answers


def test_an_error_answer_to_an_allowed_origin_is_readable(origins) -> None:
    from llm_platform.proxy.asgi import create_app

    # Given CORS on
    origins(APP)

    # When a browser on the allowed origin calls without a key (401 before any DynamoDB read)
    status, headers, _ = _call(create_app(), "GET", "/v1/models", {"origin": APP})

    # Then the error carries the origin and the headers a script may read
    assert status == 401
    assert headers["access-control-allow-origin"] == APP and headers["vary"] == "Origin"
    exposed = {name.strip() for name in headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "x-request-cost", "retry-after"} <= exposed
    assert {"x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens"} <= exposed


def test_an_answer_to_another_origin_has_no_cors_headers(origins) -> None:
    from llm_platform.proxy.asgi import create_app

    origins(APP)
    status, headers, _ = _call(create_app(), "GET", "/v1/models", {"origin": OTHER})
    assert status == 401 and headers["vary"] == "Origin"
    assert not [name for name in headers if name.startswith("access-control-")]


def test_with_cors_off_answers_are_unchanged(origins) -> None:
    from llm_platform.proxy.asgi import create_app

    origins(None)
    _, headers, _ = _call(create_app(), "GET", "/v1/models", {"origin": APP})
    assert "vary" not in headers and not [name for name in headers if name.startswith("access-control-")]


def test_the_readiness_probe_needs_no_configuration(origins, monkeypatch) -> None:
    from llm_platform.proxy.asgi import create_app

    # Given CORS on but no table configured at all (the adapter's probe runs before anything else)
    origins(APP)
    for name in ("ACCOUNTS_TABLE", "API_KEYS_TABLE"):
        monkeypatch.delenv(name, raising=False)
    # Then /healthz still answers, without CORS headers
    status, headers, _ = _call(create_app(), "GET", "/healthz", {"origin": APP})
    assert status == 200 and "access-control-allow-origin" not in headers
