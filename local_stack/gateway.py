"""An in-process stand-in for API Gateway (REST API, Lambda proxy integration) built from template.yaml.

Each HTTP request becomes the same v1 proxy event API Gateway would send, and the function's handler
(the code deployed to Lambda) is called with it in a worker thread.

A function that runs under the AWS Lambda Web Adapter (its startup script runs uvicorn on an ASGI app)
gets no event: the adapter turns API Gateway's event back into the HTTP request. Locally its ASGI app is
served at the paths of its Api events, with the request passed through and the response streamed as the
app sends it, as the streaming integration does on AWS.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import shlex
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from local_stack.limits import RateLimiter, RequestFacts
from local_stack.template import ApiRoute, api_routes, gateway_responses, load_template

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
TIMEOUT_MS = 29_000  # API Gateway's integration timeout
ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # those API Gateway accepts

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default_factory=lambda: time.monotonic() + TIMEOUT_MS / 1000, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# Handlers run one at a time. A Lambda container handles one event at a time anyway, and Powertools
# resolvers keep the current event in class attributes shared by every resolver in the process, so
# two concurrent invocations in one process would read each other's requests. Concurrency reaches the
# data layer in the tests that drive the domain from threads, and through the ASGI apps of web adapter
# functions (the proxy), which are not serialised.
_INVOKE_LOCK = threading.Lock()


def invoke_serially(handler: Handler, event: dict[str, Any], context: LambdaContext) -> Any:
    with _INVOKE_LOCK:
        return handler(event, context)


class LambdaFunction:
    """One function's handler, imported from its CodeUri on first use and then cached."""

    def __init__(self, function_id: str, code_dir: Path, handler: str) -> None:
        self.function_id = function_id
        self.code_dir = code_dir
        self.handler_name = handler
        self._handler: Handler | None = None
        self._lock = threading.Lock()

    def handler(self) -> Handler:
        with self._lock:
            if self._handler is None:
                module_path, _, attribute = self.handler_name.rpartition(".")
                module = self._import(self.code_dir / (module_path.replace(".", "/") + ".py"))
                self._handler = getattr(module, attribute)
            return self._handler

    def _import(self, file: Path) -> ModuleType:
        # A unique module name per function: every function's file is called handler.py.
        name = "_local_lambda_" + re.sub(r"\W", "_", self.function_id)
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load handler module {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses/pydantic resolve types through sys.modules
        # Lambda puts the code directory on sys.path; do the same while the module imports its siblings.
        sys.path.insert(0, str(self.code_dir))
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        finally:
            sys.path.remove(str(self.code_dir))
        return module


DEFAULT_ASGI_TARGET = "app:app"
_ASGI_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def asgi_target(startup_script: Path) -> str:
    """The `module:attribute` the script hands to uvicorn (`uvicorn app:app ...`); app:app without one."""
    try:
        text = startup_script.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_ASGI_TARGET
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#") or "uvicorn" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        command = next((i for i, word in enumerate(words) if word == "uvicorn" or word.endswith("/uvicorn")), None)
        if command is None:
            continue
        if target := next((word for word in words[command + 1 :] if _ASGI_TARGET.fullmatch(word)), None):
            return target
    return DEFAULT_ASGI_TARGET


class WebAdapterFunction:
    """A function run by the Lambda Web Adapter: the ASGI app its startup script serves with uvicorn.

    Imported from its CodeUri on first use, like a handler; then, as uvicorn's default `--lifespan auto`
    does, its lifespan startup runs once (an app without lifespan support is served all the same).
    """

    def __init__(self, function_id: str, code_dir: Path, startup_script: str) -> None:
        self.function_id = function_id
        self.target = asgi_target(code_dir / startup_script)
        module, _, attribute = self.target.partition(":")
        self._module = LambdaFunction(function_id, code_dir, f"{module}.{attribute}")
        self._app: ASGIApp | None = None
        self._state: dict[str, Any] = {}
        self._lifespan: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def app(self) -> tuple[ASGIApp, dict[str, Any]]:
        """The app and its lifespan state (copied into each request scope, as uvicorn does)."""
        async with self._lock:
            if self._app is None:
                app = await run_in_threadpool(self._module.handler)
                await self._start(app)
                self._app = app
            return self._app, self._state

    async def _start(self, app: ASGIApp) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        started = asyncio.Event()
        failure: list[str] = []

        async def send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                failure.append(str(message.get("message", "")))
            if message["type"].startswith("lifespan.startup."):
                started.set()

        async def run() -> None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
            try:
                await app(scope, inbox.get, send)
            except Exception:  # lifespan unsupported: uvicorn's "auto" mode ignores it
                if not started.is_set():
                    self._state.clear()
            finally:
                started.set()

        await inbox.put({"type": "lifespan.startup"})
        # Kept referenced: the lifespan lasts as long as the event loop that serves the app.
        self._lifespan = asyncio.create_task(run())
        await started.wait()
        if failure:
            raise RuntimeError(f"{self.function_id}: lifespan startup failed: {failure[0]}")


@dataclass(frozen=True)
class CompiledRoute:
    route: ApiRoute
    pattern: re.Pattern[str]
    param_names: tuple[str, ...]
    function: LambdaFunction | WebAdapterFunction

    @property
    def specificity(self) -> tuple[tuple[int, ...], bool]:
        # API Gateway prefers literal segments over {param} over {proxy+}, and explicit methods over ANY.
        kinds = tuple(
            2 if seg.endswith("+}") else 1 if seg.startswith("{") else 0
            for seg in self.route.path.strip("/").split("/")
        )
        return kinds, self.route.method == "ANY"


def compile_route(route: ApiRoute, function: LambdaFunction | WebAdapterFunction) -> CompiledRoute:
    names: list[str] = []
    parts: list[str] = []
    for segment in route.path.strip("/").split("/"):
        if param := re.fullmatch(r"\{([^{}]+?)(\+?)\}", segment):
            names.append(param.group(1))
            parts.append("(.+)" if param.group(2) else "([^/]+)")
        else:
            parts.append(re.escape(segment))
    return CompiledRoute(route, re.compile("/" + "/".join(parts)), tuple(names), function)


def gateway_response(
    responses: Mapping[str, Any],
    response_type: str,
    status: int,
    message: str,
    default_body: Any,
    request_id: str,
) -> Response:
    """An API Gateway-generated response, customised by the template's GatewayResponses when it has one.

    Like API Gateway: the specific type, else DEFAULT_4XX/5XX; only simple $context substitution.
    """
    fallback = responses.get("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX") or {}
    spec = responses.get(response_type) or fallback
    status = int(spec.get("StatusCode") or fallback.get("StatusCode") or status)
    body = (spec.get("ResponseTemplates") or {}).get("application/json")
    if isinstance(body, str):
        for variable, value in (
            ("$context.error.messageString", json.dumps(message)),  # quoted, as on AWS
            ("$context.error.message", message),
            ("$context.error.responseType", response_type),
            ("$context.requestId", request_id),
        ):
            body = body.replace(variable, value)
    else:
        body = json.dumps(default_body)
    headers = {
        # SAM writes header values as quoted literals: "'*'".
        name: str(value).strip("'")
        for name, value in ((spec.get("ResponseParameters") or {}).get("Headers") or {}).items()
    }
    headers |= {"content-type": "application/json", "x-amzn-RequestId": request_id, "x-amzn-ErrorType": response_type}
    return Response(body, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it exceeds API Gateway's limit."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
    # Drained either way, so an HTTP client still sending the body gets the 413 instead of a reset.
    return b"".join(chunks) if size <= MAX_BODY_BYTES else None


def build_event(
    request: Request, route: CompiledRoute, path_params: dict[str, str], body: bytes, request_id: str
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event for this request."""
    path: str = request.scope["path"]
    multi_headers: dict[str, list[str]] = {}
    for raw_name, raw_value in request.headers.raw:
        multi_headers.setdefault(raw_name.decode("latin-1"), []).append(raw_value.decode("latin-1"))
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        multi_query.setdefault(key, []).append(value)

    text_body: str | None = None
    is_base64 = False
    if body:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode("ascii"), True

    user_agent = multi_headers.get("user-agent", [None])[-1]
    return {
        "resource": route.route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {key: values[-1] for key, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.route.path,
            "httpMethod": request.method,
            "path": path,
            "stage": "local",
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
            "identity": {
                "sourceIp": request.client.host if request.client else "127.0.0.1",
                "userAgent": user_agent,
            },
            "accountId": ACCOUNT_ID,
            "apiId": "local",
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def to_response(result: Any, request_id: str) -> Response:
    """The HTTP response API Gateway builds from a Lambda proxy result; ValueError if malformed."""
    if not isinstance(result, Mapping) or "statusCode" not in result:
        raise ValueError(f"malformed Lambda proxy response: {result!r:.200}")
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError(f"malformed Lambda proxy response: body must be a string, got {type(body).__name__}")
    content = base64.b64decode(body or "") if result.get("isBase64Encoded") else (body or "").encode()

    # API Gateway merges both header maps; a pair present in both appears once.
    pairs: list[tuple[str, str]] = [
        (name, str(value)) for name, values in (result.get("multiValueHeaders") or {}).items() for value in values
    ]
    seen = {(name.lower(), value) for name, value in pairs}
    pairs += [
        (name, str(value))
        for name, value in (result.get("headers") or {}).items()
        if (name.lower(), str(value)) not in seen
    ]
    # Framing headers are the server's business; API Gateway recomputes them too.
    pairs = [(n, v) for n, v in pairs if n.lower() not in ("content-length", "transfer-encoding", "connection")]
    if not any(name.lower() == "content-type" for name, _ in pairs):
        pairs.append(("content-type", "application/json"))  # API Gateway's default
    pairs.append(("x-amzn-RequestId", request_id))

    response = Response(content=content, status_code=int(result["statusCode"]))
    response.raw_headers.extend((n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs)
    return response


# What an HTTP server puts in an ASGI scope; the gateway's own routing keys are not passed on.
_HTTP_SCOPE_KEYS = (
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "headers",
    "client",
    "server",
    "extensions",
)


async def serve_web_app(
    function: WebAdapterFunction, scope: Scope, receive: Receive, send: Send, body: bytes, request_id: str
) -> Response | None:
    """Pass the request to the function's ASGI app and its response back as it is sent (streamed).

    API Gateway buffers the request (it does not stream requests), so the body already read is replayed;
    later receive() calls reach the client connection, so the app sees a disconnect. Returns a response
    to send instead when the app did not answer: 500 as uvicorn sends for an app error before its response.
    """
    app, state = await function.app()
    app_scope: Scope = {key: scope[key] for key in _HTTP_SCOPE_KEYS if key in scope}
    app_scope |= {"root_path": "", "state": dict(state)}
    body_sent = False
    started = False

    async def replay_receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    async def send_through(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            headers = [*message.get("headers", []), (b"x-amzn-requestid", request_id.encode("latin-1"))]
            message = {**message, "headers": headers}
        await send(message)

    try:
        await app(app_scope, replay_receive, send_through)
    except Exception:
        print(f"[local_stack] {function.function_id}: exception in ASGI application", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        if started:
            return None  # the stream is cut short, as the client sees it on AWS
    if started:
        return None
    return Response("Internal Server Error", status_code=500, media_type="text/plain")


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _log_failure(route: CompiledRoute, message: str) -> None:
    print(f"[local_stack] {route.route.function_id}: {message}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)


def build_gateway(
    template_path: str | Path,
    env: Mapping[str, str],
    asgi_mounts: Mapping[str, ASGIApp] | None = None,
    rate_limit_scale: float | None = None,
) -> Starlette:
    """The template's API routes as an ASGI app; asgi_mounts (prefix -> app) are served as-is before them.

    Routes of functions under the Lambda Web Adapter are served by the function's ASGI app (see
    serve_web_app); asgi_mounts are only for apps that are not in the template.

    Gateway errors (unknown route 404, body over 10 MiB 413, handler failure 502) use the template's
    GatewayResponses when it defines them, else route_not_found / payload_too_large / API Gateway's 502.

    In front of the routes, the template's limits (local_stack.limits): its WAF rate-based rules per client and
    its method throttles, every number multiplied by ``rate_limit_scale`` (default: env LOCAL_RATE_LIMIT_SCALE,
    else 1).
    """
    os.environ.update(env)  # handlers read their configuration at import time, as on Lambda
    template_path = Path(template_path)
    template = load_template(template_path)
    responses = gateway_responses(template)
    if rate_limit_scale is None:
        rate_limit_scale = float(env.get("LOCAL_RATE_LIMIT_SCALE") or os.environ.get("LOCAL_RATE_LIMIT_SCALE") or 1)
    limiter = RateLimiter.from_template(template, scale=rate_limit_scale)

    functions: dict[tuple[str, str, str], LambdaFunction | WebAdapterFunction] = {}
    compiled: list[CompiledRoute] = []
    for route in api_routes(template):
        key = (route.function_id, route.code_uri, route.handler)
        if key not in functions:
            code_dir = template_path.parent / route.code_uri
            kind = WebAdapterFunction if route.web_adapter else LambdaFunction
            functions[key] = kind(route.function_id, code_dir, route.handler)
        compiled.append(compile_route(route, functions[key]))
    compiled.sort(key=lambda r: r.specificity)

    def match(method: str, path: str) -> tuple[CompiledRoute, dict[str, str]] | None:
        normalized = path.rstrip("/") or "/"
        for candidate in compiled:
            if candidate.route.method not in (method, "ANY"):
                continue
            if found := candidate.pattern.fullmatch(normalized):
                return candidate, dict(zip(candidate.param_names, found.groups(), strict=True))
        return None

    def error(response_type: str, status: int, message: str, body: Any, request_id: str) -> Response:
        return gateway_response(responses, response_type, status, message, body, request_id)

    def internal_error(request_id: str) -> Response:
        message = "Internal server error"
        return error("DEFAULT_5XX", 502, message, {"message": message}, request_id)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> Response | None:
        request = Request(scope, receive)
        path: str = request.scope["path"]
        request_id = str(uuid.uuid4())
        body = await _read_body(request)
        if body is None:
            message = f"Request body exceeds {MAX_BODY_BYTES} bytes"
            return error("REQUEST_TOO_LARGE", 413, message, _error_body("payload_too_large", message), request_id)
        facts = RequestFacts(
            client_ip=request.client.host if request.client else "127.0.0.1",
            path=path,
            method=request.method,
            headers={name.lower(): value for name, value in request.headers.items()},
        )
        if rule := limiter.waf_block(facts):  # WAF sits in front of API Gateway: before routing
            return Response(
                rule.response_body or "Forbidden",
                status_code=rule.response_code,
                media_type=rule.response_content_type,
                headers={"x-amzn-RequestId": request_id},
            )
        matched = match(request.method, path)
        if matched is None:
            # API Gateway answers unknown routes with MISSING_AUTHENTICATION_TOKEN (default 403).
            message = f"No route for {request.method} {path}"
            body_404 = _error_body("route_not_found", message)
            return error("MISSING_AUTHENTICATION_TOKEN", 404, message, body_404, request_id)
        route, path_params = matched
        if limiter.throttled(route.route.path, request.method):
            message = "Too Many Requests"
            return error("THROTTLED", 429, message, {"message": message}, request_id)
        if isinstance(route.function, WebAdapterFunction):
            try:
                return await serve_web_app(route.function, scope, receive, send, body, request_id)
            except Exception:
                # On AWS the app would not start (readiness check never passes): the invocation fails.
                _log_failure(route, "web app failed to load")
                return internal_error(request_id)
        event = build_event(request, route, path_params, body, request_id)
        context = LambdaContext(function_name=route.route.function_id)
        try:
            handler = await run_in_threadpool(route.function.handler)
            result = await run_in_threadpool(invoke_serially, handler, event, context)
        except Exception:
            _log_failure(route, "unhandled exception")
            return internal_error(request_id)
        try:
            return to_response(result, request_id)
        except (ValueError, TypeError, UnicodeEncodeError):
            _log_failure(route, "invalid response")
            return internal_error(request_id)

    class Endpoint:
        """The catch-all as a raw ASGI app, so web adapter functions can stream through it."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            response = await dispatch(scope, receive, send)
            if response is not None:
                await response(scope, receive, send)

    routes: list[BaseRoute] = [Mount(prefix, app=app) for prefix, app in (asgi_mounts or {}).items()]
    # One catch-all, so matching and 404s follow API Gateway rather than Starlette (which would 405).
    routes.append(Route("/{path:path}", Endpoint(), methods=HTTP_METHODS))
    app = Starlette(routes=routes)
    # Paths the catch-all's pattern cannot match (a control character such as %0A in an id) go to the
    # gateway too, as on API Gateway, instead of Starlette's plain-text 404.
    app.router.default = Endpoint()
    app.state.routes = [r.route for r in compiled]
    return app
