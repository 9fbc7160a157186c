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
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from llm_platform.config import get_settings
from llm_platform.data import dynamo
from llm_platform.domain.credentials import bearer_token
from llm_platform.domain.money import format_usd
from llm_platform.proxy import catalog, cors, key_info, parameters, telemetry
from llm_platform.proxy.errors import ProxyError, bad_request, unauthorized
from llm_platform.proxy.generation import Generation, sse_chunks
from llm_platform.proxy.http1 import HTTPError
from llm_platform.proxy.keys import KeyCache, KeySnapshot
from llm_platform.proxy.metering import Admission, Meter, Outcome, Pending, check_usable
from llm_platform.proxy.pricing import (
    cost_micros,
    default_output_cap,
    estimate_tokens,
    input_token_bound,
    input_token_estimate,
)
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
# Lambda stops the proxy at 900 s: a request still running then is ended here first, so it is billed.
REQUEST_DEADLINE_SECONDS = 870.0


def _now() -> datetime:
    return datetime.now(UTC)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class _Response:
    """Wraps ``send`` to know whether a response has started (then an error can only end it)."""

    def __init__(self, send: Send) -> None:
        self._send, self.started, self.finished, self.status = send, False, False, 0
        self.record: telemetry.RequestRecord | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started, self.status = True, message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished = True
            if self.record is not None:  # logged before the client sees the end: the line is never behind it
                telemetry.finish(self.record, self.status)
        await self._send(message)


def _on_hot_path(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The proxy's transactions go straight to DynamoDB's wire protocol, not through botocore."""
    with dynamo.hot_path():
        return function(*args, **kwargs)


class ProxyApp:
    def __init__(self) -> None:
        self.keys = KeyCache()
        self.meter = Meter(self.keys)
        self.upstreams = Upstreams()
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = 0  # HTTP requests being served by this process now

    async def _blocking(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking DynamoDB call. A request served alone (always so on Lambda: one request per
        execution environment at a time) makes it right here on the event loop: the hop to a thread and
        back costs about 0.5 ms of CPU per request, a sixth of the total. Meanwhile the loop accepts
        nothing: one round trip normally, but up to the wire client's retries (three attempts, 2 s
        connect and 5 s read timeouts each) while DynamoDB is unreachable, when a newcomer would fail on
        it anyway. With others in flight the call goes to a pool sized for concurrent requests (the
        default executor has cpu+4 threads, which would queue admissions behind each other), so no
        request waits on another's round trip."""
        if self._in_flight <= 1:
            return _on_hot_path(function, *args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="proxy-db")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, partial(_on_hot_path, function, *args, **kwargs)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self._in_flight += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self._in_flight -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid.uuid4())
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if method == "OPTIONS":  # a browser's CORS preflight: no key, no DynamoDB, not a metered request
            await cors.preflight(scope, send, path, request_id)
            return
        response = _Response(cors.with_cors(scope, send, path))
        # One JSON line per request with its metrics (proxy/telemetry.py); the readiness probe is not a request.
        record = telemetry.begin(request_id, method, path, scope.get("headers") or []) if path != "/healthz" else None
        response.record = record
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
            response.status = 499
            return
        except Exception as error:
            if not isinstance(error, ProxyError):
                _log.exception("unhandled error", extra={"requestId": request_id})
                error = ProxyError(500, "internal_error", "Something went wrong on our side.", type_="api_error")
            if record is not None:
                record.code, record.status = error.code, error.status
            if not response.started:
                await _send_json(response, error.status, error.body(), {**error.headers, "x-request-id": request_id})
            elif not response.finished:  # mid-stream: all that can be done is to end it
                await _safe_send(response, {"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if record is not None:
                telemetry.finish(record, response.status)

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

    async def _authenticate(self, scope: Scope, now: datetime, fresh: bool = False) -> KeySnapshot:
        """The presented key's snapshot, refused when it is not live, expired or rotated away. ``fresh``:
        read the key whatever is cached, for routes with no admission transaction after them to find a
        key revoked or disabled since it was cached."""
        token = _bearer(scope)
        # A warm key needs no DynamoDB read; only a first sight of it (or a fresh one) does.
        cached = None if fresh else self.keys.cached(token)
        key = cached or await self._blocking(self.keys.lookup, token, fresh)
        if key is not None and not fresh and (key.expired(now) or key.secret_retired(now)):
            # Expired as cached: read it again before refusing, its expiry may have been moved since.
            key = await self._blocking(self.keys.reload, key.secret_hash)
        if key is None:
            raise unauthorized()
        if (record := telemetry.current()) is not None:
            record.key_id, record.account_id = key.key_id, key.account_id
        check_usable(key, now)
        return key

    async def _models(self, scope: Scope, send: Send, request_id: str) -> None:
        await self._authenticate(scope, _now(), fresh=True)
        data = [model.public() for model in catalog.models().values()]
        await _send_json(send, 200, {"object": "list", "data": data}, {"x-request-id": request_id})

    async def _model(self, scope: Scope, send: Send, request_id: str, model_id: str) -> None:
        """``GET /v1/models/{id}``; ids contain ``/`` (the openai SDK sends it as ``%2F``, decoded by then)."""
        await self._authenticate(scope, _now(), fresh=True)
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
        if info is not None and info["_version"] != key.version:
            # Changed since cached (limits, or a rotation that may have retired this very secret): the presented
            # secret is checked again, fresh, before anything is answered; the cache then holds the new snapshot.
            key = await self._authenticate(scope, now, fresh=True)
            info = await self._blocking(key_info.read, key, now)
        if info is None:  # revoked or disabled since it was cached
            self.keys.forget(key.secret_hash)
            raise unauthorized("This API key is revoked or disabled.")
        del info["_version"]
        await _send_json(send, 200, {"data": info}, {"x-request-id": request_id})

    # ------------------------------------------------------------------ POST /v1/chat/completions

    async def _chat(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        raw = await _read_body(receive, get_settings().max_proxy_body_bytes)
        key = await self._authenticate(scope, _now())
        body = _parse_json(raw)
        name = body.get("model")
        request, model = _validate(body, catalog.models().get(name) if isinstance(name, str) else None)
        options = parameters.chat_options(body, model)
        media = request.media_parts * (model.media_part_tokens or 0)
        prompt = input_token_estimate(len(_prompt_text(body).encode()), len(body["messages"]), media)
        max_output = request.max_output or default_output_cap(
            model.default_max_output_tokens, key.tpm, prompt, request.n, options.prediction_tokens
        )
        outputs = (max_output + options.prediction_tokens) * request.n
        reserve = cost_micros(
            input_token_bound(len(raw), len(body["messages"]), media) * request.n,
            outputs,
            options.prices.input,
            options.prices.output,
        )
        tokens = prompt + outputs
        pending = Pending(
            model=model.id,
            stream=request.stream,
            prompt_tokens=prompt,
            prompt_cost_micros=cost_micros(prompt, 0, options.prices.input, options.prices.output),
        )
        admission = await self._blocking(self.meter.admit, key, reserve, tokens, request_id, _now(), pending)
        bill = _Bill(self, admission, model, request.stream, options.prices)
        # The provider is always asked for a stream with usage, also when the client is not: what it
        # generated can then be counted and billed whatever happens to the answer (see _relay_once).
        upstream_request = {**body, "stream": True}

        def payload(provider: catalog.Provider) -> dict | None:
            if not parameters.offers(provider, options):
                return None
            return parameters.upstream_chat_body(provider, upstream_request, options, max_output)

        try:
            if request.stream:
                await self._relay_stream(receive, send, bill, payload, body, StreamUsage(options.wants_usage))
            else:
                await self._relay_once(send, bill, payload, body)
        except BaseException as error:
            await release_after(error, bill, send)
            raise

    async def _relay_once(self, send: Send, bill: _Bill, payload: Payload, body: dict) -> None:
        """A non-streamed answer, read from the provider as a stream: once a provider has accepted the
        request (2xx), there is no failover, and whatever it generated is billed, also when it stalls
        past its timeout, drops the connection or runs into the request's deadline."""
        opened = await self._open(bill, payload)
        response = opened.response
        generation = Generation()
        try:
            if response.status_code >= 400:  # the client's own mistake, as judged by the provider
                content = await response.aread()
                await bill.release(400)
                raise _provider_refusal(response.status_code, content, bill.admission)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REQUEST_DEADLINE_SECONDS):
                    if "text/event-stream" not in response.headers.get("content-type", ""):
                        # A provider that ignored the stream request: a whole completion, or nothing usable.
                        data = json.loads(await response.aread())
                        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
                            raise ValueError("not a chat completion")
                        generation.from_completion(data)
                    else:
                        with contextlib.suppress(HTTPError):  # stalled past its timeout, or dropped
                            async for _ in sse_chunks(response.aiter_lines(), generation):
                                pass
        finally:
            await response.aclose()
        input_tokens, output_tokens = _token_counts(generation.usage, body, generation.generated_text())
        if not generation.finished:
            cost = await bill.settle(input_tokens, output_tokens, status=502)
            raise ProxyError(
                502,
                "upstream_error",
                f"The provider stopped in the middle of the answer. What it generated was billed: "
                f"${format_usd(cost)} for {input_tokens} prompt and {output_tokens} completion tokens.",
                type_="api_error",
                headers={**_headers(bill.admission), "x-request-cost": format_usd(cost)},
            )
        cost = await bill.settle(input_tokens, output_tokens)
        completion = generation.completion(bill.model.id)
        completion["usage"] = with_cost(generation.usage, input_tokens, output_tokens, cost)
        await _send_json(send, 200, completion, {**_headers(bill.admission), "x-request-cost": format_usd(cost)})

    async def _relay_stream(
        self, receive: Receive, send: Send, bill: _Bill, payload: Payload, body: dict, shaping: StreamUsage
    ) -> None:
        opened = await self._open(bill, payload)
        response = opened.response
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            await bill.release(400)
            raise _provider_refusal(response.status_code, content, bill.admission)

        generation = Generation()

        async def relay() -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": _encode(
                        {**_headers(bill.admission), "content-type": "text/event-stream", "cache-control": "no-cache"}
                    ),
                }
            )
            async for chunk in sse_chunks(response.aiter_lines(), generation):
                chunk["model"] = bill.model.id
                shaped = shaping.shape(chunk, bill.cost_of(chunk.get("usage"), body))
                if shaped is None:
                    continue
                frame = b"data: " + json.dumps(shaped, separators=(",", ":")).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": frame, "more_body": True})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relaying = asyncio.ensure_future(relay())
        watching = asyncio.ensure_future(client_gone())
        try:
            await asyncio.wait(
                {relaying, watching}, timeout=REQUEST_DEADLINE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (relaying, watching):
                task.cancel()
            await asyncio.gather(relaying, watching, return_exceptions=True)
            await response.aclose()
            # Always charged: upstream usage when it came, else a local count of everything generated (cut
            # off, timed out, or the client left), and before the stream ends for the client.
            input_tokens, output_tokens = _token_counts(generation.usage, body, generation.generated_text())
            cost = await asyncio.shield(bill.settle(input_tokens, output_tokens))
        if not watching.done() or watching.cancelled():
            ending = b""
            if generation.done:  # a complete stream: the usage chunk owed to the client, if any, then [DONE]
                closing = shaping.closing_chunk(input_tokens, output_tokens, cost)
                if closing is not None:
                    ending += b"data: " + json.dumps(closing, separators=(",", ":")).encode() + b"\n\n"
                ending += b"data: [DONE]\n\n"
            await _safe_send(send, {"type": "http.response.body", "body": ending, "more_body": False})

    # ------------------------------------------------------------------ helpers

    async def _open(self, bill: _Bill, payload: Payload, *, read_body: bool = False, path: str = "/chat/completions"):
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


async def release_after(error: BaseException, bill: _Bill, send: Send) -> None:
    """Whatever went wrong before the bill was settled: give the reservation back, logging the status the
    client ends up with (499: it left before any answer). An unexpected error becomes a 502 that says so."""
    if isinstance(error, ProxyError):
        status = error.status
    elif isinstance(send, _Response) and send.started:
        status = 200
    else:
        status = 499 if isinstance(error, asyncio.CancelledError | _ClientGone) else 502
    await asyncio.shield(bill.release(status))
    if isinstance(error, ProxyError | asyncio.CancelledError | _ClientGone):
        return
    _log.exception("request failed after admission", extra={"requestId": bill.admission.request_id})
    raise ProxyError(
        502,
        "upstream_error",
        "The request failed upstream; nothing was charged.",
        type_="api_error",
        headers=_headers(bill.admission),
    ) from error


class _Bill:
    """One admitted request's bill: settled with the real cost, or released, exactly once."""

    def __init__(
        self, app: ProxyApp, admission: Admission, model: catalog.Model, stream: bool, prices: parameters.Prices
    ) -> None:
        self.app, self.admission, self.model, self.stream, self.prices = app, admission, model, stream, prices
        self.provider: str | None = None  # the provider that answered, once one did
        self.closed = False
        telemetry.reservation_opened()
        # While the request runs, its reservation's deadline is pushed out every heartbeat: only a request
        # that died leaves it to the reconciler, within minutes (most requests end before the first beat).
        self._beat_timer: asyncio.TimerHandle | None = None
        self._beating: asyncio.Task | None = None
        self._schedule_beat()

    def _schedule_beat(self) -> None:
        loop = asyncio.get_running_loop()
        self._beat_timer = loop.call_later(get_settings().reservation_heartbeat_seconds, self._beat)

    def _beat(self) -> None:
        if not self.closed:
            self._beating = asyncio.ensure_future(self._extend())

    async def _extend(self) -> None:
        try:
            extended = await self.app._blocking(self.app.meter.extend_reservation, self.admission, _now())
        except Exception:  # DynamoDB failing: the next beat tries again, the deadline leaves room for a few
            _log.warning("reservation heartbeat failed", extra={"requestId": self.admission.request_id}, exc_info=True)
            extended = True
        if extended and not self.closed:
            self._schedule_beat()

    def _stop_beating(self) -> None:
        if self._beat_timer is not None:
            self._beat_timer.cancel()
        if self._beating is not None and not self._beating.done():
            self._beating.cancel()

    def cost_of(self, usage: Any, body: dict) -> int | None:
        """What the provider's usage costs at this request's prices (None: no usage in it)."""
        if not isinstance(usage, dict):
            return None
        return cost_micros(*_token_counts(usage, body, ""), self.prices.input, self.prices.output)

    def _outcome(self, status: int) -> Outcome:
        return Outcome(model=self.model.id, provider=self.provider, status=status, stream=self.stream)

    async def settle(self, input_tokens: int, output_tokens: int, status: int = 200) -> int:
        """Charge the real cost (at most the reservation). ``status``: what the client gets, for the log."""
        cost = min(
            cost_micros(input_tokens, output_tokens, self.prices.input, self.prices.output),
            self.admission.reserve_micros,
        )
        await self._close(input_tokens, output_tokens, cost, counted=True, status=status)
        return cost

    async def release(self, status: int) -> None:
        """Nothing was served: the reservation goes back, nothing is charged (``status``: what the
        client was told, for the request log)."""
        await self._close(0, 0, 0, counted=False, status=status)

    async def _close(self, input_tokens: int, output_tokens: int, cost: int, *, counted: bool, status: int) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_beating()
        telemetry.reservation_closed()
        if (record := telemetry.current()) is not None:
            record.model, record.provider, record.stream = self.model.id, self.provider, self.stream
            record.input_tokens, record.output_tokens, record.cost_micros = input_tokens, output_tokens, cost
        try:
            await self.app._blocking(
                self.app.meter.settle,
                self.admission,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_micros=cost,
                counted=counted,
                now=_now(),
                outcome=self._outcome(status),
            )
        except Exception as error:
            # Retries are spent (conflicts and throttling are retried inside). The reservation record stays,
            # and the reconciler settles it after the request's deadline: the prompt's cost charged, the rest
            # released. This line carries the real figures, should an operator want to charge them by hand.
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
            raise _SettleFailed(admission) from error


class _SettleFailed(ProxyError):
    """The settle could not be written: the client is told what happens to its reservation instead."""

    def __init__(self, admission: Admission) -> None:
        settings = get_settings()
        # The last heartbeat left the deadline at most this far out; the reconciler runs every minute.
        minutes = math.ceil((settings.reservation_deadline_seconds + settings.reconcile_grace_seconds) / 60)
        super().__init__(
            503,
            "billing_unavailable",
            f"This request could not be billed right now, so its answer is withheld. Its reservation of "
            f"${format_usd(admission.reserve_micros)} is settled within {minutes + 2} minutes: the prompt's cost "
            "is charged and the rest released.",
            type_="api_error",
            headers=_headers(admission),
        )


class _Request:
    __slots__ = ("max_output", "media_parts", "n", "stream")

    # max_output: the client's cap, None when it sent none (the key's TPM then shapes the default).
    def __init__(self, max_output: int | None, n: int, stream: bool, media_parts: int) -> None:
        self.max_output, self.n, self.stream, self.media_parts = max_output, n, stream, media_parts


def _validate(body: dict, model: catalog.Model | None) -> tuple[_Request, catalog.Model]:
    """The request's shape checked against the model's limits: what it asks for, and the model (which exists)."""
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
    max_output = max(caps) if caps else None
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
    return _Request(max_output, n, stream, media_parts), model


_FRAMING_FIELDS = frozenset({"role", "type", "id", "tool_call_id"})  # counted as chat framing instead


def _prompt_text(body: dict) -> str:
    """The prompt's text for a local count: every string of the messages (text parts, tool results,
    earlier tool calls' arguments) and of the tool definitions, but not media payloads, which the
    catalog's ``mediaPartTokens`` prices instead."""
    parts: list[str] = []
    stack: list[Any] = [body.get("messages"), body.get("tools"), body.get("functions")]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            if value.get("type") in MEDIA_PART_TYPES:
                continue
            stack.extend(item for name, item in value.items() if name not in _FRAMING_FIELDS)
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
    header = next((value for name, value in scope.get("headers") or [] if name == b"authorization"), None)
    token = bearer_token(header.decode("latin-1") if header is not None else None)
    if token is None:
        raise unauthorized("Missing API key: send 'Authorization: Bearer sk_live_…'.")
    return token


_MAX_JSON_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_json(raw: bytes) -> dict:
    """The request body as a JSON object, refused (400 ``invalid_json``) when it is not valid JSON, holds
    NaN or Infinity, nests deeper than any chat request does, or carries a lone UTF-16 surrogate (which
    no UTF-8 string can hold): each of those would otherwise fail later, as a 5xx."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as error:
        raise bad_request("The request body nests too deeply.", code="invalid_json") from error
    except ValueError as error:
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from error
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > _MAX_JSON_DEPTH and _depth(body) > _MAX_JSON_DEPTH:
        raise bad_request(f"The request body nests deeper than {_MAX_JSON_DEPTH} levels.", code="invalid_json")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise bad_request("The request body holds an unpaired UTF-16 surrogate.", code="invalid_json") from error
    return body


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > _MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _provider_refusal(status: int, content: bytes, admission: Admission) -> ProxyError:
    """A provider's 400/413/422 (the client's own mistake, as the provider judged it), in OpenAI's error
    format as a 400: the provider's message when it gave one, never its raw body or headers."""
    message, param = "The provider refused the request.", None
    try:
        error = json.loads(content).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = f"The provider refused the request: {error['message'][:500]}"
            param = error.get("param") if isinstance(error.get("param"), str) else None
    except (ValueError, AttributeError):
        pass
    return ProxyError(
        400,
        "upstream_rejected",
        f"{message} (HTTP {status}; nothing was charged)",
        param=param,
        headers=_headers(admission),
    )


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
