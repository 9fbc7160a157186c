"""The proxy's logs and metrics, stdlib only (it is on the cold path; Powertools is not).

- Every line of the ``llm_platform`` loggers is one JSON object on stdout, with the request's fields
  (requestId, keyId, accountId, model) and whatever ``extra`` the call passed. Under uvicorn nothing else
  would print them: its logging config leaves ``llm_platform`` without a handler, so Python's last-resort
  handler printed bare messages and dropped every ``extra``.
- Each request ends with one line, ``"message": "request"``: who, what, tokens, cost, status and latency.
  The same line is the request's metrics in CloudWatch's embedded metric format (its ``_aws`` member):
  Requests, Latency, ServerErrors, SpendUsd and ReservationsOpen per function, and Errors per error code.
  No other metric call, no API call: CloudWatch Logs extracts them from the log group.

Never a secret: the Authorization header is never read here, and anything shaped like a platform key
(``sk_live_…``, ``mk_…``) is masked in every line as a last guard."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from contextvars import ContextVar
from typing import Any

SERVICE = "proxy"
_KEY_SHAPED = re.compile(r"\b(sk_live_|mk_)[A-Za-z0-9_\-]{4,}")
# Attributes every LogRecord has: anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestRecord:
    """What one request's line says; filled as the request goes (authentication, admission, settle)."""

    __slots__ = (
        "account_id",
        "api_request_id",
        "code",
        "cost_micros",
        "input_tokens",
        "key_id",
        "method",
        "model",
        "output_tokens",
        "path",
        "provider",
        "request_id",
        "finished",
        "started",
        "status",
        "stream",
    )

    def __init__(self, request_id: str, method: str, path: str, api_request_id: str | None) -> None:
        self.request_id, self.method, self.path, self.api_request_id = request_id, method, path, api_request_id
        self.started = time.perf_counter()
        self.key_id: str | None = None
        self.account_id: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.code: str | None = None
        self.stream: bool | None = None
        self.input_tokens = self.output_tokens = self.cost_micros = 0
        self.status = 0
        self.finished = False


_current: ContextVar[RequestRecord | None] = ContextVar("proxy_request", default=None)
_open_reservations = 0


def begin(request_id: str, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> RequestRecord:
    """Start the record of a request (``headers``: the ASGI scope's, for API Gateway's request id)."""
    record = RequestRecord(request_id, method, path, _api_request_id(headers))
    _current.set(record)
    return record


def current() -> RequestRecord | None:
    return _current.get()


def reservation_opened() -> None:
    global _open_reservations
    _open_reservations += 1


def reservation_closed() -> None:
    global _open_reservations
    _open_reservations = max(0, _open_reservations - 1)


def finish(record: RequestRecord, status: int) -> None:
    """The request's line, with its metrics (CloudWatch embedded metric format); once per request."""
    if record.finished:
        return
    record.finished = True
    record.status = status or record.status
    latency_ms = round((time.perf_counter() - record.started) * 1000, 1)
    server_error = 1 if record.status >= 500 else 0
    metrics = [
        {"Name": "Requests", "Unit": "Count"},
        {"Name": "Latency", "Unit": "Milliseconds"},
        {"Name": "ServerErrors", "Unit": "Count"},
        {"Name": "SpendUsd", "Unit": "None"},
        {"Name": "ReservationsOpen", "Unit": "Count"},
    ]
    directives: list[dict[str, Any]] = [{"Namespace": _namespace(), "Dimensions": [["Service"]], "Metrics": metrics}]
    line: dict[str, Any] = {
        "timestamp": _iso_now(),
        "level": "ERROR" if server_error else "INFO",
        "logger": "llm_platform.proxy",
        "message": "request",
        "requestId": record.request_id,
        "apiRequestId": record.api_request_id,
        "method": record.method,
        "path": record.path,
        "keyId": record.key_id,
        "accountId": record.account_id,
        "model": record.model,
        "provider": record.provider,
        "stream": record.stream,
        "promptTokens": record.input_tokens,
        "completionTokens": record.output_tokens,
        "costMicros": record.cost_micros,
        "status": record.status,
        "code": record.code,
        "latencyMs": latency_ms,
        "Service": SERVICE,
        "Requests": 1,
        "Latency": latency_ms,
        "ServerErrors": server_error,
        "SpendUsd": record.cost_micros / 1_000_000,
        "ReservationsOpen": _open_reservations,
    }
    if record.code:
        directives.append(
            {"Namespace": _namespace(), "Dimensions": [["Service", "ErrorCode"]], "Metrics": [{"Name": "Errors"}]}
        )
        line["ErrorCode"], line["Errors"] = record.code, 1
    line["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}
    _write(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the current request's fields, ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = _current.get()
        if request is not None:
            line.update(
                requestId=request.request_id,
                keyId=request.key_id,
                accountId=request.account_id,
                model=request.model,
                provider=request.provider,
            )
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES:
                line[name] = value
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return _mask(json.dumps(line, default=str, separators=(",", ":")))


_configured = False


def configure_logging() -> None:
    """Send the ``llm_platform`` loggers' lines to stdout as JSON (idempotent). Called by the proxy's entry
    (functions/proxy/app.py), so it holds wherever uvicorn runs it."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llm_platform")
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())
    _configured = True


def _write(line: dict[str, Any]) -> None:
    if _configured:
        sys.stdout.write(_mask(json.dumps(line, default=str, separators=(",", ":"))) + "\n")
        sys.stdout.flush()


def _mask(text: str) -> str:
    return _KEY_SHAPED.sub(r"\1***", text) if ("sk_live_" in text or "mk_" in text) else text


def _namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "LlmPlatform"


def _api_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """API Gateway's request id (the access log's), from the Web Adapter's x-amzn-request-context header."""
    for name, value in headers:
        if name == b"x-amzn-request-context":
            try:
                return json.loads(value).get("requestId")
            except (ValueError, AttributeError):
                return None
    return None


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _iso_now() -> str:
    return _iso(time.time())
