"""The OpenAPI description of ``/v1`` (OpenAI's wire format), merged into the whole API's document by
``llm_platform.api.openapi``. Static data: the proxy is a raw ASGI app with no schema of its own, and it
never imports this module. The parameters listed are exactly ``asgi.FORWARDED_PARAMETERS`` (a unit test
checks it); anything else is refused, as the request schema says."""

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
    "max_tokens": {"type": ["integer", "null"], "minimum": 1, "description": "At most the model's `maxOutputTokens`."},
    "max_completion_tokens": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "As `max_tokens`; the larger wins.",
    },
    "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 16},
    "stream": {"type": "boolean", "description": "Server-sent events, usage included in the last chunk."},
    "stream_options": {"type": ["object", "null"]},
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
            "OpenAI's chat parameters. Any other field is refused: 400 `unsupported_parameter`, or "
            "`upstream_override_not_allowed` for fields that would redirect the call (`base_url`, `api_key`, …)."
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
            "usage": {
                "type": ["object", "null"],
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
        "required": ["choices", "model"],
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
        "required": ["id", "object", "created", "owned_by"],
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
                "real cost is settled from the provider's `usage`. With `stream: true` the answer is "
                "`text/event-stream` (`data: {…}` chunks, usage in the last one, then `data: [DONE]`), not cut "
                "at API Gateway's 29 s. Errors the provider judges the client's own (400, 413, 422) pass "
                "through as the provider wrote them; nothing is charged for them."
            ),
            "security": [{"apiKey": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": REF + "ChatCompletionRequest"}}}},
            "responses": {
                "200": {
                    "description": "The completion (`x-request-cost`: its cost in USD), or its stream.",
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
                                    "Each server-sent event: `data` is a `chat.completion.chunk` as JSON (the last "
                                    "one carries `usage`), then `[DONE]`."
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
            "description": "OpenAI's `GET /models`: the catalog's public model ids.",
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
