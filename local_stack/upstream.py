"""A deterministic OpenAI-compatible model server: the local stack's upstream and the proxy tests' provider.

`build_upstream()` returns a raw ASGI app (raw so every SSE frame is one `send`, flushed at once).
`UpstreamServer` serves it over real HTTP with the local stack's `ServerThread`.

Output is a function of the request only: fixed `created`, ids hashed from the body, and token
counts from `count_tokens` (words, see there), so tests can compute expected usage themselves.

Extras for tests: the `x-upstream-name` header and `system_fingerprint` "fp_<name>" tell which upstream
answered; `UpstreamApp.received` holds the last completion and embeddings request bodies.

Embeddings (POST /v1/embeddings, models EMBEDDING_MODELS): each input's vector is a function of the model and
the input only (`embedding_vector`), EMBED_DIMENSIONS long unless `dimensions` says otherwise, with components
(2b - 255) / 256 for hash bytes b: exact in float32, so `encoding_format` "float" and "base64" agree bit for
bit. `usage.prompt_tokens` is count_tokens of each text, or the length of each token array.

Broken upstreams, as a client of the HTTP server sees them (fail modes act on POST /v1/chat/completions
only, after the api_key check; GET /v1/models stays healthy):
- fail_mode "400": the provider judges every request malformed (an OpenAI-style 400 naming a param).
- fail_mode "hang": no response ever; the handler waits until the client disconnects.
- fail_mode "drop": the request body is read, then the TCP connection is closed with no response
  (httpx: `RemoteProtocolError("Server disconnected without sending a response.")`).
- model "test/cutoff": stream: headers, the role chunk and CUTOFF_CHUNKS content chunks, then the
  connection closes without the last chunk or `[DONE]` (httpx: `RemoteProtocolError` "incomplete chunked
  read"); non-stream: headers and half of the `Content-Length` body, then close.
- model "test/stall": accepts (headers, the role chunk and CUTOFF_CHUNKS content chunks), then sends
  nothing more until the client gives up: a provider that generates, then times out.
Closing the connection needs the transport, which ASGI does not expose: under uvicorn `send` is a bound
method of its request cycle, which holds it. Elsewhere (httpx.ASGITransport) `ConnectionDropped` is
raised instead, which the ASGI transport re-raises to the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import struct
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from local_stack.server_thread import ServerThread

UPSTREAM_MODELS: tuple[str, ...] = (
    "test/echo",
    "test/story",
    "test/no-usage",
    "test/cutoff",
    "test/stall",
    "deepseek/deepseek-chat-v3-0324",
    "openai/gpt-4o-mini",
    "openai/gpt-5-mini",
)
EMBEDDING_MODELS: tuple[str, ...] = ("test/embed", "openai/text-embedding-3-small")
EMBED_DIMENSIONS = {"test/embed": 16, "openai/text-embedding-3-small": 1536}
FAIL_MODES = (None, "400", "500", "429", "hang", "drop")
# Echo with LOCAL_PREFIX
PREFIXED_MODELS = {"deepseek/deepseek-chat-v3-0324", "openai/gpt-4o-mini", "openai/gpt-5-mini"}
LOCAL_PREFIX = "[local] "
STORY_WORDS = 64  # test/story length without max_tokens
CUTOFF_CHUNKS = 3  # content chunks test/cutoff streams before the connection closes
TOKENS_PER_MESSAGE = 3  # prompt overhead per message, as OpenAI's chat format has
CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z: a fixed `created` keeps responses deterministic

_WORD_CHUNKS = re.compile(r"\s*\S+")  # a word with the whitespace before it: chunks concatenate to the text


def count_tokens(text: str) -> int:
    """Tokens of a text: its whitespace-separated words; 0 for "", at least 1 for any other text."""
    return max(1, len(text.split())) if text else 0


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or the `text` parts of a content-part list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """sum(count_tokens(content) + TOKENS_PER_MESSAGE) over the messages."""
    return sum(count_tokens(content_text(m.get("content"))) + TOKENS_PER_MESSAGE for m in messages)


def embedding_vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The deterministic vector of one input (see the module doc)."""
    seed = json.dumps([model, item]).encode()
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(-(-dimensions // 32)))
    return [(2 * b - 255) / 256 for b in raw[:dimensions]]


class ConnectionDropped(ConnectionError):
    """The upstream drops the connection but the ASGI server gives no way to close it (see module doc)."""


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = {"error": {"message": message, "type": type_, "code": code, "param": param}}


def _reply(model: str, messages: list[dict[str, Any]], max_tokens: int | None) -> tuple[list[str], str]:
    """(content chunks, finish_reason): echo models repeat the last user message, the others tell a story."""
    if model in ("test/story", "test/cutoff", "test/stall"):
        # The story never ends by itself: with max_tokens it is cut there ("length").
        count = max_tokens + 1 if max_tokens else STORY_WORDS
        text = " ".join(f"word{i}" for i in range(1, count + 1))
    else:
        users = [m for m in messages if m.get("role") == "user"]
        text = content_text(users[-1].get("content")) if users else ""
        text = LOCAL_PREFIX + text if model in PREFIXED_MODELS else text
    chunks = _WORD_CHUNKS.findall(text)
    if max_tokens is not None and len(chunks) > max_tokens:
        return chunks[:max_tokens], "length"
    return chunks, "stop"


def _parse(raw: bytes) -> tuple[dict[str, Any], int | None]:
    """The request body and its max tokens, or a 400 UpstreamError."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise UpstreamError(400, "We could not parse the JSON body of your request.", "invalid_request_error") from None
    if not isinstance(body, dict):
        raise UpstreamError(400, "The body must be a JSON object.", "invalid_request_error")
    if not isinstance(body.get("model"), str):
        raise UpstreamError(400, "you must provide a model parameter", "invalid_request_error", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise UpstreamError(
            400, "messages must be a non-empty array of objects", "invalid_request_error", param="messages"
        )
    param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(param)
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise UpstreamError(400, f"{param} must be an integer >= 1", "invalid_request_error", param=param)
    return body, max_tokens


def _json_frame(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class UpstreamApp:
    """The ASGI app of `build_upstream`. `received` holds the last 100 completion request bodies."""

    def __init__(self, name: str, fail_mode: str | None, api_key: str | None, chunk_delay: float) -> None:
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {FAIL_MODES}, not {fail_mode!r}")
        self.name, self.fail_mode, self.api_key, self.chunk_delay = name, fail_mode, api_key, chunk_delay
        self.received: deque[dict[str, Any]] = deque(maxlen=100)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets: nothing to do
            return
        self.loop = asyncio.get_running_loop()  # for UpstreamServer.stop(), which runs in another thread
        raw = b""
        while True:  # read the whole body first: closing with unread input would send a RST, not a FIN
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            await self._route(scope, raw, receive, send)
        except UpstreamError as error:
            await self._send_json(send, error.status, error.body, error.headers)

    async def _route(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        path, method = scope["path"].rstrip("/"), scope["method"]
        routes = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/v1/embeddings": "POST"}
        if path not in routes:
            raise UpstreamError(404, f"Unknown request URL: {method} {scope['path']}.", "invalid_request_error")
        if method != routes[path]:
            raise UpstreamError(405, f"Method {method} not allowed for {path}.", "invalid_request_error")
        if self.api_key is not None:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(auth, f"Bearer {self.api_key}".encode()):
                raise UpstreamError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": m.split("/")[0]}
                for m in UPSTREAM_MODELS + EMBEDDING_MODELS
            ]
            await self._send_json(send, 200, {"object": "list", "data": data})
        elif path == "/v1/embeddings":
            await self._embeddings(raw, send)
        else:
            await self._completion(raw, receive, send)

    async def _completion(self, raw: bytes, receive: Receive, send: Send) -> None:
        # Fail modes act on every completion, before the body is looked at: a broken provider is broken.
        if self.fail_mode == "400":
            message = "Invalid 'messages[0].content': expected a string, got an object."
            raise UpstreamError(400, message, "invalid_request_error", "invalid_value", param="messages")
        if self.fail_mode == "500":
            raise UpstreamError(500, "The server had an error while processing your request.", "server_error")
        if self.fail_mode == "429":
            error = UpstreamError(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded")
            error.headers.append((b"retry-after", b"1"))
            raise error
        if self.fail_mode == "hang":
            await self._wait_disconnect(receive)
            return
        if self.fail_mode == "drop":
            await self._drop(send, receive)
            return

        body, max_tokens = _parse(raw)
        self.received.append(body)
        model, messages = body["model"], body["messages"]
        if model not in UPSTREAM_MODELS:
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise UpstreamError(404, message, "invalid_request_error", "model_not_found", "model")
        chunks, finish_reason = _reply(model, messages, max_tokens)
        content = "".join(chunks)
        usage = None
        if model != "test/no-usage":
            prompt, completion = prompt_tokens(messages), count_tokens(content)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        base = {
            "id": "chatcmpl-" + hashlib.sha256(_json_frame([self.name, body])).hexdigest()[:24],
            "created": CREATED,
            "model": model,
            "system_fingerprint": f"fp_{self.name}",  # which upstream answered, for failover tests
        }
        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            await self._stream(send, receive, base, chunks, finish_reason, usage if include_usage else None)
            return
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        result = {"id": base["id"], "object": "chat.completion", **base, "choices": [choice]}
        if usage is not None:
            result["usage"] = usage
        if model == "test/cutoff":  # half of the declared body, then the connection goes
            data = _json_frame(result)
            await self._start(send, 200, b"application/json", [(b"content-length", str(len(data)).encode())])
            await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
            await self._drop(send, receive)
            return
        await self._send_json(send, 200, result)

    async def _embeddings(self, raw: bytes, send: Send) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            raise UpstreamError(400, "We could not parse the JSON body.", "invalid_request_error") from None
        if not isinstance(body, dict) or body.get("model") not in EMBEDDING_MODELS:
            model = body.get("model") if isinstance(body, dict) else None
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise UpstreamError(404, message, "invalid_request_error", "model_not_found", "model")
        self.received.append(body)
        model, value = body["model"], body.get("input")
        one_token_array = isinstance(value, list) and bool(value) and type(value[0]) is int
        items = [value] if isinstance(value, str) or one_token_array else value
        if not isinstance(items, list) or not items:
            raise UpstreamError(400, "'input' is invalid.", "invalid_request_error", param="input")
        dimensions = body.get("dimensions") or EMBED_DIMENSIONS[model]
        if type(dimensions) is not int or not 1 <= dimensions <= EMBED_DIMENSIONS[model]:
            raise UpstreamError(400, "'dimensions' is invalid.", "invalid_request_error", param="dimensions")
        base64_wanted = body.get("encoding_format") == "base64"
        data, tokens = [], 0
        for index, item in enumerate(items):
            vector = embedding_vector(model, item, dimensions)
            tokens += count_tokens(item) if isinstance(item, str) else len(item)
            encoded: Any = vector
            if base64_wanted:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        await self._send_json(send, 200, {"object": "list", "data": data, "model": model, "usage": usage})

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        base: dict[str, Any],
        chunks: list[str],
        finish_reason: str,
        usage: dict[str, int] | None,
    ) -> None:
        cutoff = base["model"] in ("test/cutoff", "test/stall")
        # As OpenAI: with include_usage every chunk carries "usage": null, the extra last chunk the numbers.
        extra = {"usage": None} if usage is not None else {}

        async def data(obj: Any) -> None:
            await send(
                {"type": "http.response.body", "body": b"data: " + _json_frame(obj) + b"\n\n", "more_body": True}
            )

        async def frame(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            await data({"id": base["id"], "object": "chat.completion.chunk", **base, "choices": [choice], **extra})

        # Like a provider, stop generating when the client goes away (it also lets stop() end streams at once).
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(self._wait_disconnect(receive))
        watcher.add_done_callback(lambda _: gone.set())
        try:
            await self._start(send, 200, b"text/event-stream", [(b"cache-control", b"no-cache")])
            await frame({"role": "assistant", "content": "", "refusal": None})
            for chunk in chunks[:CUTOFF_CHUNKS] if cutoff else chunks:
                # The slow model: a pause, then the chunk is sent (and flushed) on its own.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), self.chunk_delay)
                    return  # the client left
                await frame({"content": chunk})
            if base["model"] == "test/stall":
                await gone.wait()
                return
            if cutoff:
                await self._drop(send, receive)
                return
            await frame({}, finish_reason)
            if usage is not None:
                await data({"id": base["id"], "object": "chat.completion.chunk", **base, "choices": [], "usage": usage})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        finally:
            watcher.cancel()

    async def _start(
        self, send: Send, status: int, content_type: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        all_headers = [(b"content-type", content_type), (b"x-upstream-name", self.name.encode()), *headers]
        await send({"type": "http.response.start", "status": status, "headers": all_headers})

    async def _send_json(
        self, send: Send, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        data = _json_frame(payload)
        await self._start(send, status, b"application/json", [(b"content-length", str(len(data)).encode()), *headers])
        await send({"type": "http.response.body", "body": data, "more_body": False})

    @staticmethod
    async def _wait_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _drop(self, send: Send, receive: Receive) -> None:
        """Close the connection (what was sent is flushed first); return once uvicorn saw it go, so it logs nothing."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)  # uvicorn's request cycle
        if transport is None:
            raise ConnectionDropped(f"upstream {self.name!r} dropped the connection")
        transport.close()
        await self._wait_disconnect(receive)


def build_upstream(
    *, name: str = "local", fail_mode: str | None = None, api_key: str | None = None, chunk_delay: float = 0.02
) -> UpstreamApp:
    """The OpenAI-compatible upstream ASGI app (an `UpstreamApp`); see the module doc for the models and fail modes."""
    return UpstreamApp(name, fail_mode, api_key, chunk_delay)


def _close_connections(server: uvicorn.Server) -> None:
    for connection in list(server.server_state.connections):
        connection.transport.close()  # type: ignore[attr-defined]  # uvicorn's protocols keep their transport


class UpstreamServer:
    """`build_upstream(...)` over HTTP on 127.0.0.1 and a free port.

    `.url` is the base URL ("http://127.0.0.1:PORT"); an OpenAI client's base_url is url + "/v1".
    """

    def __init__(
        self,
        *,
        name: str = "local",
        fail_mode: str | None = None,
        api_key: str | None = None,
        chunk_delay: float = 0.02,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.app = build_upstream(name=name, fail_mode=fail_mode, api_key=api_key, chunk_delay=chunk_delay)
        self._server = ServerThread(self.app, host=host, port=port, log_level=log_level)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> UpstreamServer:
        self._server.start()
        return self

    def stop(self) -> None:
        # A test may leave a hung request or a stream behind. Closing the connections (in the server's loop)
        # ends those handlers through their disconnect, so the graceful shutdown is quick and logs nothing;
        # cancelling them instead would log a traceback each.
        server, loop = self._server.server, self.app.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_close_connections, server)
        self._server.stop()

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def local_model_catalog(upstream_url: str) -> dict[str, Any]:
    """A model catalog (the proxy's ``MODEL_CATALOG_FILE`` format) serving every built-in model from the
    upstream at ``upstream_url``. Public models keep their packaged prices; test models cost $1/$2 per 1M
    tokens so local bills are easy to check by hand."""
    from llm_platform.catalog import load
    from llm_platform.proxy.parameters import FORWARDABLE

    packaged = {model["id"]: model for model in load("models.json")["models"]}
    models = []
    for model_id in UPSTREAM_MODELS:
        known = packaged.get(model_id, {})
        models.append(
            {
                "id": model_id,
                "ownedBy": known.get("ownedBy", "local"),
                "inputPerMTokUsd": known.get("inputPerMTokUsd", "1.00"),
                "outputPerMTokUsd": known.get("outputPerMTokUsd", "2.00"),
                "maxOutputTokens": 4096,
                "defaultMaxOutputTokens": 1024,
                "providers": [
                    {
                        "name": "builtin",
                        "baseUrl": f"{upstream_url}/v1",
                        "model": model_id,
                        "inputCostPerMTokUsd": "0",
                        "outputCostPerMTokUsd": "0",
                        "timeoutSeconds": 2 if model_id == "test/stall" else 60,
                        # The built-in model takes (and ignores) every parameter a real provider may take.
                        "parameters": sorted(FORWARDABLE),
                        **({"serviceTiers": sorted(known["serviceTiers"])} if known.get("serviceTiers") else {}),
                    }
                ],
                "contextLength": known.get("contextLength", 32768),
                **({"serviceTiers": known["serviceTiers"]} if known.get("serviceTiers") else {}),
            }
        )
    for model_id in EMBEDDING_MODELS:
        known = packaged.get(model_id, {})
        models.append(
            {
                "id": model_id,
                "kind": "embedding",
                "ownedBy": known.get("ownedBy", "local"),
                "inputPerMTokUsd": known.get("inputPerMTokUsd", "1.00"),
                "outputPerMTokUsd": "0",
                "contextLength": known.get("contextLength", 8191),
                "dimensions": EMBED_DIMENSIONS[model_id],
                "dimensionsAdjustable": True,
                "providers": [
                    {
                        "name": "builtin",
                        "baseUrl": f"{upstream_url}/v1",
                        "model": model_id,
                        "inputCostPerMTokUsd": "0",
                        "outputCostPerMTokUsd": "0",
                        "timeoutSeconds": 60,
                    }
                ],
            }
        )
    return {"models": models}
