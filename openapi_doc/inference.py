"""The OpenAPI description of ``/v1`` (OpenAI's wire format), merged into the whole API's document by
``openapi_doc.document``. Static data: the proxy is a raw ASGI app with no schema of its own, and this
dev package is not deployed with it. The parameters listed are exactly ``parameters.ACCEPTED`` (a unit test checks
it); anything else is refused, as the request schema says."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
REF = "#/components/schemas/"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": REF + "OpenAIErrorResponse"}}}}


_HEADER = {"schema": {"type": "string"}}
RATE_LIMIT_HEADERS: dict[str, Any] = {
    "x-request-id": {**_HEADER, "description": "This request's id (in the logs too)."},
    "x-ratelimit-limit-requests": {**_HEADER, "description": "The key's RPM."},
    "x-ratelimit-remaining-requests": {**_HEADER, "description": "Requests left this minute."},
    "x-ratelimit-reset-requests": {**_HEADER, "description": "Time to the next minute, e.g. `12s`."},
    "x-ratelimit-limit-tokens": {**_HEADER, "description": "The key's TPM."},
    "x-ratelimit-remaining-tokens": {**_HEADER, "description": "Tokens left this minute."},
    "x-ratelimit-reset-tokens": {**_HEADER, "description": "Time to the next minute."},
}
RETRY_AFTER = {"retry-after": {**_HEADER, "description": "Seconds to wait."}}

UNAUTHORIZED = _error(
    "`invalid_api_key`: missing, unknown, revoked or disabled key, a secret rotated away past its grace "
    "period, or a subscription that is not active; `key_expired`: past the key's `expiresAt`."
)
# API Gateway's own answers (throttling, a body over its 10 MiB) use the platform's error envelope, as the
# template's GatewayResponses write it, not OpenAI's shape.
GATEWAY_ERROR = {"$ref": REF + "ErrorResponse"}
GATEWAY_THROTTLED = {
    "description": "`throttled`: over the API's request rate (API Gateway throttling, the platform's error envelope).",
    "content": {JSON: {"schema": GATEWAY_ERROR}},
}
THROTTLED = {
    "description": (
        "`rate_limit_exceeded`: the key's RPM or TPM (`retry-after`: seconds to the next minute); "
        "`budget_exceeded`: the subscription's 5-hour budget is spent (`retry-after`: seconds to the window's "
        "end), or requests in flight hold the rest of it (`retry-after: 1`). Or `throttled`: API Gateway's "
        "throttling, in the platform's error envelope."
    ),
    "headers": RETRY_AFTER,
    "content": {JSON: {"schema": {"anyOf": [{"$ref": REF + "OpenAIErrorResponse"}, GATEWAY_ERROR]}}},
}

CHAT_PARAMETERS: dict[str, Any] = {
    "model": {"type": "string", "description": "A model id of `GET /v1/models`."},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": REF + "ChatMessage"},
        "description": "The conversation. Image, audio and file parts only for models that declare them.",
    },
    "max_tokens": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "At most the model's `maxOutputTokens`. Without it, the model's default output cap, "
        "lowered to what the key's TPM leaves after the prompt.",
    },
    "max_completion_tokens": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "As `max_tokens`; the larger wins.",
    },
    "n": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": 16,
        "description": "Priced: the reservation is multiplied by `n`. Forwarded where the provider takes it.",
    },
    "stream": {"type": "boolean", "description": "Server-sent events."},
    "stream_options": {
        "type": ["object", "null"],
        "description": "`include_usage: true`: a last chunk with empty `choices` and `usage` (with `cost`). "
        "Without it no such chunk is sent (the provider is still asked for usage, for the bill).",
    },
    "service_tier": {
        "type": ["string", "null"],
        "description": "Priced: a tier the model lists in `GET /v1/models` (`service_tiers`) is billed at its price "
        "and served only by providers offering it; `auto`/`default`: the standard price, not forwarded; any other "
        "tier is refused (400 `unsupported_parameter`).",
    },
    "temperature": {"type": ["number", "null"]},
    "top_p": {"type": ["number", "null"]},
    "frequency_penalty": {"type": ["number", "null"]},
    "presence_penalty": {"type": ["number", "null"]},
    "logit_bias": {"type": ["object", "null"]},
    "logprobs": {"type": ["boolean", "null"]},
    "top_logprobs": {"type": ["integer", "null"]},
    "response_format": {"type": ["object", "null"]},
    "seed": {"type": ["integer", "null"]},
    "stop": {"type": ["string", "array", "null"], "items": {"type": "string"}},
    "tools": {"type": ["array", "null"], "items": {"type": "object"}},
    "tool_choice": {"type": ["string", "object", "null"]},
    "parallel_tool_calls": {"type": ["boolean", "null"]},
    "user": {"type": ["string", "null"]},
    "functions": {"type": ["array", "null"], "items": {"type": "object"}},
    "function_call": {"type": ["string", "object", "null"]},
    # Newer parameters: forwarded to providers that take them (the model's `supported_parameters`), else dropped.
    "metadata": {"type": ["object", "null"]},
    "store": {"type": ["boolean", "null"]},
    "prompt_cache_key": {"type": ["string", "null"]},
    "prompt_cache_options": {"type": ["object", "null"]},
    "prompt_cache_retention": {"type": ["string", "null"]},
    "safety_identifier": {"type": ["string", "null"]},
    "reasoning_effort": {"type": ["string", "null"]},
    "verbosity": {"type": ["string", "null"]},
    "prediction": {
        "type": ["object", "null"],
        "description": "Rejected predicted tokens are billed as output: the prediction's size is added to the "
        "reservation.",
    },
    # Billed outside the catalog's token prices: accepted and never forwarded (the answer is text).
    "audio": {"type": ["object", "null"], "description": "Dropped: audio output is not priced."},
    "modalities": {
        "type": ["array", "null"],
        "items": {"type": "string"},
        "description": "Dropped: the answer is text.",
    },
    "web_search_options": {"type": ["object", "null"], "description": "Dropped: web search is not priced."},
    "moderation": {"type": ["object", "null"], "description": "Dropped: a moderation model's run is not priced."},
}

USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": {"type": "number", "description": "What the request cost, USD."},
    },
    "required": ["prompt_tokens", "total_tokens", "cost"],
}
PRICE = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "USD per input token."},
        "completion": {"type": "string", "description": "USD per output token."},
    },
    "required": ["prompt", "completion"],
}

SCHEMAS: dict[str, Any] = {
    "OpenAIError": {
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "code": {"type": ["string", "null"]},
            "param": {"type": ["string", "null"]},
        },
        "required": ["message", "type", "code", "param"],
    },
    "OpenAIErrorResponse": {
        "type": "object",
        "properties": {"error": {"$ref": REF + "OpenAIError"}},
        "required": ["error"],
    },
    "ChatMessage": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "description": "`system`, `user`, `assistant`, `tool`, …"},
            "content": {
                "type": ["string", "array", "null"],
                "description": "Text, or content parts (`text`; `image_url`, `input_audio`, `file` if the model allows).",  # noqa: E501
            },
        },
        "required": ["role"],
    },
    "ChatCompletionRequest": {
        "type": "object",
        "properties": CHAT_PARAMETERS,
        "required": ["model", "messages"],
        "additionalProperties": False,
        "description": (
            "Every parameter of OpenAI's Chat Completions reference: forwarded where the provider takes it, "
            "dropped otherwise, priced where it changes the bill (`n`, `service_tier`, `prediction`). Any other "
            "field is refused: 400 `unsupported_parameter`, or `upstream_override_not_allowed` for fields that "
            "would redirect the call or carry credentials (`base_url`, `api_key`, `headers`, …)."
        ),
    },
    "ChatCompletion": {
        "type": "object",
        "description": "As the provider answered, with `model` set to the public model id.",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "description": "`chat.completion`"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": {"type": "object"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": USAGE,
        },
        "required": ["choices", "model", "usage"],
    },
    "EmbeddingRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "description": "An embedding model of `GET /v1/models` (`type: embedding`)."},
            "input": {
                "description": "A string, or up to 2048 strings or token arrays.",
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "string", "minLength": 1}},
                    {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 2048,
                        "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                    },
                ],
            },
            "encoding_format": {
                "enum": ["float", "base64", None],
                "description": "`base64`: little-endian float32 (the openai SDK's default, which it decodes).",
            },
            "dimensions": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "Fewer dimensions, for models whose `GET /v1/models` item allows it.",
            },
            "user": {"type": ["string", "null"]},
        },
        "required": ["model", "input"],
        "additionalProperties": False,
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "model": {"type": "string"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {"type": ["array", "string"], "items": {"type": "number"}},
                    },
                    "required": ["object", "index", "embedding"],
                },
            },
            "usage": USAGE,
        },
        "required": ["object", "model", "data", "usage"],
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "type": {"enum": ["chat", "embedding"]},
            "pricing": PRICE,
            "service_tiers": {
                "type": "object",
                "additionalProperties": PRICE,
                "description": "Priced `service_tier` values and their prices (absent: the standard price only).",
            },
            "context_length": {"type": ["integer", "null"], "description": "Prompt and output, tokens."},
            "max_output_tokens": {"type": ["integer", "null"], "description": "null for embedding models."},
            "supported_parameters": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Optional parameters forwarded whichever provider serves the request; other "
                "accepted ones are dropped.",
            },
            "dimensions": {"type": "integer", "description": "Embedding models: the vector's length."},
        },
        "required": [
            "id",
            "object",
            "created",
            "owned_by",
            "type",
            "pricing",
            "context_length",
            "max_output_tokens",
            "supported_parameters",
        ],
    },
    "KeyInfo": {
        "type": "object",
        "properties": {
            "data": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "type": {"enum": ["subscription", "credit"]},
                    "rpm": {"type": "integer"},
                    "tpm": {"type": "integer"},
                    "maxBudget": {"type": ["string", "null"], "description": "USD"},
                    "budgetReset": {"enum": ["daily", "weekly", "monthly", None]},
                    "expiresAt": {"type": ["string", "null"]},
                    "spend": {"type": "string", "description": "Lifetime spend, USD."},
                    "remaining": {
                        "type": "string",
                        "description": "What the key may still spend now, USD: credit keys the smaller of the "
                        "balance and what is left of `maxBudget` (in this period with `budgetReset`); subscription "
                        "keys what is left of the 5-hour budget.",
                    },
                    "window": {
                        "anyOf": [
                            {
                                "type": "object",
                                "properties": {
                                    "budget": {"type": "string"},
                                    "spent": {"type": "string"},
                                    "resetsAt": {"type": "string"},
                                },
                                "required": ["budget", "spent", "resetsAt"],
                                "additionalProperties": False,
                            },
                            {"type": "null"},
                        ],
                        "description": "The subscription's current 5-hour window; null for credit keys.",
                    },
                },
                "required": [
                    "id",
                    "name",
                    "type",
                    "rpm",
                    "tpm",
                    "maxBudget",
                    "budgetReset",
                    "expiresAt",
                    "spend",
                    "remaining",
                    "window",
                ],
                "additionalProperties": False,
            }
        },
        "required": ["data"],
        "additionalProperties": False,
    },
    "ModelList": {
        "type": "object",
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"$ref": REF + "Model"}}},
        "required": ["object", "data"],
    },
}


def _preflight(operation_id: str, methods: str) -> dict[str, Any]:
    """The CORS preflight of a ``/v1`` route (proxy/cors.py): no key, reads nothing."""
    origin = {**_HEADER, "description": "The request's `Origin`, echoed (never `*`)."}
    return {
        "operationId": operation_id,
        "tags": ["Inference"],
        "summary": "CORS preflight",
        "description": (
            "A browser's preflight, answered by the proxy without a key: from an origin of the template "
            "parameter `CorsAllowedOrigins`, 204 with `Access-Control-Allow-Origin` (that origin), "
            f"`Access-Control-Allow-Methods` ({methods}, OPTIONS), `Access-Control-Allow-Headers` (`authorization`, "
            "`content-type` and the headers the openai JS SDK sends: `x-stainless-*`, `openai-organization`, "
            "`openai-project`, `openai-beta`, `idempotency-key`) and `Access-Control-Max-Age` (7200). Any other "
            "origin, or CORS off (the default): 403 `origin_not_allowed`. Without `Origin`: 204 with `Allow`."
        ),
        "security": [],
        "parameters": [
            {"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "Access-Control-Request-Method", "in": "header", "required": False, "schema": {"type": "string"}},
            {
                "name": "Access-Control-Request-Headers",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "204": {
                "description": "Allowed (or not a preflight: `Allow` lists the route's methods).",
                "headers": {
                    "access-control-allow-origin": origin,
                    "access-control-allow-methods": _HEADER,
                    "access-control-allow-headers": _HEADER,
                    "access-control-max-age": _HEADER,
                    "vary": _HEADER,
                },
            },
            "403": _error("`origin_not_allowed`: the origin is not one of `CorsAllowedOrigins`."),
            "429": GATEWAY_THROTTLED,
        },
    }


PATHS: dict[str, Any] = {
    "/v1/chat/completions": {
        "post": {
            "operationId": "createChatCompletion",
            "tags": ["Inference"],
            "summary": "Create a chat completion",
            "description": (
                "OpenAI's `POST /chat/completions`, metered: the key's RPM and TPM, then the subscription's "
                "5-hour budget or, for a credit key, the balance and the key's `maxBudget`, are checked and the "
                "request's maximum cost reserved before it is forwarded to the cheapest healthy provider; the "
                "real cost is settled from the provider's `usage`, shown in `usage.cost`. With `stream: true` "
                "the answer is `text/event-stream` (`data: {…}` chunks, a usage chunk when "
                "`stream_options.include_usage` asked for it, then `data: [DONE]`), not cut at API Gateway's "
                "29 s. Errors the provider judges the client's own (400, 413, 422) pass through as the provider "
                "wrote them; nothing is charged for them."
            ),
            "security": [{"apiKey": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": REF + "ChatCompletionRequest"}}}},
            "responses": {
                "200": {
                    "description": "The completion (`usage.cost`, and `x-request-cost`: its cost in USD), or its "
                    "stream.",
                    "headers": {
                        **RATE_LIMIT_HEADERS,
                        "x-request-cost": {**_HEADER, "description": "What the request cost, USD (not streamed)."},
                    },
                    "content": {
                        JSON: {"schema": {"$ref": REF + "ChatCompletion"}},
                        # OpenAPI 3.1: the schema of an event stream describes each event.
                        "text/event-stream": {
                            "schema": {
                                "type": "object",
                                "description": (
                                    "Each server-sent event: `data` is a `chat.completion.chunk` as JSON (with "
                                    "`include_usage`, the last one carries `usage` with `cost`), then `[DONE]`."
                                ),
                                "properties": {"data": {"type": "string"}},
                                "required": ["data"],
                            }
                        },
                    },
                },
                "400": _error(
                    "`invalid_json`, `invalid_request`, `missing_model`, `unsupported_parameter`, "
                    "`unsupported_content`, `upstream_override_not_allowed`, `request_too_large` (could cost more "
                    "than a whole 5-hour budget or `maxBudget`); nothing charged."
                ),
                "401": UNAUTHORIZED,
                "402": _error(
                    "`insufficient_quota`: the balance does not cover the request's maximum cost, or the key's "
                    "`maxBudget` is spent."
                ),
                "404": _error("`model_not_found`: not in the catalog."),
                "413": _error("`request_too_large`: the body is over 4 MiB."),
                "422": {"description": "A provider's own refusal, passed through as it wrote it; nothing charged."},
                "429": THROTTLED,
                "502": _error(
                    "`upstream_unavailable`: no provider answered; `upstream_error`: the answer was unusable. "
                    "The reservation is released: nothing charged."
                ),
            },
        }
    },
    "/v1/models": {
        "get": {
            "operationId": "listModels",
            "tags": ["Inference"],
            "summary": "List the models",
            "description": "OpenAI's `GET /models`: the catalog's models with their prices (USD per token), "
            "context length, output cap and the parameters forwarded.",
            "security": [{"apiKey": []}],
            "responses": {
                "200": {
                    "description": "The models.",
                    "headers": {"x-request-id": RATE_LIMIT_HEADERS["x-request-id"]},
                    "content": {JSON: {"schema": {"$ref": REF + "ModelList"}}},
                },
                "401": UNAUTHORIZED,
                "429": GATEWAY_THROTTLED,
            },
        }
    },
    "/v1/models/{model+}": {
        "get": {
            "operationId": "retrieveModel",
            "tags": ["Inference"],
            "summary": "One model",
            "description": "OpenAI's `GET /models/{model}`. Model ids contain `/` "
            "(`/v1/models/deepseek/deepseek-chat-v3-0324`; `%2F`, as the openai SDK sends it, works too).",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "model+", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The model.",
                    "headers": {"x-request-id": RATE_LIMIT_HEADERS["x-request-id"]},
                    "content": {JSON: {"schema": {"$ref": REF + "Model"}}},
                },
                "401": UNAUTHORIZED,
                "404": _error("`model_not_found`: not in the catalog."),
                "429": GATEWAY_THROTTLED,
            },
        }
    },
    "/v1/embeddings": {
        "post": {
            "operationId": "createEmbedding",
            "tags": ["Inference"],
            "summary": "Create embeddings",
            "description": (
                "OpenAI's `POST /embeddings`, metered like chat: RPM and TPM, then the budget or balance; the "
                "most the input can cost (a token per byte) is reserved, the provider's `usage.prompt_tokens` "
                "settled and shown in `usage.cost`."
            ),
            "security": [{"apiKey": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": REF + "EmbeddingRequest"}}}},
            "responses": {
                "200": {
                    "description": "The vectors (`x-request-cost`: the cost in USD).",
                    "headers": {
                        **RATE_LIMIT_HEADERS,
                        "x-request-cost": {**_HEADER, "description": "What the request cost, USD."},
                    },
                    "content": {JSON: {"schema": {"$ref": REF + "EmbeddingList"}}},
                },
                "400": _error(
                    "`invalid_json`, `invalid_request`, `missing_model`, `unsupported_parameter`, "
                    "`upstream_override_not_allowed`, `request_too_large`; nothing charged."
                ),
                "401": UNAUTHORIZED,
                "402": _error("`insufficient_quota`: as for chat completions."),
                "404": _error("`model_not_found`: not in the catalog."),
                "413": _error("`request_too_large`: the body is over 4 MiB."),
                "422": {"description": "A provider's own refusal, passed through as it wrote it; nothing charged."},
                "429": THROTTLED,
                "502": _error("`upstream_unavailable`, `upstream_error`: nothing charged."),
            },
        }
    },
    "/v1/key": {
        "get": {
            "operationId": "getKeyInfo",
            "tags": ["Inference"],
            "summary": "The calling key's own limits and spend",
            "description": (
                "Read with the API key itself (`Bearer sk_live_…`), like OpenRouter's `GET /api/v1/key`: its "
                "limits, lifetime spend, and what it may still spend now. Not metered."
            ),
            "security": [{"apiKey": []}],
            "responses": {
                "200": {
                    "description": "The key.",
                    "headers": {"x-request-id": RATE_LIMIT_HEADERS["x-request-id"]},
                    "content": {JSON: {"schema": {"$ref": REF + "KeyInfo"}}},
                },
                "401": UNAUTHORIZED,
                "429": GATEWAY_THROTTLED,
            },
        }
    },
}

for _path, _operation_id, _methods in (
    ("/v1/chat/completions", "preflightChatCompletion", "POST"),
    ("/v1/models", "preflightListModels", "GET"),
    ("/v1/models/{model+}", "preflightRetrieveModel", "GET"),
    ("/v1/embeddings", "preflightCreateEmbedding", "POST"),
    ("/v1/key", "preflightGetKeyInfo", "GET"),
):
    PATHS[_path]["options"] = _preflight(_operation_id, _methods)
PATHS["/v1/models/{model+}"]["options"]["parameters"].append(
    {"name": "model+", "in": "path", "required": True, "schema": {"type": "string"}}
)
