"""The OpenAI-compatible proxy as a raw ASGI app (no framework on the cold path): served by uvicorn
under the Lambda Web Adapter on AWS, mounted directly by the local gateway.

Per request: authenticate the key, validate the body, reserve the most it can cost and admit it in
one DynamoDB transaction, forward to the cheapest healthy provider, relay (streaming as it comes),
then settle the real cost from the upstream's ``usage`` (or a local count) in a second transaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from llm_platform.config import get_settings
from llm_platform.domain.money import format_usd
from llm_platform.proxy import catalog, key_info, parameters
from llm_platform.proxy.errors import ProxyError, bad_request, unauthorized
from llm_platform.proxy.keys import KeyCache, KeySnapshot
from llm_platform.proxy.metering import Admission, Meter, Outcome, check_usable
from llm_platform.proxy.pricing import cost_micros, estimate_tokens, input_token_bound, input_token_estimate
from llm_platform.proxy.upstream import NoProviderAvailable, Upstreams
from llm_platform.proxy.usage import StreamUsage, with_cost

_log = logging.getLogger("llm_platform.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# The body one provider gets, or None when it cannot serve this request (a service tier it does not offer).
Payload = Callable[[catalog.Provider], dict | None]

# What is accepted, forwarded, dropped, priced or refused: proxy/parameters.py.
MEDIA_PART_TYPES = frozenset({"image_url", "input_audio", "file"})
_MAX_N = 16
# Lambda stops the proxy at 900 s: a stream still running then is ended here first, so it is billed.
STREAM_DEADLINE_SECONDS = 870.0


def _now() -> datetime:
    return datetime.now(UTC)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class _Response:
    """Wraps ``send`` to know whether a response has started (then an error can only end it)."""

    def __init__(self, send: Send) -> None:
        self._send, self.started, self.finished = send, False, False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished = True
        await self._send(message)


class ProxyApp:
    def __init__(self) -> None:
        self.keys = KeyCache()
        self.meter = Meter(self.keys)
        self.upstreams = Upstreams()
        self._pool: ThreadPoolExecutor | None = None

    async def _blocking(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run boto3 (blocking) off the event loop, in a pool sized for concurrent requests: the default
        executor has cpu+4 threads, which would queue admissions behind each other."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="proxy-db")
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(function, *args, **kwargs))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        response = _Response(send)
        try:
            if (method, path) == ("POST", "/v1/chat/completions"):
                await self._chat(scope, receive, response, request_id)
            elif (method, path) == ("GET", "/v1/models"):
                await self._models(scope, response, request_id)
            elif method == "GET" and path.startswith("/v1/models/"):
                await self._model(scope, response, request_id, path.removeprefix("/v1/models/"))
            elif (method, path) == ("POST", "/v1/embeddings"):
                from llm_platform.proxy.embeddings import create_embeddings  # only where it is used

                await create_embeddings(self, scope, receive, response, request_id)
            elif (method, path) == ("GET", "/v1/key"):
                await self._key_info(scope, response, request_id)
            elif (method, path) == ("GET", "/healthz"):
                # The Lambda Web Adapter's readiness check: a catalog that does not load fails it, so a
                # broken deployment shows at once instead of on every request.
                catalog.models()
                await _send_json(response, 200, {"status": "ok"}, {})
            else:
                raise ProxyError(404, "not_found", f"Unknown route {method} {path}.")
        except _ClientGone:
            return
        except Exception as error:
            if not isinstance(error, ProxyError):
                _log.exception("unhandled error", extra={"requestId": request_id})
                error = ProxyError(500, "internal_error", "Something went wrong on our side.", type_="api_error")
            if not response.started:
                await _send_json(response, error.status, error.body(), {**error.headers, "x-request-id": request_id})
            elif not response.finished:  # mid-stream: all that can be done is to end it
                await _safe_send(response, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstreams.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ GET /v1/models

    async def _authenticate(self, scope: Scope, now: datetime) -> KeySnapshot:
        """The presented key's snapshot, refused when it is not live, expired or rotated away."""
        token = _bearer(scope)
        # A warm key needs no thread hop; only a first sight of it reads DynamoDB (in the pool).
        key = self.keys.cached(token) or await self._blocking(self.keys.lookup, token)
        if key is not None and (key.expired(now) or key.secret_retired(now)):
            # Expired as cached: read it again before refusing, its expiry may have been moved since.
            key = await self._blocking(self.keys.reload, key.secret_hash)
        if key is None:
            raise unauthorized()
        check_usable(key, now)
        return key

    async def _models(self, scope: Scope, send: Send, request_id: str) -> None:
        await self._authenticate(scope, _now())
        data = [model.public() for model in catalog.models().values()]
        await _send_json(send, 200, {"object": "list", "data": data}, {"x-request-id": request_id})

    async def _model(self, scope: Scope, send: Send, request_id: str, model_id: str) -> None:
        """``GET /v1/models/{id}``; ids contain ``/`` (the openai SDK sends it as ``%2F``, decoded by then)."""
        await self._authenticate(scope, _now())
        model = catalog.models().get(model_id)
        if model is None:
            raise ProxyError(404, "model_not_found", f"The model '{model_id}' does not exist.", param="model")
        await _send_json(send, 200, model.public(), {"x-request-id": request_id})

    # ------------------------------------------------------------------ GET /v1/key

    async def _key_info(self, scope: Scope, send: Send, request_id: str) -> None:
        """The key's own limits, spend and what it may spend now, read fresh (not from the cache)."""
        now = _now()
        key = await self._authenticate(scope, now)
        info = await self._blocking(key_info.read, key, now)
        if info is None:  # revoked or disabled since it was cached
            self.keys.forget(key.secret_hash)
            raise unauthorized("This API key is revoked or disabled.")
        if info.pop("_version") != key.version:  # changed since cached: later requests read it again
            self.keys.forget(key.secret_hash)
        await _send_json(send, 200, {"data": info}, {"x-request-id": request_id})

    # ------------------------------------------------------------------ POST /v1/chat/completions

    async def _chat(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        raw = await _read_body(receive, get_settings().max_proxy_body_bytes)
        key = await self._authenticate(scope, _now())
        body = _parse_json(raw)
        model = catalog.models().get(body.get("model")) if isinstance(body.get("model"), str) else None
        request = _validate(body, model)
        options = parameters.chat_options(body, model)
        outputs = (request.max_output + options.prediction_tokens) * request.n
        media = request.media_parts * (model.media_part_tokens or 0)
        reserve = cost_micros(
            input_token_bound(len(raw), len(body["messages"]), media) * request.n,
            outputs,
            options.prices.input,
            options.prices.output,
        )
        tokens = input_token_estimate(len(_prompt_text(body).encode()), len(body["messages"]), media) + outputs
        admission = await self._blocking(self.meter.admit, key, reserve, tokens, request_id, _now())
        bill = _Bill(self, admission, model, request.stream, options.prices)

        def payload(provider: catalog.Provider) -> dict | None:
            if not parameters.offers(provider, options):
                return None
            return parameters.upstream_chat_body(provider, body, options, request.max_output)

        try:
            if request.stream:
                await self._relay_stream(receive, send, bill, payload, body, StreamUsage(options.wants_usage))
            else:
                await self._relay_once(send, bill, payload, body)
        except BaseException as error:
            # Whatever went wrong before the bill was settled: give the reservation back, and log the
            # status the client ends up with (499: it left before any answer).
            if isinstance(error, ProxyError):
                status = error.status
            elif isinstance(send, _Response) and send.started:
                status = 200
            else:
                status = 499 if isinstance(error, asyncio.CancelledError | _ClientGone) else 502
            await asyncio.shield(bill.release(status))
            if isinstance(error, ProxyError | asyncio.CancelledError | _ClientGone):
                raise
            _log.exception("request failed after admission", extra={"requestId": request_id})
            raise ProxyError(
                502,
                "upstream_error",
                "The request failed upstream; nothing was charged.",
                type_="api_error",
                headers=_headers(admission),
            ) from error

    async def _relay_once(self, send: Send, bill: _Bill, payload: Payload, body: dict) -> None:
        opened = await self._open(bill, payload, read_body=True)
        response = opened.response
        try:
            if response.status_code >= 400:  # the client's own mistake, as judged by the provider
                await bill.release(response.status_code)
                await _send_raw(send, response.status_code, response.content, _headers(bill.admission))
                return
            data = response.json()
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
                raise ValueError("not a chat completion")
            content = "".join(
                str(choice["message"].get("content") or "")
                for choice in data["choices"]
                if isinstance(choice, dict) and isinstance(choice.get("message"), dict)
            )
            input_tokens, output_tokens = _token_counts(data.get("usage"), body, content)
            cost = await bill.settle(input_tokens, output_tokens)
            data["model"] = bill.model.id
            data["usage"] = with_cost(data.get("usage"), input_tokens, output_tokens, cost)
            await _send_json(send, 200, data, {**_headers(bill.admission), "x-request-cost": format_usd(cost)})
        finally:
            await response.aclose()

    async def _relay_stream(
        self, receive: Receive, send: Send, bill: _Bill, payload: Payload, body: dict, shaping: StreamUsage
    ) -> None:
        opened = await self._open(bill, payload, read_body=False)
        response = opened.response
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            await bill.release(response.status_code)
            await _send_raw(send, response.status_code, content, _headers(bill.admission))
            return

        usage: dict | None = None
        text: list[str] = []
        done = False  # the provider ended the stream with [DONE]: sent to the client once the bill is settled

        async def relay() -> None:
            nonlocal usage, done
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": _encode(
                        {**_headers(bill.admission), "content-type": "text/event-stream", "cache-control": "no-cache"}
                    ),
                }
            )
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    if isinstance(delta, dict):
                        text.append(str(delta.get("content") or ""))
                chunk["model"] = bill.model.id
                chunk = shaping.shape(chunk, bill.cost_of(chunk.get("usage"), body))
                if chunk is None:
                    continue
                frame = b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": frame, "more_body": True})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relaying = asyncio.ensure_future(relay())
        watching = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait(
                {relaying, watching}, timeout=STREAM_DEADLINE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (relaying, watching):
                task.cancel()
            await asyncio.gather(relaying, watching, return_exceptions=True)
            await response.aclose()
            # Always charged: upstream usage when it came, else a local count (cut off, timed out, or the
            # client left), and before the stream ends for the client.
            input_tokens, output_tokens = _token_counts(usage, body, "".join(text))
            cost = await asyncio.shield(bill.settle(input_tokens, output_tokens))
        if not watching.done() or watching.cancelled():
            ending = b""
            if done:  # a complete stream: the usage chunk owed to the client, if any, then [DONE]
                closing = shaping.closing_chunk(input_tokens, output_tokens, cost)
                if closing is not None:
                    ending += b"data: " + json.dumps(closing, separators=(",", ":")).encode() + b"\n\n"
                ending += b"data: [DONE]\n\n"
            await _safe_send(send, {"type": "http.response.body", "body": ending, "more_body": False})

    # ------------------------------------------------------------------ helpers

    async def _open(self, bill: _Bill, payload: Payload, *, read_body: bool, path: str = "/chat/completions"):
        try:
            opened = await self.upstreams.open(bill.model, payload, read_body=read_body, path=path)
        except NoProviderAvailable as failed:
            _log.warning("no provider available", extra={"model": bill.model.id, "failures": failed.failures})
            await bill.release(502)
            raise ProxyError(
                502,
                "upstream_unavailable",
                f"No provider could serve {bill.model.id} right now; nothing was charged.",
                type_="api_error",
                headers=_headers(bill.admission),
            ) from failed
        bill.provider = opened.provider.name
        return opened


class _Bill:
    """One admitted request's bill: settled with the real cost, or released, exactly once."""

    def __init__(
        self, app: ProxyApp, admission: Admission, model: catalog.Model, stream: bool, prices: parameters.Prices
    ) -> None:
        self.app, self.admission, self.model, self.stream, self.prices = app, admission, model, stream, prices
        self.provider: str | None = None  # the provider that answered, once one did
        self.closed = False

    def cost_of(self, usage: Any, body: dict) -> int | None:
        """What the provider's usage costs at this request's prices (None: no usage in it)."""
        if not isinstance(usage, dict):
            return None
        return cost_micros(*_token_counts(usage, body, ""), self.prices.input, self.prices.output)

    def _outcome(self, status: int) -> Outcome:
        return Outcome(model=self.model.id, provider=self.provider, status=status, stream=self.stream)

    async def settle(self, input_tokens: int, output_tokens: int) -> int:
        cost = cost_micros(input_tokens, output_tokens, self.prices.input, self.prices.output)
        if self.closed:
            return cost
        self.closed = True
        try:
            await self.app._blocking(
                self.app.meter.settle,
                self.admission,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_micros=cost,
                counted=True,
                now=_now(),
                outcome=self._outcome(200),
            )
        except Exception:
            # Retries are spent (conflicts and throttling are retried inside). The reservation stays
            # charged; this line carries what is needed to settle it by hand (see README, Operations).
            admission = self.admission
            _log.exception(
                "settle failed",
                extra={
                    "settle": {
                        "requestId": admission.request_id,
                        "keyId": admission.key.key_id,
                        "accountId": admission.key.account_id,
                        "reserveMicros": admission.reserve_micros,
                        "costMicros": cost,
                        "inputTokens": input_tokens,
                        "outputTokens": output_tokens,
                    }
                },
            )
            raise
        return cost

    async def release(self, status: int) -> None:
        """Nothing was served: the reservation goes back, nothing is charged (``status``: what the
        client was told, for the request log)."""
        if self.closed:
            return
        self.closed = True
        await self.app._blocking(
            self.app.meter.settle,
            self.admission,
            input_tokens=0,
            output_tokens=0,
            cost_micros=0,
            counted=False,
            now=_now(),
            outcome=self._outcome(status),
        )


class _Request:
    __slots__ = ("max_output", "media_parts", "n", "stream")

    def __init__(self, max_output: int, n: int, stream: bool, media_parts: int) -> None:
        self.max_output, self.n, self.stream, self.media_parts = max_output, n, stream, media_parts


def _validate(body: dict, model: catalog.Model | None) -> _Request:
    parameters.check_fields(body)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("'model' is required.", code="missing_model", param="model")
    if model is None:
        raise ProxyError(404, "model_not_found", f"The model '{body['model']}' does not exist.", param="model")
    if model.kind != "chat":
        raise bad_request(f"{model.id} is an embedding model: use POST /v1/embeddings.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise bad_request("'messages' must be a non-empty list of message objects.", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    caps = []
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad_request(f"'{field}' must be a positive integer.", param=field)
        if value > model.max_output_tokens:
            raise bad_request(f"'{field}' can be at most {model.max_output_tokens} for {model.id}.", param=field)
        caps.append(value)
    # The larger cap when both are given: it is what gets reserved and what is sent upstream.
    max_output = max(caps) if caps else model.default_max_output_tokens
    media_parts = sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") in MEDIA_PART_TYPES
    )
    if media_parts and model.media_part_tokens is None:
        raise bad_request(f"{model.id} takes text only.", code="unsupported_content", param="messages")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= _MAX_N:
        raise bad_request(f"'n' must be an integer from 1 to {_MAX_N}.", param="n")
    return _Request(max_output, n, stream, media_parts)


def _prompt_text(body: dict) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


def _token_counts(usage: Any, body: dict, completion: str) -> tuple[int, int]:
    """Upstream usage when present and sane; otherwise a local count, never zero."""
    if isinstance(usage, dict):
        prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(output, int) and prompt >= 0 and output >= 0:
            return prompt, output
    return max(1, estimate_tokens(_prompt_text(body))), estimate_tokens(completion)


def _headers(admission: Admission) -> dict[str, str]:
    return {**admission.rate_headers, "x-request-id": admission.request_id}


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise unauthorized("Missing API key: send 'Authorization: Bearer sk_live_…'.")


def _parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from error
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProxyError(413, "request_too_large", f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


async def _send_raw(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    all_headers = {**headers, "content-type": "application/json", "content-length": str(len(body))}
    await send({"type": "http.response.start", "status": status, "headers": _encode(all_headers)})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, payload: Any, headers: dict[str, str]) -> None:
    await _send_raw(send, status, json.dumps(payload, separators=(",", ":")).encode(), headers)


async def _safe_send(send: Send, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already; nothing left to tell it
        await send(message)


def create_app() -> ProxyApp:
    return ProxyApp()
