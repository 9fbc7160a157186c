"""The management API's resolver: body-size cap and authentication (a management key, or the dashboard's
session cookie under the origin rule of ``domain/sessions.py``) ahead of validation (so a stranger gets
401, not a schema lesson), and every error mapped to HTTP in one place. The sign-in routes use it
``public``: no caller, the same caps, checks and error mapping."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.config import get_settings
from llm_platform.domain import accounts, sessions
from llm_platform.domain.accounts import Caller
from llm_platform.domain.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InsufficientCredit,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
    Unprocessable,
    UnsupportedMediaType,
)
from llm_platform.observability import logger

# The one table from domain errors to HTTP statuses.
STATUS_BY_ERROR: dict[type[DomainError], HTTPStatus] = {
    BadRequest: HTTPStatus.BAD_REQUEST,
    Unauthenticated: HTTPStatus.UNAUTHORIZED,
    InsufficientCredit: HTTPStatus.PAYMENT_REQUIRED,
    Forbidden: HTTPStatus.FORBIDDEN,
    NotFound: HTTPStatus.NOT_FOUND,
    Conflict: HTTPStatus.CONFLICT,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    UnsupportedMediaType: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    Unprocessable: HTTPStatus.UNPROCESSABLE_ENTITY,
    TooManyRequests: HTTPStatus.TOO_MANY_REQUESTS,
    ServiceUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def status_for(error: DomainError) -> HTTPStatus:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return HTTPStatus.BAD_REQUEST


def ok(data: Any, status: HTTPStatus = HTTPStatus.OK, cookies: list[Cookie] | None = None) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body={"data": data}, cookies=cookies
    )


def page(items: list[Any], next_cursor: str | None) -> Response:
    """A page of a list: ``{"data": [...], "nextCursor": "…" | null}``."""
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body={"data": items, "nextCursor": next_cursor},
    )


def session_cookie(token: str, max_age: int) -> Cookie:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/, and Secure
    with the __Host- prefix on AWS (SESSION_COOKIE_SECURE; off only on the local stack's plain http)."""
    return Cookie(
        name=sessions.cookie_name(),
        value=token,
        path="/",
        secure=get_settings().session_cookie_secure,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.STRICT_MODE,
    )


def cleared_session_cookie() -> Cookie:
    return session_cookie("", 0)


def error_headers(error: DomainError) -> dict[str, str]:
    retry_after = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


def _error(status: HTTPStatus, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message),
        headers=headers or None,
    )


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header of an API Gateway event, by lower-case name."""
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def cookie(event: Mapping[str, Any], name: str) -> str | None:
    """A cookie of the request (every Cookie header; the first cookie of that name)."""
    values = [v for k, vs in (event.get("multiValueHeaders") or {}).items() if k.lower() == "cookie" for v in vs]
    if not values and (single := header(event, "cookie")):
        values = [single]
    for value in values:
        for pair in value.split(";"):
            key, sep, content = pair.strip().partition("=")
            if sep and key == name:
                return content.strip().strip('"')
    return None


def _dashboard_origins(event: Mapping[str, Any]) -> tuple[str, ...]:
    """Where the dashboard is served: DASHBOARD_ORIGIN (comma-separated) when set, else this request's own
    origin, since the dashboard is served by this same API (API Gateway sets X-Forwarded-Proto: https)."""
    configured = get_settings().dashboard_origin
    if configured:
        return tuple(o.strip().rstrip("/").lower() for o in configured.split(",") if o.strip())
    host = (header(event, "host") or "").strip().lower()
    if not host:
        return ()
    proto = (header(event, "x-forwarded-proto") or "http").split(",")[0].strip().lower()
    return (f"{proto}://{host}",)


def dashboard_url(event: Mapping[str, Any]) -> str | None:
    """The dashboard this API serves at ``/`` (DashboardFunction), as the customer reaches it: the first
    DASHBOARD_ORIGIN when set, else this request's origin and stage (requestContext.path carries the stage,
    ``/prod/api/…``, the event's path does not). Where Stripe Checkout returns when no URL is configured."""
    origins = _dashboard_origins(event)
    if not origins:
        return None
    if get_settings().dashboard_origin:
        return origins[0] + "/"
    route = str(event.get("path") or "")
    called = str((event.get("requestContext") or {}).get("path") or route)
    prefix = called[: -len(route)] if route and called.endswith(route) else ""
    return f"{origins[0]}{prefix.rstrip('/')}/"


def browser_request(event: Mapping[str, Any]) -> sessions.BrowserRequest:
    """Where the request comes from, and its session cookie (see ``domain/sessions.py`` for the rule)."""
    return sessions.BrowserRequest(
        method=str(event.get("httpMethod", "")),
        origin=header(event, "origin"),
        fetch_site=header(event, "sec-fetch-site"),
        dashboard_origins=_dashboard_origins(event),
        session_token=cookie(event, sessions.cookie_name()),
    )


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The request body's bytes, exactly as sent (API Gateway base64-encodes bodies it deems binary)."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return body.encode()
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest("The body is not valid base64.", code="invalid_body") from error


def _check_size(raw: bytes, limit: int) -> None:
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")


_METHODS_WITH_BODY = {"POST", "PUT", "PATCH"}


def _check_json(event: Mapping[str, Any], raw: bytes) -> None:
    """A body must be JSON in UTF-8 (the resolver would otherwise parse a form); a body sent with a GET
    or DELETE is ignored, as before. The Content-Type is normalised to what the resolver's validation
    expects (it compares case-sensitively), so ``Application/JSON`` and ``application/…+json`` pass."""
    if not raw or str(event.get("httpMethod", "")).upper() not in _METHODS_WITH_BODY:
        return
    media_type = (header(event, "content-type") or "application/json").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Send JSON with 'Content-Type: application/json'.")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest("Request body is not valid JSON.", code="invalid_json") from error
    for headers in (event.get("headers") or {}, event.get("multiValueHeaders") or {}):
        for key in [k for k in headers if k.lower() == "content-type"]:
            headers[key] = ["application/json"] if isinstance(headers[key], list) else "application/json"


def _raw_error(status: HTTPStatus, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An error as the Lambda proxy response itself, for refusals before the resolver runs."""
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": json.dumps(error_body(code, message)),
        "isBase64Encoded": False,
    }


class ManagementApi(APIGatewayRestResolver):
    def __init__(self, *, public: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.public = public  # the sign-in routes: nobody is signed in yet

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            raw = raw_body(event)
            _check_size(raw, get_settings().max_body_bytes)
            browser = browser_request(event)
            caller = None if self.public else accounts.authenticate(header(event, "authorization"), browser)
            _check_json(event, raw)
        except DomainError as error:
            logger.info("request refused", extra={"status": status_for(error).value, "code": error.code})
            return _raw_error(status_for(error), error.code, error.message, error_headers(error))
        except Exception:
            # DynamoDB down or throttled while reading the key or session: the route's handler below would map
            # this to 500, so must this (escaping, it is Lambda's error and API Gateway's 502 in its own words).
            logger.exception("authentication failed unexpectedly")
            return _raw_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.")
        self.append_context(caller=caller, browser=browser)
        if caller is not None:
            logger.append_keys(account_id=caller.account_id)
        response = super().resolve(event, context)
        logger.info("request handled", extra={"status": response["statusCode"], "route": event.get("resource")})
        return response

    @property
    def caller(self) -> Caller:
        return self.context["caller"]

    @property
    def browser(self) -> sessions.BrowserRequest:
        return self.context["browser"]


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location}: {error.get('msg')}" if location else str(error.get("msg")))
    return "; ".join(parts) or "Invalid request."


def build_app(*, public: bool = False) -> ManagementApi:
    app = ManagementApi(public=public, enable_validation=True)

    @app.exception_handler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        return _error(status_for(error), error.code, error.message, error_headers(error))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(HTTPStatus.BAD_REQUEST, "invalid_json", "Request body is not valid JSON.")
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", _describe(errors))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_type(_: Exception) -> Response:
        return _error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send JSON with 'Content-Type: application/json'.",
        )

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        return _error(HTTPStatus.NOT_FOUND, "route_not_found", "No such route.")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.")

    return app
