"""``POST /v1/embeddings`` in OpenAI's format, metered like chat: the same key check, RPM/TPM, reservation
(every input token at the model's price, counted as an upper bound) and settle from the provider's
``usage.prompt_tokens``. Imported by the proxy on the first embeddings request only."""

from __future__ import annotations

import base64
import logging
import struct
from typing import TYPE_CHECKING, Any

from llm_platform.config import get_settings
from llm_platform.domain.money import format_usd
from llm_platform.proxy import asgi, catalog
from llm_platform.proxy.errors import ProxyError, bad_request
from llm_platform.proxy.metering import Pending
from llm_platform.proxy.parameters import Prices, check_fields
from llm_platform.proxy.pricing import estimate_tokens
from llm_platform.proxy.usage import cost_usd

if TYPE_CHECKING:
    from llm_platform.proxy.asgi import ProxyApp, Receive, Scope, Send

_log = logging.getLogger("llm_platform.proxy")

ACCEPTED = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
MAX_INPUTS = 2048  # OpenAI's limit on the items of one request
ENCODINGS = ("float", "base64")


class _Inputs:
    """The validated ``input``: its text bytes and token-array lengths, for the reservation and a local count."""

    def __init__(self, value: Any) -> None:
        items = [value] if isinstance(value, str) or _is_tokens(value) else value
        if not isinstance(items, list) or not items:
            raise _bad_input()
        if len(items) > MAX_INPUTS:
            raise bad_request(f"'input' takes at most {MAX_INPUTS} items.", param="input")
        self.texts: list[str] = []
        self.token_arrays: list[list[int]] = []
        for item in items:
            if isinstance(item, str) and item:
                self.texts.append(item)
            elif _is_tokens(item):
                self.token_arrays.append(item)
            else:
                raise _bad_input()

    def token_bound(self) -> int:
        """At most one token per UTF-8 byte (byte-level BPE), plus one per input; token arrays are exact."""
        return sum(len(t.encode()) + 1 for t in self.texts) + sum(len(a) for a in self.token_arrays)

    def token_estimate(self) -> int:
        """A realistic count for TPM (~3 bytes a token), as chat's."""
        return sum(-(-len(t.encode()) // 3) for t in self.texts) + sum(len(a) for a in self.token_arrays)

    def local_count(self) -> int:
        """The bill when the provider reports no usage: never zero."""
        return max(1, sum(estimate_tokens(t) for t in self.texts) + sum(len(a) for a in self.token_arrays))


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def _bad_input() -> ProxyError:
    return bad_request(
        "'input' must be a non-empty string, or a non-empty list of non-empty strings or of token arrays.",
        param="input",
    )


def _validate(body: dict, model: catalog.Model | None) -> tuple[catalog.Model, _Inputs, str, int | None]:
    """The request's model (it exists and embeds), inputs, encoding and dimensions; or a 4xx."""
    check_fields(body, ACCEPTED)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("'model' is required.", code="missing_model", param="model")
    if model is None:
        raise ProxyError(404, "model_not_found", f"The model '{body['model']}' does not exist.", param="model")
    if model.kind != "embedding":
        raise bad_request(f"{model.id} is not an embedding model: use POST /v1/chat/completions.", param="model")
    inputs = _Inputs(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise bad_request("'encoding_format' is 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not model.dimensions_adjustable:
            raise bad_request(
                f"{model.id} has a fixed size of {model.dimensions}: 'dimensions' is not supported.",
                code="unsupported_parameter",
                param="dimensions",
            )
        largest = model.dimensions or 0
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= largest:
            raise bad_request(f"'dimensions' must be an integer from 1 to {model.dimensions}.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("'user' must be a string.", param="user")
    return model, inputs, encoding, dimensions


async def create_embeddings(app: ProxyApp, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
    raw = await asgi._read_body(receive, get_settings().max_proxy_body_bytes)
    key = await app._authenticate(scope, asgi._now())
    body = asgi._parse_json(raw)
    name = body.get("model")
    model, inputs, encoding, dimensions = _validate(body, catalog.models().get(name) if isinstance(name, str) else None)
    prices = Prices(model.input_price, 0)
    reserve = asgi.cost_micros(inputs.token_bound(), 0, prices.input, 0)
    tokens = inputs.token_estimate()
    # Should the request die unsettled, the reconciler charges the inputs' estimated cost.
    pending = Pending(model.id, False, tokens, min(reserve, asgi.cost_micros(tokens, 0, prices.input, 0)))
    admission = await app._blocking(app.meter.admit, key, reserve, tokens, request_id, asgi._now(), pending)
    bill = asgi._Bill(app, admission, model, False, prices)

    def payload(provider: catalog.Provider) -> dict:
        forwarded = {"model": provider.model, "input": body["input"]}
        if dimensions is not None:
            forwarded["dimensions"] = dimensions
        if "user" in provider.parameters and body.get("user") is not None:
            forwarded["user"] = body["user"]
        if encoding == "base64" and "encoding_format" in provider.parameters:
            forwarded["encoding_format"] = "base64"  # a quarter of the bytes; else floats, encoded here
        return forwarded

    try:
        await _relay(app, send, bill, payload, inputs, encoding)
    except BaseException as error:
        await asgi.release_after(error, bill, send)  # as for chat: the reservation goes back
        raise


async def _relay(app: ProxyApp, send: Send, bill: asgi._Bill, payload, inputs: _Inputs, encoding: str) -> None:
    opened = await app._open(bill, payload, read_body=True, path="/embeddings")
    response = opened.response
    try:
        if response.status_code >= 400:  # the client's own mistake, as judged by the provider
            await bill.release(400)
            raise asgi._provider_refusal(response.status_code, response.content, bill.admission)
        data = response.json()
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) and "embedding" in i for i in items):
            raise ValueError("not an embeddings list")
        usage = data.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0:
            prompt = inputs.local_count()
        cost = await bill.settle(prompt, 0)
        answer = {
            "object": "list",
            "data": [_item(i, item, encoding) for i, item in enumerate(items)],
            "model": bill.model.id,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt, "cost": cost_usd(cost)},
        }
        headers = {**asgi._headers(bill.admission), "x-request-cost": format_usd(cost)}
        await asgi._send_json(send, 200, answer, headers)
    finally:
        await response.aclose()


def _item(position: int, item: dict, encoding: str) -> dict:
    index = item.get("index", position)
    return {"object": "embedding", "index": index, "embedding": _encoded(item["embedding"], encoding)}


def _encoded(vector: Any, encoding: str) -> Any:
    """As the client asked: floats, or base64 of little-endian float32 (what OpenAI sends and its SDK decodes)."""
    if encoding == "base64" and isinstance(vector, list):
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    if encoding == "float" and isinstance(vector, str):
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return vector
