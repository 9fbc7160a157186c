"""Which Chat Completions parameters the proxy accepts, and what it does with each (README, "Parameters").

Every parameter of OpenAI's current Chat Completions reference is accepted. Each one is:
- **handled** by the proxy itself: validated, rewritten where needed and always sent (``model``, ``messages``,
  the output caps, ``stream``/``stream_options``), or priced (``n`` multiplies the reservation,
  ``service_tier`` picks a catalog price and only the providers offering that tier);
- **forwarded** to a provider that lists it in the catalog (``parameters``), and **dropped** for one that does
  not: they change what is generated, never what a token costs, and the bill comes from the provider's usage;
- **dropped always** when it is billed in a way the catalog cannot price (audio output, web search calls, a
  moderation model): nothing unpriced reaches a provider.
Anything else is refused (400 ``unsupported_parameter``): provider extensions such as OpenRouter's
``models``/``provider``/``plugins`` would change what the operator pays behind the catalog price. Fields that
would redirect the call or carry credentials are 400 ``upstream_override_not_allowed``; the proxy never forwards
a client's HTTP headers either, it builds its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_platform.proxy.errors import bad_request

if TYPE_CHECKING:
    from llm_platform.proxy.catalog import Model, Provider

# Body fields that would point the proxy at another server, or hand it headers or credentials to use.
UPSTREAM_OVERRIDES = frozenset(
    {
        "api_base", "base_url", "api_url", "api_key", "endpoint", "url", "upstream", "upstream_url", "provider_url",
        "headers", "extra_headers", "default_headers", "http_headers", "authorization", "api_token", "access_token",
        "credentials", "organization", "project",
    }
)  # fmt: skip
# Validated and rewritten by the proxy, sent to every provider in the form it takes.
HANDLED = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "service_tier"}
)
# What an OpenAI-compatible server takes since 2023: the default of a provider whose catalog entry lists none.
CLASSIC = frozenset(
    {
        "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "n", "response_format",
        "seed", "stop", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user",
        "functions", "function_call",
    }
)  # fmt: skip
# Newer parameters, forwarded only to providers that list them (e.g. OpenAI's own API).
NEWER = frozenset(
    {
        "metadata", "store", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "safety_identifier", "reasoning_effort", "verbosity", "prediction",
    }
)  # fmt: skip
FORWARDABLE = CLASSIC | NEWER
# Billed outside the token prices of the catalog (audio output tokens, per-call web search, a moderation
# model's run): accepted, never forwarded, so the request is served as text and priced as the catalog says.
UNPRICED = frozenset({"audio", "modalities", "web_search_options", "moderation"})
ACCEPTED = HANDLED | FORWARDABLE | UNPRICED
# service_tier values that mean "the provider's standard processing": not forwarded (an "auto" could select a
# tier the operator configured for its own project, at a price the catalog does not charge), standard price.
STANDARD_TIERS = frozenset({"auto", "default"})


@dataclass(frozen=True, slots=True)
class Prices:
    """What this request's tokens cost the customer: micro-dollars per 1M tokens."""

    input: int
    output: int


@dataclass(frozen=True, slots=True)
class ChatOptions:
    prices: Prices
    service_tier: str | None  # a priced tier the request asked for, forwarded to the providers offering it
    wants_usage: bool  # stream_options.include_usage: the client asked for the usage chunk
    prediction_tokens: int  # the most a predicted output can add to the output tokens billed


def check_fields(body: dict, accepted: frozenset[str] = ACCEPTED) -> None:
    """Refuse overrides first (they must never be mistaken for an unknown parameter), then unknown fields."""
    overrides = sorted(UPSTREAM_OVERRIDES.intersection(body))
    if overrides:
        raise bad_request(
            f"'{overrides[0]}' is not accepted: the platform chooses the upstream provider and its credentials.",
            code="upstream_override_not_allowed",
            param=overrides[0],
        )
    unsupported = sorted(set(body) - accepted)
    if unsupported:
        raise bad_request(
            f"'{unsupported[0]}' is not a supported parameter.", code="unsupported_parameter", param=unsupported[0]
        )


def chat_options(body: dict, model: Model) -> ChatOptions:
    """The priced and rewritten parameters of a chat request already validated (``asgi._validate``)."""
    stream_options = body.get("stream_options")  # an object or null, as validated with the request
    wants_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    tier = body.get("service_tier")
    if tier is not None and not isinstance(tier, str):
        raise bad_request("'service_tier' must be a string.", param="service_tier")
    prices = Prices(model.input_price, model.output_price)
    if tier is None or tier in STANDARD_TIERS:
        tier = None
    elif tier in model.service_tiers:
        prices = model.service_tiers[tier]
    else:
        offered = ", ".join(sorted(STANDARD_TIERS | set(model.service_tiers)))
        raise bad_request(
            f"service_tier '{tier}' is not offered for {model.id} (offered: {offered}).",
            code="unsupported_parameter",
            param="service_tier",
        )
    prediction = body.get("prediction")
    if prediction is not None and not isinstance(prediction, dict):
        raise bad_request("'prediction' must be an object.", param="prediction")
    # Predicted tokens the model rejects are billed as output: reserve one per byte of the prediction, the
    # same bound as the prompt's (a provider that does not take it never bills it; settle is exact).
    prediction_tokens = len(json.dumps(prediction).encode()) if prediction else 0
    return ChatOptions(prices, tier, wants_usage, prediction_tokens)


def offers(provider: Provider, options: ChatOptions) -> bool:
    return options.service_tier is None or options.service_tier in provider.service_tiers


def upstream_chat_body(provider: Provider, body: dict, options: ChatOptions, max_output: int) -> dict:
    """The body one provider gets: what it takes of the client's parameters, the provider's model name, the
    reserved output cap in the field it honours, and usage asked for on streams (billing needs it)."""
    payload = {name: value for name, value in body.items() if name in provider.parameters}
    payload["messages"] = body["messages"]
    payload["model"] = provider.model
    payload[provider.max_tokens_field] = max_output
    if body.get("stream") is True:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    if options.service_tier is not None:
        payload["service_tier"] = options.service_tier
    return payload
