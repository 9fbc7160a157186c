"""local_stack.gateway: HTTP request <-> API Gateway v1 proxy event translation around real handler files.

Requests go over real HTTP to uvicorn in a thread (ServerThread), as in the local stack itself.
"""

from __future__ import annotations

import base64
import json
import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from local_stack.gateway import MAX_BODY_BYTES, build_gateway
from local_stack.server_thread import ServerThread

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Handler: handler.lambda_handler
    CodeUri: functions/echo/
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        GetItem: {Type: Api, Properties: {Path: "/items/{id}", Method: get}}
        Special: {Type: Api, Properties: {Path: /items/special, Method: get}}
        Create: {Type: Api, Properties: {Path: /items, Method: post}}
        Files: {Type: Api, Properties: {Path: "/files/{proxy+}", Method: any}}
  BinaryFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handler.binary
      Events:
        Get: {Type: Api, Properties: {Path: /binary, Method: get}}
  MalformedFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handler.malformed
      Events:
        Get: {Type: Api, Properties: {Path: /malformed, Method: get}}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/boom
      Events:
        Any: {Type: Api, Properties: {Path: /boom, Method: any}}
"""

ECHO_HANDLER = """
import base64
import json
import os

from helpers import TAG  # a sibling module, importable as on Lambda

CALLS = 0


def lambda_handler(event, context):
    global CALLS
    CALLS += 1
    return {
        "statusCode": 200,
        "headers": {"x-single": "one", "set-cookie": "a=1"},
        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
        "body": json.dumps({
            "event": event,
            "calls": CALLS,
            "tag": TAG,
            "setting": os.environ.get("ECHO_SETTING"),
            "context": {
                "function_name": context.function_name,
                "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "aws_request_id": context.aws_request_id,
                "log_group_name": context.log_group_name,
                "remaining": context.get_remaining_time_in_millis(),
            },
        }),
    }


def binary(event, context):
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/octet-stream"},
        "body": base64.b64encode(b"\\x00\\xffdata").decode(),
        "isBase64Encoded": True,
    }


def malformed(event, context):
    return {"body": {"not": "a string"}}
"""

BOOM_HANDLER = """
def lambda_handler(event, context):
    raise RuntimeError("kaboom")
"""


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    (tmp_path / "functions" / "echo").mkdir(parents=True)
    (tmp_path / "functions" / "boom").mkdir(parents=True)
    (tmp_path / "functions" / "echo" / "handler.py").write_text(textwrap.dedent(ECHO_HANDLER))
    (tmp_path / "functions" / "echo" / "helpers.py").write_text("TAG = 'sibling'\n")
    (tmp_path / "functions" / "boom" / "handler.py").write_text(BOOM_HANDLER)
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture
def app(template_path: Path, monkeypatch: pytest.MonkeyPatch) -> Starlette:
    monkeypatch.setenv("ECHO_SETTING", "before")  # so monkeypatch restores what build_gateway overwrites
    return build_gateway(template_path, {"ECHO_SETTING": "from-env"})


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    server = ServerThread(app, port=0)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            yield http
    finally:
        server.stop()


@pytest.fixture
def client(app: Starlette) -> Iterator[httpx.Client]:
    with serve(app) as http:
        yield http


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def test_path_parameters_and_request_context(client: httpx.Client) -> None:
    # Given a route with a path parameter
    # When it is called
    body = echoed(client.get("/items/abc-123", headers={"user-agent": "tests/1.0"}))

    # Then the handler receives a REST API proxy event for the template resource
    event = body["event"]
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/abc-123"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "abc-123"}
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["resourcePath"] == "/items/{id}"
    assert ctx["httpMethod"] == "GET"
    assert ctx["stage"] == "local"
    assert ctx["accountId"] == "000000000000"
    assert ctx["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "tests/1.0"}
    assert len(ctx["requestId"]) == 36
    assert ctx["requestTimeEpoch"] > 1_600_000_000_000
    # And a Lambda-like context object
    assert body["context"]["function_name"] == "EchoFunction"
    assert body["context"]["function_version"] == "$LATEST"
    assert body["context"]["invoked_function_arn"].endswith(":function:EchoFunction")
    assert body["context"]["memory_limit_in_mb"] == 256
    assert body["context"]["log_group_name"] == "/aws/lambda/EchoFunction"
    assert 0 < body["context"]["remaining"] <= 29_000


def test_handler_module_is_loaded_once_with_env_and_siblings(client: httpx.Client) -> None:
    # Given the gateway was built with an environment
    # When the same function is called twice
    first = echoed(client.get("/items/1"))
    second = echoed(client.get("/items/2"))

    # Then the module is cached, sees the environment and imports its sibling modules
    assert (first["calls"], second["calls"]) == (1, 2)
    assert first["setting"] == "from-env" == os.environ["ECHO_SETTING"]
    assert first["tag"] == "sibling"


def test_literal_route_wins_over_parameter_and_greedy_proxy(client: httpx.Client) -> None:
    # Given /items/special and /items/{id}, and /files/{proxy+} for any method
    # When each is called
    special = echoed(client.get("/items/special"))["event"]
    files = echoed(client.delete("/files/a/b/c.txt"))["event"]

    # Then the literal route is chosen and the greedy parameter spans slashes
    assert special["resource"] == "/items/special"
    assert special["pathParameters"] is None
    assert files["resource"] == "/files/{proxy+}"
    assert files["httpMethod"] == "DELETE"
    assert files["pathParameters"] == {"proxy": "a/b/c.txt"}


def test_query_parameters_single_and_multi_value(client: httpx.Client) -> None:
    # Given a query string with a repeated and a blank parameter
    # When it is sent
    event = echoed(client.get("/items/1?tag=a&tag=b&q=hello%20world&empty="))["event"]

    # Then single values hold the last occurrence and multi values hold all, decoded
    assert event["queryStringParameters"] == {"tag": "b", "q": "hello world", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["hello world"], "empty": [""]}


def test_repeated_headers(client: httpx.Client) -> None:
    # Given a request with a repeated header
    headers = [("x-trace", "first"), ("x-trace", "second"), ("authorization", "Bearer k")]

    # When it is sent
    event = echoed(client.get("/items/1", headers=headers))["event"]

    # Then headers keep the last value and multiValueHeaders all of them
    assert event["headers"]["x-trace"] == "second"
    assert event["headers"]["authorization"] == "Bearer k"
    assert event["multiValueHeaders"]["x-trace"] == ["first", "second"]


def test_text_body_is_passed_as_is(client: httpx.Client) -> None:
    # Given a UTF-8 JSON body
    payload = {"name": "clé"}

    # When it is posted
    event = echoed(client.post("/items", json=payload))["event"]

    # Then it arrives as text, not base64
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == payload


def test_binary_body_is_base64_encoded(client: httpx.Client) -> None:
    # Given a body that is not valid UTF-8
    raw = b"\x89PNG\r\n\x1a\n\xff\xfe"

    # When it is posted
    event = echoed(client.post("/items", content=raw))["event"]

    # Then it arrives base64-encoded and flagged
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_response_headers_are_merged_and_base64_bodies_decoded(client: httpx.Client) -> None:
    # Given handlers returning multiValueHeaders and a base64 body
    # When they are called
    echo = client.get("/items/1")
    binary = client.get("/binary")

    # Then both header maps are merged (a duplicated pair once) and the body is decoded
    assert echo.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert echo.headers["x-single"] == "one"
    assert echo.headers["content-type"] == "application/json"  # API Gateway's default
    assert binary.status_code == 201
    assert binary.content == b"\x00\xffdata"
    assert binary.headers["content-type"] == "application/octet-stream"


def test_unknown_route_is_404_route_not_found(client: httpx.Client) -> None:
    # Given paths or methods absent from the template
    # When they are called
    unknown_path = client.get("/nope")
    unknown_method = client.put("/items/1")

    # Then the gateway answers like the template's MISSING_AUTHENTICATION_TOKEN response
    assert unknown_path.status_code == 404
    assert unknown_path.json() == {"error": {"code": "route_not_found", "message": "No route for GET /nope"}}
    assert unknown_method.status_code == 404
    assert unknown_method.json()["error"]["message"] == "No route for PUT /items/1"


def test_oversized_body_is_413_without_calling_the_handler(client: httpx.Client) -> None:
    # Given a body over API Gateway's 10 MiB limit, sent to a handler that would fail
    body = b"x" * (MAX_BODY_BYTES + 1)

    # When it is posted
    response = client.post("/boom", content=body)

    # Then the gateway rejects it before the handler (which would have produced a 502)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_handler_exception_is_502_and_logged(client: httpx.Client, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a handler that raises
    # When it is called
    response = client.get("/boom")

    # Then the client sees API Gateway's generic error and the traceback goes to stderr
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert "RuntimeError: kaboom" in capsys.readouterr().err


def test_malformed_handler_response_is_502(client: httpx.Client) -> None:
    # Given a handler returning no statusCode and a non-string body
    # When it is called
    response = client.get("/malformed")

    # Then the gateway reports it like API Gateway does
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_asgi_mounts_bypass_event_translation(template_path: Path) -> None:
    # Given an ASGI app mounted under /v1
    async def models(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("proxy")

    mounted = Starlette(routes=[Route("/models", models)])
    app = build_gateway(template_path, {}, asgi_mounts={"/v1": mounted})

    # When /v1/models and a template route are called
    with serve(app) as http:
        proxied = http.get("/v1/models")
        templated = http.get("/items/1")

    # Then the mount serves its path directly and the template routes still work
    assert proxied.text == "proxy"
    assert templated.json()["event"]["resource"] == "/items/{id}"


def test_source_ip_is_the_peer_not_x_forwarded_for(client: httpx.Client) -> None:
    # Given a request claiming another client address
    # When it is sent
    event = echoed(client.get("/items/42", headers={"x-forwarded-for": "1.2.3.4"}))["event"]

    # Then sourceIp is the real peer, as API Gateway reports it
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


def test_server_thread_stops(app: Starlette) -> None:
    # Given the gateway served in a thread
    server = ServerThread(app, port=0)
    server.start()
    assert httpx.get(f"{server.url}/items/1").status_code == 200

    # When it is stopped
    server.stop()

    # Then the thread is gone and the port refuses connections
    assert not server.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/items/1")


GATEWAY_RESPONSES = """
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      GatewayResponses:
        MISSING_AUTHENTICATION_TOKEN:
          StatusCode: 404
          ResponseParameters:
            Headers:
              Access-Control-Allow-Origin: "'*'"
          ResponseTemplates:
            application/json: '{"error": {"code": "route_not_found", "message": "No such route."}}'
        DEFAULT_4XX:
          ResponseTemplates:
            application/json: '{"error": {"code": "bad_request", "message": $context.error.messageString}}'
        DEFAULT_5XX:
          ResponseTemplates:
            application/json: '{"error": {"code": "internal_error", "message": $context.error.messageString}}'
"""


def test_template_gateway_responses_shape_gateway_errors(template_path: Path) -> None:
    # Given a template whose API customises gateway responses
    template_path.write_text(TEMPLATE + GATEWAY_RESPONSES)
    app = build_gateway(template_path, {})

    # When a missing route, an oversized body and a failing handler are hit
    with serve(app) as http:
        missing = http.get("/nope")
        too_large = http.post("/items", content=b"x" * (MAX_BODY_BYTES + 1))
        failed = http.get("/boom")

    # Then each uses its own type, or DEFAULT_4XX/5XX, with $context substitution and headers
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "route_not_found", "message": "No such route."}}
    assert missing.headers["access-control-allow-origin"] == "*"
    assert too_large.status_code == 413
    assert too_large.json() == {
        "error": {"code": "bad_request", "message": f"Request body exceeds {MAX_BODY_BYTES} bytes"}
    }
    assert failed.status_code == 502
    assert failed.json() == {"error": {"code": "internal_error", "message": "Internal server error"}}
