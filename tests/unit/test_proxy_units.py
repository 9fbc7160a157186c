"""Proxy pieces without I/O: pricing, catalog, request validation, token fallback, headers, secrets."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from llm_platform import secrets
from llm_platform.domain.windows import minute_window
from llm_platform.proxy.asgi import _token_counts, _validate
from llm_platform.proxy.catalog import CatalogError, parse_catalog
from llm_platform.proxy.errors import ProxyError
from llm_platform.proxy.keys import KeySnapshot
from llm_platform.proxy.metering import RateView
from llm_platform.proxy.parameters import UPSTREAM_OVERRIDES
from llm_platform.proxy.pricing import (
    cost_micros,
    default_output_cap,
    estimate_tokens,
    input_token_bound,
    input_token_estimate,
    per_million_micros,
)


def _catalog(**overrides) -> dict:
    model = {
        "id": "m/x",
        "inputPerMTokUsd": "0.40",
        "outputPerMTokUsd": "1.30",
        "maxOutputTokens": 1000,
        "providers": [
            {
                "name": "pricey",
                "baseUrl": "https://a.example/v1",
                "model": "x",
                "inputCostPerMTokUsd": "0.3",
                "outputCostPerMTokUsd": "1.2",
            },
            {
                "name": "cheap",
                "baseUrl": "https://b.example/v1/",
                "model": "x",
                "inputCostPerMTokUsd": "0.1",
                "outputCostPerMTokUsd": "0.2",
            },
        ],
    }
    model.update(overrides)
    return {"models": [model]}


def test_costs_are_integer_micro_dollars_rounded_up() -> None:
    # $0.40 / 1M input, $1.30 / 1M output
    price_in, price_out = per_million_micros(Decimal("0.40")), per_million_micros(Decimal("1.30"))
    assert (price_in, price_out) == (400_000, 1_300_000)
    assert cost_micros(1_000_000, 0, price_in, price_out) == 400_000
    assert cost_micros(1, 1, price_in, price_out) == 2  # 1.7 micro-dollars round up, never down to 0
    assert cost_micros(0, 0, price_in, price_out) == 0
    with pytest.raises(ValueError):
        per_million_micros(Decimal("0.0000001"))


def test_token_estimates_and_bounds() -> None:
    assert estimate_tokens("") == 0 and estimate_tokens("a") == 1 and estimate_tokens("a" * 9) == 3
    # TPM: ~3 bytes a token of text, plus framing and declared media
    assert input_token_estimate(0, 1, 0) == 12 and input_token_estimate(30, 2, 500) == 10 + 8 + 8 + 500
    # Money: every byte of the body may be a token
    assert input_token_bound(1000, 2, 0) == 1000 + 8 + 8 and input_token_bound(10, 1, 2000) == 10 + 4 + 8 + 2000


def test_catalog_sorts_providers_cheapest_first_and_defaults_max_output() -> None:
    model = parse_catalog(_catalog())["m/x"]
    assert [p.name for p in model.providers] == ["cheap", "pricey"]
    assert model.providers[0].base_url == "https://b.example/v1"
    assert model.default_max_output_tokens == 1000


@pytest.mark.parametrize(
    "overrides",
    [
        {"providers": []},
        {"defaultMaxOutputTokens": 2000},
        {"maxOutputTokens": 0},
        {
            "providers": [
                {
                    "name": "p",
                    "baseUrl": "ftp://x",
                    "model": "x",
                    "inputCostPerMTokUsd": "1",
                    "outputCostPerMTokUsd": "1",
                }
            ]
        },
    ],
)
def test_bad_catalogs_are_refused(overrides) -> None:
    with pytest.raises(CatalogError):
        parse_catalog(_catalog(**overrides))


MODEL = parse_catalog(_catalog())["m/x"]
MESSAGES = [{"role": "user", "content": "hi"}]


def test_valid_request_takes_max_tokens_or_leaves_the_default_to_the_key() -> None:
    assert _validate({"model": "m/x", "messages": MESSAGES}, MODEL)[0].max_output is None
    request = _validate({"model": "m/x", "messages": MESSAGES, "max_tokens": 50, "n": 2, "stream": True}, MODEL)[0]
    assert (request.max_output, request.n, request.stream) == (50, 2, True)


@pytest.mark.parametrize("field", sorted(UPSTREAM_OVERRIDES))
def test_client_supplied_upstreams_are_refused(field) -> None:
    with pytest.raises(ProxyError) as refused:
        _validate({"model": "m/x", "messages": MESSAGES, field: "http://attacker.example"}, MODEL)
    assert (refused.value.status, refused.value.code, refused.value.param) == (
        400,
        "upstream_override_not_allowed",
        field,
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "m/x", "messages": "hi"}, "messages"),
        ({"model": "m/x", "messages": [1]}, "messages"),
        ({"model": "m/x", "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
        ({"model": "m/x", "messages": MESSAGES, "max_completion_tokens": 1001}, "max_completion_tokens"),
        ({"model": "m/x", "messages": MESSAGES, "n": 17}, "n"),
        ({"model": "m/x", "messages": MESSAGES, "stream_options": []}, "stream_options"),
    ],
)
def test_invalid_requests_name_the_parameter(body, param) -> None:
    with pytest.raises(ProxyError) as refused:
        _validate(body, MODEL)
    assert refused.value.status == 400 and refused.value.param == param


def test_unknown_model_is_404() -> None:
    with pytest.raises(ProxyError) as refused:
        _validate({"model": "nope", "messages": MESSAGES}, None)
    assert (refused.value.status, refused.value.code) == (404, "model_not_found")


def test_token_counts_prefer_upstream_usage_and_never_fall_to_zero() -> None:
    body = {"messages": [{"role": "user", "content": "a b c d e f g h"}]}
    assert _token_counts({"prompt_tokens": 7, "completion_tokens": 3}, body, "x") == (7, 3)
    assert _token_counts(None, body, "twelve chars") == (4, 3)
    assert _token_counts({"prompt_tokens": "7"}, {"messages": [{"role": "user", "content": ""}]}, "") == (1, 0)


def test_rate_headers_follow_the_instance_view_and_reset_each_minute() -> None:
    key = KeySnapshot(
        "h",
        "h",
        "key_1",
        "acct",
        True,
        rpm=5,
        tpm=100,
        max_budget_micros=None,
        subscription_id=None,
        budget_micros=None,
        window_anchor=None,
    )
    now = datetime(2026, 1, 1, 10, 0, 45, tzinfo=UTC)
    view, minute = RateView(), minute_window(now)
    view.admitted(key, minute, now, tokens=30)  # reserved 30 tokens
    view.settled("key_1", minute, 10)  # it used 40: settle adds the difference
    headers = view.admitted(key, minute, now, tokens=0)
    assert headers["x-ratelimit-remaining-requests"] == "3" and headers["x-ratelimit-remaining-tokens"] == "60"
    assert headers["x-ratelimit-reset-requests"] == "15s" and headers["x-ratelimit-limit-tokens"] == "100"
    later = datetime(2026, 1, 1, 10, 1, 1, tzinfo=UTC)
    assert view.admitted(key, minute_window(later), later, tokens=0)["x-ratelimit-remaining-requests"] == "4"


def test_secret_references(monkeypatch) -> None:
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "s3cret")
    secrets._cache.clear()
    assert secrets.resolve("env:UPSTREAM_TEST_KEY") == "s3cret"
    assert secrets.resolve(None) is None
    with pytest.raises(secrets.SecretError):
        secrets.resolve("env:NOT_SET_ANYWHERE")
    with pytest.raises(secrets.SecretError):
        secrets.resolve("vault:x")


def test_ssm_secrets_are_read_under_the_stack_prefix(tables, monkeypatch) -> None:
    import boto3

    from llm_platform.config import get_settings

    monkeypatch.setenv("PROVIDER_SECRETS_PREFIX", "/stack-a/providers/")
    get_settings.cache_clear()
    boto3.client("ssm").put_parameter(Name="/stack-a/providers/deepseek", Value="sk-upstream", Type="SecureString")
    secrets._cache.clear()
    assert secrets.resolve("ssm:deepseek") == "sk-upstream"


def test_the_proxy_imports_nothing_heavy() -> None:
    """Cold start is a product feature: no openai, stripe, web3, pydantic or Powertools in the proxy, and
    no httpx either (the provider call has its own small client, proxy/http1.py)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys, json; sys.path.insert(0, 'functions/proxy'); import app; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        json.loads(
            subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout
        )
    )
    assert loaded.isdisjoint({"openai", "stripe", "web3", "pydantic", "aws_lambda_powertools", "starlette", "httpx"})
    assert {"boto3", "llm_platform"} <= loaded


def test_provider_extensions_are_refused_by_the_allowlist() -> None:
    # OpenRouter's routing and fallbacks, not in OpenAI's reference: they would change what the operator pays
    for field in ("models", "provider", "plugins", "transforms", "route", "reasoning"):
        with pytest.raises(ProxyError) as refused:
            _validate({"model": "m/x", "messages": MESSAGES, field: "x"}, MODEL)
        assert (refused.value.code, refused.value.param) == ("unsupported_parameter", field)


def test_the_larger_output_cap_wins_and_null_means_the_default() -> None:
    both = {"model": "m/x", "messages": MESSAGES, "max_tokens": 256, "max_completion_tokens": 1}
    assert _validate(both, MODEL)[0].max_output == 256
    assert _validate({"model": "m/x", "messages": MESSAGES, "max_tokens": None}, MODEL)[0].max_output is None


@pytest.mark.parametrize(
    ("model_default", "tpm", "prompt", "n", "prediction", "expected"),
    [
        (4096, 100_000, 20, 1, 0, 4096),  # the key's TPM has room: the model's default
        (4096, 3_333, 20, 1, 0, 3_313),  # the standard plan's TPM: what is left after the prompt
        (4096, 3_333, 21, 2, 0, 1_656),  # n choices share it: (3333 - 21) // 2
        (4096, 3_333, 20, 1, 300, 3_013),  # a prediction's tokens are output too
        (4096, 3_333, 3_333, 1, 0, 4096),  # no room at all: the default stands, admission refuses it
        (256, 3_333, 20, 1, 0, 256),  # a smaller default is never raised
    ],
)
def test_a_request_without_an_output_cap_gets_what_the_keys_tpm_leaves(
    model_default, tpm, prompt, n, prediction, expected
) -> None:
    cap = default_output_cap(model_default, tpm, prompt, n, prediction)
    assert cap == expected
    if (tpm - prompt) // n - prediction >= 1:  # whenever one output token fits, the whole request fits the TPM
        assert prompt + (cap + prediction) * n <= tpm


def test_media_parts_need_a_declared_token_cost() -> None:
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
            ],
        }
    ]
    with pytest.raises(ProxyError) as refused:
        _validate({"model": "m/x", "messages": image}, MODEL)
    assert refused.value.code == "unsupported_content"
    vision = parse_catalog(_catalog(mediaPartTokens=3000))["m/x"]
    assert _validate({"model": "m/x", "messages": image}, vision)[0].media_parts == 1


def test_duplicate_or_malformed_catalog_entries_are_catalog_errors() -> None:
    doubled = _catalog()
    doubled["models"].append(dict(doubled["models"][0]))
    with pytest.raises(CatalogError, match="twice"):
        parse_catalog(doubled)
    with pytest.raises(CatalogError, match="KeyError"):
        parse_catalog({"models": [{"id": "x"}]})


def test_a_bad_catalog_fails_the_readiness_check(tmp_path, monkeypatch) -> None:
    import asyncio

    from llm_platform.proxy import catalog
    from llm_platform.proxy.asgi import create_app

    (tmp_path / "models.json").write_text('{"models": [{"id": "broken"}]}')
    monkeypatch.setenv("MODEL_CATALOG_FILE", str(tmp_path / "models.json"))
    catalog.models.cache_clear()
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        asyncio.run(create_app()({"type": "http", "method": "GET", "path": "/healthz", "headers": []}, receive, send))
    finally:
        catalog.models.cache_clear()
    assert sent[0]["status"] == 500
    assert b"internal_error" in sent[1]["body"]


# ------------------------------------------------------------------ what a stream without usage is billed for


def test_a_stream_without_usage_counts_tool_calls_reasoning_and_refusals() -> None:
    from llm_platform.proxy.generation import Generation

    # Given a stream of tool-call, reasoning and refusal deltas (no content, no usage), in two choices
    generation = Generation()
    chunks = [
        {
            "id": "c1",
            "created": 1,
            "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Think "}}],
        },
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hard."}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}}]},
        {"choices": [{"index": 1, "delta": {"refusal": "I can't help with that."}}]},
        {
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
                {"index": 1, "delta": {}, "finish_reason": "stop"},
            ]
        },
    ]
    for chunk in chunks:
        generation.add(chunk)
    # Then everything generated counts, and the merged completion is what a non-streamed answer carries
    text = generation.generated_text()
    for part in ("Think hard.", "get_weather", '{"city": "Paris"}', "I can't help with that."):
        assert part in text
    assert generation.finished and generation.usage is None
    completion = generation.completion("test/x")
    first, second = completion["choices"]
    assert first["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert first["finish_reason"] == "tool_calls" and first["message"]["content"] is None
    assert second["message"]["refusal"] == "I can't help with that." and completion["model"] == "test/x"
    _, output_tokens = _token_counts(None, {"messages": [{"role": "user", "content": "x"}]}, text)
    assert output_tokens >= len(text) // 4 > 0


def test_a_stream_cut_before_any_finish_is_not_finished() -> None:
    from llm_platform.proxy.generation import Generation

    generation = Generation()
    generation.add({"choices": [{"index": 0, "delta": {"content": "half an ans"}}]})
    assert not generation.finished and generation.generated_text() == "half an ans"


def test_the_prompt_count_covers_every_part_but_media_payloads() -> None:
    from llm_platform.proxy.asgi import _prompt_text

    body = {
        "messages": [
            {"role": "system", "content": "rules"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:AAAA"}}],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "result text"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "finds things"}}],
    }
    text = _prompt_text(body)
    for part in ("rules", "look", "lookup", '{"q": 1}', "result text", "finds things"):
        assert part in text
    assert "data:AAAA" not in text and "assistant" not in text


def test_the_in_flight_count_returns_to_zero_whatever_ends_a_request(tables) -> None:
    """The count decides whether a DynamoDB call may block the event loop: one left behind would send every
    later request to the pool, one missing would block the loop under a crowd."""
    import asyncio

    from llm_platform.proxy.asgi import create_app

    app = create_app()
    counts: list[int] = []

    def scope(method: str, path: str) -> dict:
        return {"type": "http", "method": method, "path": path, "headers": []}

    async def sink(message: dict) -> None:
        counts.append(app._in_flight)

    async def body_then_gone() -> dict:
        return {"type": "http.disconnect"}

    async def empty_body() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def scenario() -> list[int]:
        after = []
        # Given a 404, a 401 (no key), a preflight, and a client gone before its body arrived
        for method, path, receive in (
            ("GET", "/v1/nothing", empty_body),
            ("POST", "/v1/chat/completions", empty_body),
            ("OPTIONS", "/v1/chat/completions", empty_body),
            ("POST", "/v1/chat/completions", body_then_gone),
        ):
            await app(scope(method, path), receive, sink)
            after.append(app._in_flight)
        # And a request cancelled while it waits for its body
        waiting = asyncio.Event()

        async def never() -> dict:
            waiting.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        task = asyncio.create_task(app(scope("POST", "/v1/chat/completions"), never, sink))
        await waiting.wait()
        in_flight_while_waiting = app._in_flight
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return [*after, in_flight_while_waiting, app._in_flight]

    # Then each counted itself while it was served, and nothing is left counted after any of them
    assert asyncio.run(scenario()) == [0, 0, 0, 0, 1, 0]
    assert counts and set(counts) == {1}


def test_a_reservation_deadline_follows_the_heartbeats_but_never_passes_the_longest_request(
    tables, monkeypatch
) -> None:
    from datetime import timedelta

    from llm_platform.config import ConfigError, get_settings
    from llm_platform.proxy.metering import reservation_deadline

    admitted = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    # Given the defaults: 180 s after admission or the latest heartbeat, 900 s at most
    assert reservation_deadline(admitted, admitted) == admitted + timedelta(seconds=180)
    assert reservation_deadline(admitted, admitted + timedelta(seconds=600)) == admitted + timedelta(seconds=780)
    assert reservation_deadline(admitted, admitted + timedelta(seconds=800)) == admitted + timedelta(seconds=900)
    # And a heartbeat that could not keep a deadline is a configuration error, said at the first use
    monkeypatch.setenv("RESERVATION_HEARTBEAT_SECONDS", "180")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="RESERVATION_HEARTBEAT_SECONDS"):
        get_settings()
    monkeypatch.setenv("RESERVATION_HEARTBEAT_SECONDS", "0.5")
    get_settings.cache_clear()
    assert get_settings().reservation_heartbeat_seconds == 0.5
    get_settings.cache_clear()
