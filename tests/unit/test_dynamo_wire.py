"""The proxy's lean DynamoDB client (data/dynamo_wire.py): its SigV4 signature against botocore's own
signer, and its retries and error mapping against a real HTTP server speaking DynamoDB's JSON protocol
(its behaviour on real DynamoDB Local: tests/integration/test_proxy.py, test_money_edges.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.exceptions import ClientError

from llm_platform.data import dynamo, dynamo_wire

BODY = b'{"TransactItems":[{"Update":{"TableName":"t","Key":{"pk":{"S":"a  b"}}}}],"ClientRequestToken":"r-1"}'
HEADERS = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.TransactWriteItems"}


@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjEJr//////////session+token/with=padding"])
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com/", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:8000/", "127.0.0.1:8000"),
    ],
)
def test_the_signature_is_botocores(monkeypatch: pytest.MonkeyPatch, url: str, host: str, token: str | None) -> None:
    # Given one request, signed by botocore's SigV4Auth at a fixed time
    moment = datetime(2026, 11, 30, 15, 4, 5, tzinfo=UTC)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=BODY, headers=dict(HEADERS))
    SigV4Auth(
        BotocoreCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "dynamodb", "eu-west-1"
    ).add_auth(request)
    # When the lean client signs the same request
    signed = dynamo_wire.sign(
        "POST",
        host,
        "/",
        HEADERS,
        BODY,
        dynamo_wire.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        "eu-west-1",
        moment.strftime("%Y%m%dT%H%M%SZ"),
    )
    # Then the headers are the same, Authorization included
    assert signed["Authorization"] == request.headers["Authorization"]
    assert signed["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert signed.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_credentials_come_from_the_environment_with_the_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the variables Lambda sets
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session")
    # Then they are what signs
    assert dynamo_wire.credentials() == dynamo_wire.Credentials("ASIAEXAMPLE", "secret", "session")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert dynamo_wire.credentials().token is None


class FakeDynamoDB:
    """A real HTTP server answering each POST with the next scripted (status, JSON) answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.received: list[dict[str, Any]] = []
        self.close_after_answer = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.received.append({"headers": dict(self.headers), "body": json.loads(body)})
                status, answer = fake.answers.pop(0)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                self.close_connection = fake.close_after_answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def fake(tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDynamoDB]:
    from llm_platform.config import get_settings

    server = FakeDynamoDB()
    server.thread.start()
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "the-session-token")
    get_settings.cache_clear()
    waits: list[float] = []
    monkeypatch.setattr(dynamo_wire.time, "sleep", waits.append)
    server.waits = waits  # type: ignore[attr-defined]
    yield server
    server.server.shutdown()
    server.server.server_close()
    get_settings.cache_clear()


CANCELLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
    "message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
    "[ConditionalCheckFailed, None]",
    "CancellationReasons": [
        {
            "Code": "ConditionalCheckFailed",
            "Message": "The conditional request failed",
            "Item": {"keyHash": {"S": "h"}, "status": {"S": "revoked"}, "version": {"N": "3"}},
        },
        {"Code": "None"},
    ],
}


def test_a_cancelled_transaction_is_write_refused_with_the_old_item(fake: FakeDynamoDB) -> None:
    # Given DynamoDB cancels the transaction on its first item's condition
    fake.answers.append((400, CANCELLED))
    # When the proxy's transaction is written
    with pytest.raises(dynamo.WriteRefused) as refused, dynamo.hot_path():
        dynamo.transact([{"ConditionCheck": {}}, {"Update": {}}], ClientRequestToken="req-1")
    # Then the reasons and the item as it was (ALL_OLD) are what data/metering.py reads, as with botocore
    assert refused.value.reasons == ["ConditionalCheckFailed", "None"]
    assert refused.value.items == [{"keyHash": "h", "status": "revoked", "version": 3}, None]
    # And the request was signed, with the session token, and carried the token
    sent = fake.received[0]
    assert sent["body"]["ClientRequestToken"] == "req-1"
    assert sent["headers"]["X-Amz-Security-Token"] == "the-session-token"
    access_key = os.environ["AWS_ACCESS_KEY_ID"]
    assert sent["headers"]["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={access_key}/")


def test_throttling_and_5xx_are_retried_with_botocores_backoff_then_raised(fake: FakeDynamoDB) -> None:
    # Given a throttled attempt, then a 500, then success
    fake.answers += [(400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}), (500, {}), (200, {})]
    # When a transaction is written
    assert dynamo_wire.transact_write_items([{"Update": {}}], ClientRequestToken="req-2") == {}
    # Then it took three attempts of the same request, waiting at most 1 s (throttling), then 0.05 s (5xx)
    assert [r["body"] for r in fake.received] == [
        {"TransactItems": [{"Update": {}}], "ClientRequestToken": "req-2"}
    ] * 3
    assert len(fake.waits) == 2 and 0 <= fake.waits[0] <= 1 and 0 <= fake.waits[1] <= 0.05  # type: ignore[attr-defined]
    # And three failed attempts are the end: the error is botocore's ClientError
    fake.answers += [(503, {})] * 3
    with pytest.raises(ClientError) as failed:
        dynamo_wire.transact_write_items([{"Update": {}}])
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503 and len(fake.received) == 6


def test_a_transaction_conflict_is_retried_by_transact(fake: FakeDynamoDB) -> None:
    # Given a transaction that collides once with another one on the same item
    conflict = {**CANCELLED, "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]}
    fake.answers += [(400, conflict), (200, {})]
    # When it is written: it is retried, and applies
    with dynamo.hot_path():
        dynamo.transact([{"Update": {}}, {"Update": {}}], ClientRequestToken="req-3")
    assert len(fake.received) == 2 and fake.received[1]["body"]["ClientRequestToken"] == "req-3"


def test_other_errors_are_client_errors_with_their_code(fake: FakeDynamoDB) -> None:
    fake.answers.append(
        (400, {"__type": "com.amazon.coral.validate#ValidationException", "message": "One or more parameter values"})
    )
    with pytest.raises(ClientError) as failed, dynamo.hot_path():
        dynamo.transact([{"Update": {}}])
    assert failed.value.response["Error"] == {"Code": "ValidationException", "Message": "One or more parameter values"}
    assert len(fake.received) == 1  # not retried


def test_a_kept_alive_connection_the_server_closed_is_replaced(fake: FakeDynamoDB) -> None:
    # Given a server that closes each connection after answering, without saying so
    fake.close_after_answer = True
    fake.answers += [(200, {}), (200, {})]
    # When two transactions are written in turn: the second finds its connection gone and reconnects
    dynamo_wire.transact_write_items([{"Update": {}}], ClientRequestToken="req-4")
    dynamo_wire.transact_write_items([{"Update": {}}], ClientRequestToken="req-5")
    # Then both applied, once each
    assert [r["body"]["ClientRequestToken"] for r in fake.received] == ["req-4", "req-5"]


class _Tier(str):
    """A str subclass (as an enum's value may be): boto3 keeps the instance, and so must the fast path."""


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        0,
        -7,
        10**37,
        -(10**37) - 1,
        True,
        False,
        None,
        [1, "a", None, [True]],
        {"nested": {"n": 3, "s": "x", "l": [], "m": {}}, "none": None},
        Decimal("1.50"),
        Decimal("-0.000001"),
        {1, 2},
        {"a", "b"},
        b"\x00\xff",
        bytearray(b"ab"),
        ("tuple", 1),
        _Tier("pro"),
        {"deep": [Decimal("2.5"), {"x": b"y"}]},
    ],
)
def test_attribute_values_are_boto3s(value: Any) -> None:
    # Given any value a record may hold
    # When the proxy's serialiser writes it
    # Then it is exactly what boto3's TypeSerializer writes, types included
    expected = TypeSerializer().serialize(value)
    written = dynamo.to_attribute(value)
    assert written == expected
    assert json.dumps(written, default=repr, sort_keys=True) == json.dumps(expected, default=repr, sort_keys=True)


@pytest.mark.parametrize("value", [10**38, -(10**38), 1.5, float("nan"), Decimal("Infinity"), object()])
def test_attribute_values_boto3_refuses_are_refused(value: Any) -> None:
    # Given a value boto3 cannot write (too many digits, a float, infinity, an unknown type)
    # When the proxy's serialiser is asked to write it
    # Then it refuses it with boto3's own error
    with pytest.raises(Exception) as boto3s:
        TypeSerializer().serialize(value)
    with pytest.raises(type(boto3s.value)):
        dynamo.to_attribute(value)


def test_items_leave_out_none_and_values_keep_it() -> None:
    record = {"pk": "a", "n": 5, "gone": None, "flag": False}
    assert dynamo.to_item(record) == {"pk": {"S": "a"}, "n": {"N": "5"}, "flag": {"BOOL": False}}
    assert dynamo.to_values({":v": None, ":n": 1}) == {":v": {"NULL": True}, ":n": {"N": "1"}}
