"""local_stack.gateway: functions under the Lambda Web Adapter are served by their own ASGI app.

The app named by the function's startup script (uvicorn module:attribute) gets the raw HTTP request on
the paths of the function's Api events, and its response reaches the client as it is sent.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from local_stack.gateway import asgi_target, build_gateway
from local_stack.server_thread import ServerThread

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Handler: handler.lambda_handler
    Environment:
      Variables:
        SHARED_SETTING: shared
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {{StageName: prod}}
  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/stream/
      Handler: run.sh
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
          AWS_LWA_INVOKE_MODE: response_stream
          STREAM_GATE: {gate}
          IMPORT_LOG: {import_log}
      Events:
        Chat:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /v1/chat/completions
            Method: post
            ResponseTransferMode: RESPONSE_STREAM
            TimeoutInMillis: 900000
        Echo:
          Type: Api
          Properties:
            {{RestApiId: !Ref Api, Path: "/v1/echo/{{id}}", Method: any, ResponseTransferMode: RESPONSE_STREAM}}
        Boom:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /v1/boom, Method: get, ResponseTransferMode: RESPONSE_STREAM}}
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/broken/
      Handler: run.sh
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
      Events:
        Get: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: /v2/broken, Method: get}}}}
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/plain/
      Events:
        Get: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: /api/plain, Method: get}}}}
"""

RUN_SH = """#!/bin/bash
export PYTHONPATH="$LAMBDA_TASK_ROOT:/opt/python"
exec python -m uvicorn \\
  web.main:api --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" --no-access-log
"""

# A raw ASGI app: lifespan state, a streamed answer gated by the test, an echo of the request, an error.
APP = """
import asyncio
import json
import os
from pathlib import Path

from helpers import TAG  # a sibling module, importable as on Lambda

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write("imported\\n")


async def api(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["greeting"] = "hello"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/v1/boom":
        raise RuntimeError("kaboom")
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    if scope["path"] == "/v1/chat/completions":
        await send(start)
        await send({"type": "http.response.body", "body": b"data: first\\n\\n", "more_body": True})
        gate = Path(os.environ["STREAM_GATE"])
        for _ in range(1000):  # the client opens the gate once it holds the first frame
            if gate.exists():
                last = b"data: after-gate\\n\\n"
                break
            await asyncio.sleep(0.01)
        else:
            last = b"data: gate-timeout\\n\\n"
        await send({"type": "http.response.body", "body": last})
        return
    echo = {
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
        "body": body.decode(),
        "state": scope["state"],
        "scope_keys": sorted(scope),
        "tag": TAG,
        "shared": os.environ.get("SHARED_SETTING"),
    }
    payload = json.dumps(echo).encode()
    await send({**start, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})
"""


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    stream = tmp_path / "functions" / "stream"
    (stream / "web").mkdir(parents=True)
    (stream / "run.sh").write_text(RUN_SH)
    (stream / "web" / "__init__.py").write_text("")
    (stream / "web" / "main.py").write_text(textwrap.dedent(APP))
    (stream / "helpers.py").write_text("TAG = 'sibling'\n")
    broken = tmp_path / "functions" / "broken"
    broken.mkdir(parents=True)
    (broken / "run.sh").write_text("#!/bin/bash\nexec python -m uvicorn app:app\n")
    (broken / "app.py").write_text("raise ImportError('missing dependency')\n")
    plain = tmp_path / "functions" / "plain"
    plain.mkdir(parents=True)
    (plain / "handler.py").write_text(
        "def lambda_handler(event, context):\n    return {'statusCode': 200, 'body': event['resource']}\n"
    )
    gate, import_log = tmp_path / "gate", tmp_path / "imports.log"
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.format(gate=gate, import_log=import_log))
    return {"template": template, "gate": gate, "import_log": import_log}


@pytest.fixture
def app(paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Starlette:
    # So monkeypatch restores what build_gateway writes into the process environment.
    for name in ("SHARED_SETTING", "STREAM_GATE", "IMPORT_LOG"):
        monkeypatch.setenv(name, "before")
    env = {"SHARED_SETTING": "shared", "STREAM_GATE": str(paths["gate"]), "IMPORT_LOG": str(paths["import_log"])}
    return build_gateway(paths["template"], env)


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    server = ServerThread(app, port=0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=20) as http:
            yield http
    finally:
        server.stop()


@pytest.fixture
def client(app: Starlette) -> Iterator[httpx.Client]:
    with serve(app) as http:
        yield http


def test_startup_script_names_the_asgi_app(tmp_path: Path) -> None:
    # Given startup scripts with and without a uvicorn target
    with_target = tmp_path / "run.sh"
    with_target.write_text(RUN_SH)
    without = tmp_path / "start.sh"
    without.write_text(
        "#!/bin/bash\n# uvicorn other:thing is only mentioned here\n"
        "exec ./server --log-config uvicorn.json --bind 0.0.0.0:8080\n"
    )
    binary = tmp_path / "bin.sh"
    binary.write_text('#!/bin/sh\nexec "$LAMBDA_TASK_ROOT/bin/uvicorn" --port 8080 main:application\n')

    # When / Then the target is read from the uvicorn command, else app:app (functions/<dir>/app.py:app)
    assert asgi_target(with_target) == "web.main:api"
    assert asgi_target(binary) == "main:application"
    assert asgi_target(without) == "app:app"
    assert asgi_target(tmp_path / "missing.sh") == "app:app"


def test_template_web_adapter_function_is_mounted_and_streams(
    client: httpx.Client, app: Starlette, paths: dict[str, Path]
) -> None:
    # Given a template function under the web adapter whose app holds its stream open after a first frame
    assert {r.function_id for r in app.state.routes if r.web_adapter} == {"StreamFunction", "BrokenFunction"}

    # When its streaming route is called
    with client.stream("POST", "/v1/chat/completions", json={"stream": True}) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        # Then the first frame arrives while the app is still waiting: the gateway does not buffer
        assert first == b"data: first\n\n"
        paths["gate"].touch()
        rest = b"".join(chunks)

    # And the rest follows once the client has released the app, with API Gateway's request id header
    assert rest == b"data: after-gate\n\n"
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert len(response.headers["x-amzn-requestid"]) == 36


def test_raw_request_is_passed_through_without_event_translation(client: httpx.Client) -> None:
    # Given a route with a path parameter on the adapter function
    # When a request with a query, headers and a body is sent
    response = client.request(
        "PATCH", "/v1/echo/abc?tag=a&tag=b", content=b"raw body", headers={"x-trace": "t1", "authorization": "Bearer k"}
    )

    # Then the app receives the HTTP request itself at its full path, no event, no gateway routing state
    assert response.status_code == 200, response.text
    echo = response.json()
    assert (echo["method"], echo["path"], echo["root_path"]) == ("PATCH", "/v1/echo/abc", "")
    assert echo["query_string"] == "tag=a&tag=b"
    assert echo["body"] == "raw body"
    assert ["x-trace", "t1"] in echo["headers"] and ["authorization", "Bearer k"] in echo["headers"]
    assert not {"path_params", "endpoint", "router", "app"} & set(echo["scope_keys"])
    # And the app was started like uvicorn starts it (lifespan state), with its siblings and environment
    assert echo["state"] == {"greeting": "hello"}
    assert echo["tag"] == "sibling"
    assert echo["shared"] == "shared"


def test_app_is_imported_lazily_and_once(app: Starlette, paths: dict[str, Path]) -> None:
    # Given the gateway was built but not called
    assert not paths["import_log"].exists()

    # When the adapter function is called twice
    with serve(app) as http:
        assert http.get("/v1/echo/1").status_code == 200
        assert http.get("/v1/echo/2").status_code == 200

    # Then its module was imported on the first request only
    assert paths["import_log"].read_text() == "imported\n"


def test_routes_not_in_the_template_still_404(client: httpx.Client, paths: dict[str, Path]) -> None:
    # Given paths and methods the template does not declare for the adapter function
    # When they are called
    other_path = client.get("/v1/completions")
    other_method = client.get("/v1/chat/completions")

    # Then the gateway answers route_not_found without reaching (or even importing) the app
    assert other_path.status_code == 404
    assert other_path.json() == {"error": {"code": "route_not_found", "message": "No route for GET /v1/completions"}}
    assert other_method.status_code == 404
    assert not paths["import_log"].exists()


def test_app_error_before_its_response_is_uvicorns_500(
    client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an app that raises before answering
    # When its route is called
    response = client.get("/v1/boom")

    # Then the client gets what uvicorn sends for it, and the traceback goes to stderr
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert "RuntimeError: kaboom" in capsys.readouterr().err


def test_app_that_cannot_load_is_a_gateway_502(client: httpx.Client) -> None:
    # Given an adapter function whose app fails to import (on AWS: the adapter never becomes ready)
    # When it is called
    response = client.get("/v2/broken")

    # Then the gateway reports the failed invocation like a failing handler
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_plain_handlers_still_get_events_next_to_web_apps(client: httpx.Client) -> None:
    # Given a plain handler in the same template
    # When it is called
    response = client.get("/api/plain")

    # Then it is invoked with an API Gateway event as before
    assert response.status_code == 200
    assert response.text == "/api/plain"


def test_concurrent_streams_are_not_serialised(app: Starlette, paths: dict[str, Path]) -> None:
    # Given one stream held open by the app (its gate is closed)
    with serve(app) as http, http.stream("POST", "/v1/chat/completions", json={}) as held:
        chunks = held.iter_raw()
        assert next(chunks) == b"data: first\n\n"

        # When another request reaches the same app meanwhile
        started = time.monotonic()
        other = http.get("/v1/echo/3")

        # Then it is answered at once (handlers are serialised, web apps are not)
        assert other.status_code == 200
        assert time.monotonic() - started < 5
        paths["gate"].touch()
        assert b"".join(chunks) == b"data: after-gate\n\n"
