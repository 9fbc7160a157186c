"""The official `openai` SDK, unchanged, against the local stack's /v1 (gateway → proxy → built-in
upstream, DynamoDB Local for limits and billing): plain and streamed, sync and async."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from llm_platform.domain import accounts, api_keys, billing
from llm_platform.domain.accounts import Caller

MODEL = "deepseek/deepseek-chat-v3-0324"  # the model of the public docs, served by the built-in upstream


@pytest.fixture
def subscription_key(local_stack) -> tuple[str, str]:
    """(API key, management key) of a fresh account with a pro subscription."""
    created = accounts.create_account("sdk-user")
    caller = Caller(created.account_id, created.management_key_id)
    subscription = billing.grant_subscription(created.account_id, "pro")
    _, plaintext = api_keys.create_subscription_key(caller, "sdk", subscription.subscription_id)
    return plaintext, created.management_key


def sdk(local_stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_stack.api_url}/v1", api_key=key, max_retries=0)


def test_plain_completion_with_usage_and_rate_headers(local_stack, subscription_key) -> None:
    key, management_key = subscription_key
    raw = sdk(local_stack, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    completion = raw.parse()
    assert completion.model == MODEL
    assert completion.choices[0].message.content == "[local] Hello"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    assert raw.headers["x-ratelimit-limit-requests"] == "200"  # pro plan
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < 200
    # And the request shows in the management API's usage
    usage = httpx.get(f"{local_stack.api_url}/api/usage", headers={"Authorization": f"Bearer {management_key}"})
    [entry] = usage.json()["data"]
    assert entry["usage"]["lifetime"]["requests"] == 1 and entry["usage"]["lifetime"]["totalTokens"] > 0
    assert entry["usage"]["currentBudgetWindow"]["requests"] == 1
    assert entry["usage"]["currentBudgetWindow"]["spend"] != "0.00"


def test_streamed_completion_arrives_chunk_by_chunk_with_usage(local_stack, subscription_key) -> None:
    key, _ = subscription_key
    arrivals, text, usage = [], [], None
    stream = sdk(local_stack, key).chat.completions.create(
        model="test/story",
        messages=[{"role": "user", "content": "tell"}],
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},  # the usage chunk comes only when asked for
    )
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert len("".join(text).split()) == 40
    assert usage is not None and usage.completion_tokens == 40
    # Chunks came as they were generated (the built-in model waits between words), not in one burst
    assert arrivals[-1] - arrivals[0] > 39 * 0.02 * 0.5


def test_async_client_plain_and_streamed(local_stack, subscription_key) -> None:
    key, _ = subscription_key

    async def run() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=f"{local_stack.api_url}/v1", api_key=key, max_retries=0)
        plain = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "async hi"}])
        streamed = []
        async for chunk in await client.chat.completions.create(
            model="test/echo", messages=[{"role": "user", "content": "streamed async hi"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                streamed.append(chunk.choices[0].delta.content)
        await client.close()
        return plain.choices[0].message.content, "".join(streamed)

    plain, streamed = asyncio.run(run())
    assert plain == "[local] async hi" and streamed == "streamed async hi"


def test_models_list(local_stack, subscription_key) -> None:
    ids = {m.id for m in sdk(local_stack, subscription_key[0]).models.list()}
    assert {MODEL, "test/echo", "test/story"} <= ids


def test_sdk_errors_map_to_the_documented_statuses(local_stack) -> None:
    created = accounts.create_account("sdk-errors")
    caller = Caller(created.account_id, created.management_key_id)
    key, plaintext = api_keys.create_credit_key(caller, "limited", None, 1, None)
    client = sdk(local_stack, plaintext)
    # No balance yet → 402 insufficient_quota
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402 and refused.value.code == "insufficient_quota"
    accounts.grant_credit(created.account_id, 1_000_000, "test")
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    # rpm 1 → the second request in the minute is rate limited, with retry-after
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.code == "rate_limit_exceeded" and int(limited.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no/such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"api_base": "http://evil.example"}
        )
    api_keys.revoke_key(caller, key.key_id)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_the_documented_curl_example_against_v1(local_stack, subscription_key) -> None:
    response = httpx.post(
        f"{local_stack.api_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {subscription_key[0]}", "Content-Type": "application/json"},
        content=b'{"model": "deepseek/deepseek-chat-v3-0324", "messages": [{"role": "user", "content": "Hello"}]}',
    )
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "[local] Hello"
