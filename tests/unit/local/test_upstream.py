"""local_stack.upstream: the deterministic OpenAI-compatible model server, driven in process (httpx.ASGITransport)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from local_stack.upstream import (
    EMBEDDING_MODELS,
    STORY_WORDS,
    UPSTREAM_MODELS,
    ConnectionDropped,
    build_upstream,
    count_tokens,
    prompt_tokens,
)

pytestmark = pytest.mark.anyio
COMPLETIONS = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "hello there  world"},
]
MESSAGES_PROMPT_TOKENS = (3 + 3) + (2 + 3) + (2 + 3) + (3 + 3)  # words + 3 per message


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(**options: Any) -> httpx.AsyncClient:
    app = build_upstream(chunk_delay=0, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://upstream")


async def complete(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post(COMPLETIONS, json={"messages": MESSAGES, **body})


def parse_stream(response: httpx.Response) -> tuple[list[dict[str, Any]], str]:
    """(JSON chunks, the last data line) of an SSE body; every frame must be `data: …` + blank line."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    datas = [frame.removeprefix("data: ") for frame in frames[:-1]]
    assert all(frame.startswith("data: ") for frame in frames[:-1])
    return [json.loads(d) for d in datas[:-1]], datas[-1]


def test_count_tokens_is_words_with_a_minimum_of_one() -> None:
    assert count_tokens("") == 0
    assert count_tokens("   ") == 1
    assert count_tokens("one") == 1
    assert count_tokens(" two\twords\n") == 2
    parts = [{"type": "text", "text": "a b"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text"}]
    assert prompt_tokens([{"role": "user", "content": parts}, {"role": "assistant", "content": None}]) == 2 + 3 + 3
    assert prompt_tokens(MESSAGES) == MESSAGES_PROMPT_TOKENS


async def test_models_lists_every_model_in_openai_format() -> None:
    # Given a healthy upstream / When its models are listed
    async with client() as http:
        response = await http.get("/v1/models")
    # Then they are all there, in OpenAI's list format
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(UPSTREAM_MODELS + EMBEDDING_MODELS)
    assert {"test/echo", "test/story", "test/no-usage", "test/cutoff", "openai/gpt-4o-mini"} <= set(UPSTREAM_MODELS)
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"] == model["id"].split("/")[0]


async def test_echo_replies_with_the_last_user_message_and_counts_usage() -> None:
    # Given a conversation / When test/echo completes it
    async with client(name="primary") as http:
        response = await complete(http, model="test/echo", temperature=0.3)
        again = await complete(http, model="test/echo", temperature=0.3)
    # Then the reply is the last user message, and usage follows count_tokens
    assert response.status_code == 200
    assert response.headers["x-upstream-name"] == "primary"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "test/echo"
    assert body["id"].startswith("chatcmpl-")
    assert body["system_fingerprint"] == "fp_primary"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "hello there  world"
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": MESSAGES_PROMPT_TOKENS,
        "completion_tokens": 3,
        "total_tokens": MESSAGES_PROMPT_TOKENS + 3,
    }
    # And the same request gives the same bytes (deterministic)
    assert again.content == response.content


async def test_echo_reads_text_content_parts() -> None:
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "this"},
    ]
    async with client() as http:
        response = await http.post(
            COMPLETIONS, json={"model": "test/echo", "messages": [{"role": "user", "content": parts}]}
        )
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "look at\nthis"
    assert body["usage"]["prompt_tokens"] == 3 + 3
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("model", ["deepseek/deepseek-chat-v3-0324", "openai/gpt-4o-mini"])
async def test_public_doc_models_echo_with_a_local_prefix(model: str) -> None:
    async with client() as http:
        body = (await complete(http, model=model)).json()
    assert body["choices"][0]["message"]["content"] == "[local] hello there  world"
    assert body["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("field", "limit", "content", "finish_reason"),
    [
        ("max_tokens", 2, "hello there", "length"),
        ("max_completion_tokens", 1, "hello", "length"),
        ("max_tokens", 3, "hello there  world", "stop"),  # exactly the reply's length: not cut
    ],
)
async def test_echo_is_truncated_to_max_tokens_words(field: str, limit: int, content: str, finish_reason: str) -> None:
    async with client() as http:
        body = (await complete(http, model="test/echo", **{field: limit})).json()
    assert body["choices"][0]["message"]["content"] == content
    assert body["choices"][0]["finish_reason"] == finish_reason
    assert body["usage"]["completion_tokens"] == limit


async def test_story_is_word_n_up_to_max_tokens() -> None:
    async with client() as http:
        default = (await complete(http, model="test/story")).json()
        short = (await complete(http, model="test/story", max_tokens=5)).json()
    assert default["choices"][0]["message"]["content"] == " ".join(f"word{i}" for i in range(1, STORY_WORDS + 1))
    assert default["choices"][0]["finish_reason"] == "stop"
    assert default["usage"]["completion_tokens"] == STORY_WORDS == 64
    assert short["choices"][0]["message"]["content"] == "word1 word2 word3 word4 word5"
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("model", ["test/echo", "test/story", "openai/gpt-4o-mini"])
@pytest.mark.parametrize("include_usage", [True, False, None])
async def test_stream_is_openai_sse_and_matches_the_non_stream_reply(model: str, include_usage: bool | None) -> None:
    # Given the non-stream reply of a request
    options = {} if include_usage is None else {"stream_options": {"include_usage": include_usage}}
    async with client() as http:
        plain = (await complete(http, model=model, max_tokens=10)).json()
        # When the same request is streamed
        response = await complete(http, model=model, max_tokens=10, stream=True, **options)
    # Then: a role chunk, one chunk per word, a finish chunk, the usage chunk only if asked, then [DONE]
    assert response.status_code == 200
    chunks, last = parse_stream(response)
    assert last == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    if include_usage:
        *chunks, usage_chunk = chunks
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"] == plain["usage"]
        assert all(c["usage"] is None for c in chunks)
    else:
        assert all("usage" not in c for c in chunks)
    *content_chunks, final = chunks
    assert final["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert final["choices"][0]["delta"] == {}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in content_chunks]
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert len(deltas) == 1 + plain["usage"]["completion_tokens"]  # the role chunk, then one per word
    assert all(c["choices"][0]["finish_reason"] is None for c in content_chunks)


async def test_no_usage_model_never_reports_usage() -> None:
    async with client() as http:
        plain = (await complete(http, model="test/no-usage")).json()
        streamed = await complete(http, model="test/no-usage", stream=True, stream_options={"include_usage": True})
    assert plain["choices"][0]["message"]["content"] == "hello there  world"
    assert "usage" not in plain
    chunks, last = parse_stream(streamed)
    assert last == "[DONE]"
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "hello there  world"


async def test_unknown_model_is_a_404_model_not_found() -> None:
    async with client() as http:
        response = await complete(http, model="nope/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert set(error) == {"message", "type", "code", "param"}
    assert "nope/nope" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "test/echo", "messages": []}, "messages"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "test/echo", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "test/echo", "messages": MESSAGES, "max_completion_tokens": "5"}, "max_completion_tokens"),
    ],
)
async def test_invalid_requests_are_400(body: dict[str, Any], param: str) -> None:
    async with client() as http:
        response = await http.post(COMPLETIONS, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "secret", "Bearer secret "])
async def test_api_key_is_required_when_set(authorization: str | None) -> None:
    # Given an upstream with an api key / When it is called without the right bearer token
    headers = {"Authorization": authorization} if authorization else {}
    async with client(api_key="secret") as http:
        completion = await http.post(COMPLETIONS, json={"model": "test/echo", "messages": MESSAGES}, headers=headers)
        models = await http.get("/v1/models", headers=headers)
        allowed = await http.get("/v1/models", headers={"Authorization": "Bearer secret"})
    # Then both routes answer 401 in OpenAI's format, and the right key passes
    for response in (completion, models):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("fail_mode", "status", "error_type", "code"),
    [("500", 500, "server_error", None), ("429", 429, "requests", "rate_limit_exceeded")],
)
async def test_failing_upstream_errors_every_completion(
    fail_mode: str, status: int, error_type: str, code: str | None
) -> None:
    async with client(fail_mode=fail_mode) as http:
        response = await complete(http, model="test/echo")
        streamed = await complete(http, model="test/story", stream=True)
        models = await http.get("/v1/models")
    for r in (response, streamed):
        assert r.status_code == status
        assert r.json()["error"]["type"] == error_type
        assert r.json()["error"]["code"] == code
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
        assert r.headers.get("retry-after") == ("1" if fail_mode == "429" else None)
    assert models.status_code == 200


async def test_hang_never_answers() -> None:
    async with client(fail_mode="hang") as http:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await complete(http, model="test/echo")


@pytest.mark.parametrize(
    ("options", "body"), [({"fail_mode": "drop"}, {"model": "test/echo"}), ({}, {"model": "test/cutoff"})]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_drop_and_cutoff_raise_in_process(options: dict[str, Any], body: dict[str, Any], stream: bool) -> None:
    # Without uvicorn there is no connection to close, so the app raises (the ASGI transport re-raises it).
    async with client(**options) as http:
        with pytest.raises(ConnectionDropped):
            await complete(http, stream=stream, **body)


def test_unknown_fail_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="fail_mode"):
        build_upstream(fail_mode="502")


async def test_received_keeps_request_bodies() -> None:
    app = build_upstream(chunk_delay=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://upstream") as http:
        await http.post(COMPLETIONS, json={"model": "test/echo", "messages": MESSAGES, "user": "u1"})
    assert [body["user"] for body in app.received] == ["u1"]
