"""OpenAI compatibility, second round, with the official `openai` SDK (sync and async, plain and streamed)
against the local stack's /v1: gateway → proxy → built-in upstream, DynamoDB Local for limits and billing."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import pytest

from llm_platform.domain import accounts, api_keys
from llm_platform.domain.accounts import Caller
from llm_platform.proxy.parameters import UPSTREAM_OVERRIDES
from local_stack.upstream import count_tokens, embedding_vector
from tests.support.openai_reference import REFERENCE_VALUES

MODEL = "deepseek/deepseek-chat-v3-0324"
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def credit(local_stack) -> tuple[str, str]:
    """(API key, account id) of a fresh account holding $5."""
    created = accounts.create_account("sdk-compat")
    caller = Caller(created.account_id, created.management_key_id)
    accounts.grant_credit(created.account_id, 5_000_000, "test")
    _, plaintext = api_keys.create_credit_key(caller, "sdk", None, 1000, 10_000_000)
    return plaintext, created.account_id


def sdk(local_stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_stack.api_url}/v1", api_key=key, max_retries=0)


def async_sdk(local_stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{local_stack.api_url}/v1", api_key=key, max_retries=0)


def balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


# ------------------------------------------------------------------ stream_options.include_usage


def test_a_stream_without_include_usage_works_with_choices_0_sync(local_stack, credit) -> None:
    # When the common pattern reads chunk.choices[0] of every chunk of a stream that did not ask for usage
    stream = sdk(local_stack, credit[0]).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    # Then no chunk breaks it, and the answer is whole
    assert text == "[local] Hello there"


def test_a_stream_without_include_usage_works_with_choices_0_async(local_stack, credit) -> None:
    async def run() -> str:
        async with async_sdk(local_stack, credit[0]) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": False}
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    assert asyncio.run(run()) == "[local] Hello there"


def test_a_stream_with_include_usage_ends_with_usage_and_its_cost_sync(local_stack, credit) -> None:
    key, account_id = credit
    before = balance(account_id)
    chunks = list(
        sdk(local_stack, key).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [] and all(c.choices for c in chunks[:-1])
    assert last.usage.completion_tokens == count_tokens("[local] Hello there")
    # usage.cost is what left the balance, in USD
    assert Decimal(str(last.usage.cost)) * 1_000_000 == before - balance(account_id)


def test_a_stream_with_include_usage_ends_with_usage_and_its_cost_async(local_stack, credit) -> None:
    async def run():
        async with async_sdk(local_stack, credit[0]) as client:
            stream = await client.chat.completions.create(
                model="test/story", messages=MESSAGES, max_tokens=5, stream=True, stream_options={"include_usage": True}
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.cost > 0


# ------------------------------------------------------------------ usage.cost, x-request-id


def test_a_plain_answer_carries_its_cost_and_a_request_id_sync(local_stack, credit) -> None:
    key, account_id = credit
    before = balance(account_id)
    raw = sdk(local_stack, key).chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    completion = raw.parse()
    spent = before - balance(account_id)
    assert spent > 0 and Decimal(str(completion.usage.cost)) * 1_000_000 == spent
    assert raw.headers["x-request-id"] and Decimal(raw.headers["x-request-cost"]) * 1_000_000 == spent


def test_a_plain_answer_carries_its_cost_async(local_stack, credit) -> None:
    async def run():
        async with async_sdk(local_stack, credit[0]) as client:
            raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            return raw.headers, raw.parse()

    headers, completion = asyncio.run(run())
    assert completion.usage.cost > 0 and headers["x-request-id"]


def test_errors_carry_a_request_id(local_stack, credit) -> None:
    client = sdk(local_stack, credit[0])
    for call in (
        lambda: client.chat.completions.create(model="no/such", messages=MESSAGES),
        lambda: client.models.retrieve("no/such-model"),
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"api_key": "x"}),
        lambda: sdk(local_stack, "sk_live_unknown").models.list(),
        lambda: client.embeddings.create(model="test/embed", input=""),
    ):
        with pytest.raises(openai.APIStatusError) as failed:
            call()
        # The SDK shows it as the error's request_id
        assert failed.value.request_id and failed.value.request_id == failed.value.response.headers["x-request-id"]


# ------------------------------------------------------------------ every parameter of the reference


def test_the_table_is_the_sdks_whole_reference() -> None:
    # The parameters of the installed SDK's chat.completions.create: the table below sends each one
    from typing import get_type_hints

    from openai.types.chat import completion_create_params

    sdk_parameters = set(get_type_hints(completion_create_params.CompletionCreateParamsBase))
    handled = {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options"}
    assert sdk_parameters - handled == set(REFERENCE_VALUES)


@pytest.mark.parametrize("name", sorted(REFERENCE_VALUES))
def test_every_parameter_of_the_reference_is_accepted(local_stack, credit, name) -> None:
    completion = sdk(local_stack, credit[0]).chat.completions.create(
        model="openai/gpt-5-mini", messages=MESSAGES, **{name: REFERENCE_VALUES[name]}
    )
    assert completion.choices[0].message.content == "[local] Hello there"


def test_every_parameter_at_once_streamed_async(local_stack, credit) -> None:
    async def run() -> str:
        async with async_sdk(local_stack, credit[0]) as client:
            stream = await client.chat.completions.create(
                model="openai/gpt-5-mini", messages=MESSAGES, stream=True, **REFERENCE_VALUES
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()) == "[local] Hello there"


@pytest.mark.parametrize("field", sorted(UPSTREAM_OVERRIDES))
def test_each_upstream_override_is_refused(local_stack, credit, field) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(local_stack, credit[0]).chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={field: "https://attacker.example/v1"}
        )
    assert refused.value.code == "upstream_override_not_allowed" and refused.value.param == field


def test_a_priced_service_tier_is_billed_at_its_price(local_stack, credit) -> None:
    from llm_platform.proxy import catalog

    key, account_id = credit
    client = sdk(local_stack, key)
    tiers = catalog.models()["openai/gpt-5-mini"].service_tiers
    for tier in ("flex", "priority"):
        before = balance(account_id)
        completion = client.chat.completions.create(model="openai/gpt-5-mini", messages=MESSAGES, service_tier=tier)
        usage = completion.usage
        expected = -(-(usage.prompt_tokens * tiers[tier].input + usage.completion_tokens * tiers[tier].output) // 10**6)
        assert before - balance(account_id) == expected, tier
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, service_tier="flex")
    assert refused.value.param == "service_tier"


# ------------------------------------------------------------------ models


def test_models_list_and_retrieve(local_stack, credit) -> None:
    client = sdk(local_stack, credit[0])
    listed = {m.id: m for m in client.models.list()}
    deepseek = listed[MODEL]
    assert deepseek.pricing == {"prompt": "0.0000004", "completion": "0.0000013"}
    assert deepseek.context_length > deepseek.max_output_tokens > 0
    assert listed["test/embed"].type == "embedding"
    # models.retrieve sends the id's "/" as %2F
    retrieved = client.models.retrieve(MODEL)
    assert retrieved.id == MODEL and retrieved.pricing == deepseek.pricing
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no/such-model")
    assert missing.value.code == "model_not_found"

    async def run():
        async with async_sdk(local_stack, credit[0]) as async_client:
            return await async_client.models.retrieve("openai/gpt-5-mini")

    assert asyncio.run(run()).service_tiers["flex"]["prompt"] == "0.00000015"


# ------------------------------------------------------------------ embeddings


def test_embeddings_sync_base64_by_default_and_float(local_stack, credit) -> None:
    key, account_id = credit
    client = sdk(local_stack, key)
    before = balance(account_id)
    # The SDK asks for base64 by default and decodes it
    response = client.embeddings.create(model="test/embed", input=["first text", "second"])
    assert [d.embedding for d in response.data] == [
        embedding_vector("test/embed", "first text", 16),
        embedding_vector("test/embed", "second", 16),
    ]
    tokens = count_tokens("first text") + count_tokens("second")
    assert response.usage.prompt_tokens == tokens and response.model == "test/embed"
    assert Decimal(str(response.usage.cost)) * 1_000_000 == before - balance(account_id) > 0
    floats = client.embeddings.create(model="test/embed", input="first text", encoding_format="float", dimensions=4)
    assert floats.data[0].embedding == embedding_vector("test/embed", "first text", 4)


def test_embeddings_async_with_token_arrays(local_stack, credit) -> None:
    async def run():
        async with async_sdk(local_stack, credit[0]) as client:
            return await client.embeddings.with_raw_response.create(model="test/embed", input=[[1, 2], [3]])

    raw = asyncio.run(run())
    response = raw.parse()
    assert raw.headers["x-request-id"] and response.usage.prompt_tokens == 3
    assert response.data[1].embedding == embedding_vector("test/embed", [3], 16)


def test_embeddings_of_a_catalog_model_through_the_local_stack(local_stack, credit) -> None:
    response = sdk(local_stack, credit[0]).embeddings.create(
        model="openai/text-embedding-3-small", input="hello", dimensions=256
    )
    assert len(response.data[0].embedding) == 256
