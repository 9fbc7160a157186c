"""DynamoDB's JSON protocol spoken directly, for the proxy's hot path only (its admission and settle
transactions): signed with SigV4 here, sent over one kept-alive HTTP connection per thread. botocore
spends about a millisecond of CPU per call in its layers (parameter validation, serialisation,
events, endpoint rules, urllib3); this does the same request in a tenth of that. Everything off the
hot path keeps boto3 (``dynamo.client()``).

Behaves as botocore's client does for these calls: credentials from the environment (what Lambda
provides, session token included; else botocore's chain), the endpoint override of DynamoDB Local,
connect 2 s / read 5 s, standard-mode retries (3 attempts, jittered exponential backoff) of
throttling, 5xx and connection errors, and errors raised as botocore's ``ClientError`` with the same
``response`` (``Error.Code``, ``CancellationReasons`` with their ``Item``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from llm_platform.config import get_settings

SERVICE = "dynamodb"
MAX_ATTEMPTS = 3  # as the boto3 client's Config(retries={"mode": "standard", "max_attempts": 3})
CONNECT_TIMEOUT, READ_TIMEOUT = 2.0, 5.0
_CONTENT_TYPE = "application/x-amz-json-1.0"
# botocore's standard retry mode (botocore/retries/standard.py): what is retried, and how long to wait.
_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_THROTTLING_SCALE, _TRANSIENT_SCALE, _MAX_BACKOFF = 1.0, 0.025, 20.0

# Called once per operation with its name and parameters, and asked after each attempt whether to retry it
# anyway (attempt number, HTTP status): what botocore's before-call and needs-retry events give tests.
call_observers: list[Callable[[str, dict[str, Any]], None]] = []
retry_deciders: list[Callable[[str, int, int], bool]] = []


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


def credentials() -> Credentials:
    """The environment's (Lambda sets all three; the local stack the first two), else botocore's chain."""
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        return Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)
    return _chain_credentials()


def _chain_credentials() -> Credentials:
    # Frozen on each call: refreshable credentials (an instance role, SSO) renew themselves in there.
    frozen = _credential_chain().get_frozen_credentials()
    return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)


@cache
def _credential_chain() -> Any:
    """botocore's credential chain, resolved once (a session per call would read the profile files each time)."""
    import boto3  # only when the environment holds no keys (a profile, an instance role)

    found = boto3.Session().get_credentials()
    if found is None:
        raise RuntimeError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile")
    return found


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@cache
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    return _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")


def sign(
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    creds: Credentials,
    region: str,
    amz_date: str,
    service: str = SERVICE,
) -> dict[str, str]:
    """``headers`` plus ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a session token) and the SigV4
    ``Authorization`` over all of them and ``host``, exactly as botocore's ``SigV4Auth`` signs them."""
    signed = {**headers, "X-Amz-Date": amz_date}
    if creds.token:
        signed["X-Amz-Security-Token"] = creds.token
    canonical = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
    canonical["host"] = host
    names = sorted(canonical)
    signed_headers = ";".join(names)
    request = "\n".join(
        [
            method,
            path,
            "",
            "".join(f"{name}:{canonical[name]}\n" for name in names),
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
    signature = hmac.new(
        _signing_key(creds.secret_key, amz_date[:8], region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    return signed


class _Endpoint(NamedTuple):
    secure: bool
    hostname: str
    port: int
    host: str  # the Host header, and what is signed: the port only when it is not the scheme's default
    region: str


def _endpoint() -> _Endpoint:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _endpoint_of(get_settings().dynamodb_endpoint_url or f"https://dynamodb.{region}.amazonaws.com", region)


@cache
def _endpoint_of(url: str, region: str) -> _Endpoint:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname if port == (443 if secure else 80) else f"{parts.hostname}:{port}"
    return _Endpoint(secure, parts.hostname or "", port, host or "", region)


@cache
def _tls() -> ssl.SSLContext:
    from botocore.httpsession import get_cert_path  # the CA bundle botocore verifies against

    return ssl.create_default_context(cafile=get_cert_path(True))


_local = threading.local()


class ProtocolError(OSError):
    """A response that is not HTTP/1.1 as DynamoDB speaks it (or the connection ended inside it)."""


class _Connection:
    """One kept-alive HTTP/1.1 connection: a request is one ``sendall``, its response is read with
    buffered ``readline``/``read`` (http.client's layers cost twice the CPU of the exchange itself)."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self.endpoint = endpoint
        sock = socket.create_connection((endpoint.hostname, endpoint.port), timeout=CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.secure:
            sock = _tls().wrap_socket(sock, server_hostname=endpoint.hostname)
        sock.settimeout(READ_TIMEOUT)
        self.sock, self.reader = sock, sock.makefile("rb")

    def exchange(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = f"POST / HTTP/1.1\r\nHost: {self.endpoint.host}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(request.encode("latin-1") + body)
        status_line = self.reader.readline(65537)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"no HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        response: dict[str, str] = {}
        while (line := self.reader.readline(65537)) not in (b"\r\n", b"\n"):
            if not line:
                raise ProtocolError("the connection closed inside the response's headers")
            name, _, value = line.decode("latin-1").partition(":")
            response[name.strip().lower()] = value.strip()
        if "chunked" in response.get("transfer-encoding", "").lower():
            pieces = []
            while size := int(self.reader.readline(65537).split(b";", 1)[0], 16):
                pieces.append(self._exactly(size))
                self.reader.readline(65537)
            while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return status, response, b"".join(pieces)
        return status, response, self._exactly(int(response.get("content-length", "0")))

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise ProtocolError("the connection closed inside the response's body")
        return data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _connection(endpoint: _Endpoint) -> _Connection:
    connection = getattr(_local, "connection", None)
    if connection is not None and connection.endpoint != endpoint:  # the endpoint was changed (tests)
        _drop_connection()
        connection = None
    if connection is None:
        connection = _local.connection = _Connection(endpoint)
    return connection


def _drop_connection() -> None:
    connection = getattr(_local, "connection", None)
    _local.connection = None
    if connection is not None:
        connection.close()


def _error_code(payload: dict[str, Any]) -> str:
    return str(payload.get("__type", "")).rpartition("#")[2] or "Unknown"


def call(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """One DynamoDB operation (``TransactWriteItems``): its parsed answer, or ``ClientError``."""
    for observe in call_observers:
        observe(operation, params)
    endpoint = _endpoint()
    body = json.dumps(params, separators=(",", ":")).encode()
    target = {"Content-Type": _CONTENT_TYPE, "X-Amz-Target": f"DynamoDB_20120810.{operation}"}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = sign("POST", endpoint.host, "/", target, body, credentials(), endpoint.region, amz_date)
        try:
            status, response, raw = _connection(endpoint).exchange(headers, body)
            if "close" in response.get("connection", "").lower():
                _drop_connection()
        except (OSError, ValueError):  # refused, reset, timed out, a closed keep-alive, a garbled answer
            _drop_connection()
            if attempt == MAX_ATTEMPTS:
                raise
            _backoff(attempt, _TRANSIENT_SCALE)
            continue
        payload = json.loads(raw) if raw else {}
        if any(decide(operation, attempt, status) for decide in retry_deciders) and attempt < MAX_ATTEMPTS:
            continue
        if status < 300:
            return payload
        code = _error_code(payload)
        if attempt < MAX_ATTEMPTS and (code in _THROTTLING or code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS):
            _backoff(attempt, _THROTTLING_SCALE if code in _THROTTLING else _TRANSIENT_SCALE)
            continue
        raise ClientError(cast(Any, _error_response(payload, code, status, response)), operation)
    raise AssertionError("unreachable")


def _backoff(attempt: int, scale: float) -> None:
    time.sleep(random.random() * min(scale * 2 ** (attempt - 1), _MAX_BACKOFF))  # noqa: S311 - jitter


def _error_response(payload: dict[str, Any], code: str, status: int, response: dict[str, str]) -> dict[str, Any]:
    """The ``response`` of botocore's ``ClientError``: the modeled fields (``CancellationReasons``) at the top."""
    message = payload.get("message", payload.get("Message", ""))
    parsed = {key: value for key, value in payload.items() if key not in ("__type", "message", "Message")}
    parsed["Error"] = {"Code": code, "Message": message}
    parsed["ResponseMetadata"] = {
        "HTTPStatusCode": status,
        "RequestId": response.get("x-amzn-requestid", ""),
    }
    return parsed


def transact_write_items(items: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return call("TransactWriteItems", {"TransactItems": items, **kwargs})
