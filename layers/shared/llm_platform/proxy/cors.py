"""CORS for browser clients of ``/v1`` (the openai JS SDK with ``dangerouslyAllowBrowser``, a web app of the
operator's customer), from the exact origins of ``CORS_ALLOWED_ORIGINS`` (template parameter
``CorsAllowedOrigins``; empty: no CORS headers at all, as before).

- A preflight (``OPTIONS`` on a ``/v1`` route) is answered here, before anything else: no API key, no DynamoDB,
  not a metered request. From an allowed origin: 204 with the origin echoed (never ``*``: no credentials are
  involved, API keys travel in ``Authorization``), the route's methods, the headers the SDK sends, a max age.
  From any other origin (or with CORS off): 403 ``origin_not_allowed`` in OpenAI's error format, so the
  refusal is visible in the browser's network panel. An ``OPTIONS`` without ``Origin`` (not a preflight): 204
  with ``Allow``.
- Every other ``/v1`` response to an allowed origin, errors and streams included, carries the origin and the
  headers the client may read (``x-request-id``, ``x-request-cost``, ``x-ratelimit-*``, ``retry-after``).
- ``Vary: Origin`` on every ``/v1`` response while CORS is on, so no cache serves one origin's answer to another.

The management API sends no CORS headers on purpose: the dashboard's session cookie must never be usable
from another origin (api/app.py checks ``Origin`` instead)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from llm_platform.config import get_settings

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# What the official openai JS SDK sends (openai-node's client buildHeaders and detect-platform): the key, the
# body's type, the Stainless platform headers, OpenAI's organization/project/beta headers, and an idempotency
# key. User-Agent: browsers that let scripts set it make it a non-safelisted header.
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "user-agent",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
    "x-stainless-helper-method",
    "x-stainless-poll-helper",
)
# Any other x-stainless-* header a newer SDK asks for is allowed too: they describe the client, nothing more.
_STAINLESS_PREFIX = "x-stainless-"
# Headers a browser script may read: those the proxy sends beyond the CORS-safelisted ones.
EXPOSED_HEADERS = (
    "x-request-id",
    "x-request-cost",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
)
# How long a browser may reuse a preflight (Chromium caps it at 2 hours, Firefox at 24).
MAX_AGE_SECONDS = 7200

_POST_ROUTES = frozenset({"/v1/chat/completions", "/v1/embeddings"})
_GET_ROUTES = frozenset({"/v1/models", "/v1/key"})


def route_methods(path: str) -> str | None:
    """The methods of the ``/v1`` route at ``path`` (trailing slash stripped), or None: not a route."""
    if path in _POST_ROUTES:
        return "POST"
    if path in _GET_ROUTES or (path.startswith("/v1/models/") and len(path) > len("/v1/models/")):
        return "GET"
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    value = next((value for key, value in scope.get("headers") or [] if key == name), None)
    return value.decode("latin-1") if value is not None else None


def allowed_origin(scope: Scope, allowed: tuple[str, ...]) -> str | None:
    """The request's ``Origin`` when it is exactly one of ``allowed`` (compared as browsers serialize
    origins: lower case, no trailing slash), else None."""
    origin = _header(scope, b"origin")
    if origin is None or not allowed:
        return None
    origin = origin.strip()
    return origin if origin.rstrip("/").lower() in allowed else None


def response_headers(origin: str | None, allowed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an actual (not preflight) response."""
    if not allowed:
        return []
    headers = [(b"vary", b"Origin")]
    if origin is not None:
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
        ]
    return headers


def preflight_headers(scope: Scope, origin: str, methods: str) -> list[tuple[bytes, bytes]]:
    """A preflight's answer to an allowed origin: the SDK's headers, plus any x-stainless-* it asks for."""
    requested = _header(scope, b"access-control-request-headers") or ""
    extra = [
        name
        for name in (part.strip().lower() for part in requested.split(","))
        if name.startswith(_STAINLESS_PREFIX) and name not in ALLOWED_HEADERS and name.isascii()
    ]
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", f"{methods}, OPTIONS".encode()),
        (b"access-control-allow-headers", ", ".join((*ALLOWED_HEADERS, *extra)).encode()),
        (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]


def with_cors(scope: Scope, send: Send, path: str) -> Send:
    """``send`` with the CORS headers added to the response's start: on ``/v1`` only (not the readiness
    probe, which must answer without any configuration), and unchanged when CORS is off."""
    if not path.startswith("/v1/"):
        return send
    allowed = get_settings().cors_allowed_origins
    if not allowed:
        return send
    extra = response_headers(allowed_origin(scope, allowed), allowed)

    async def send_with_cors(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_cors


async def preflight(scope: Scope, send: Send, path: str, request_id: str) -> None:
    """Answer an ``OPTIONS`` request on ``path`` (see the module's docstring); reads nothing but the request.
    Like every /v1 answer it carries ``x-request-id``."""
    request = [(b"x-request-id", request_id.encode())]
    methods = route_methods(path)
    if methods is None:
        await _send(send, 404, _error("not_found", f"Unknown route OPTIONS {path}."), request)
        return
    if _header(scope, b"origin") is None:  # a plain OPTIONS, not a browser's preflight
        await _send(send, 204, None, [(b"allow", f"{methods}, OPTIONS".encode()), *request])
        return
    allowed = get_settings().cors_allowed_origins
    origin = allowed_origin(scope, allowed)
    if origin is None:
        message = "This origin may not call the API from a browser (the operator's CorsAllowedOrigins)."
        await _send(send, 403, _error("origin_not_allowed", message), [*response_headers(None, allowed), *request])
        return
    await _send(send, 204, None, [*preflight_headers(scope, origin, methods), *request])


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}


async def _send(send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]]) -> None:
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    if payload is not None:  # a 204 has no body, so no length either
        headers = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
