"""OpenAI compatibility, second round, over real HTTP with DynamoDB Local: what each provider receives of the
reference's parameters (real upstream servers on loopback that record every body), priced parameters in the
reservation, usage.cost, x-request-id on every /v1 answer, /v1/models pricing and one model, embeddings."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import httpx
import pytest

from llm_platform.data import api_keys as api_keys_table
from llm_platform.domain import accounts, api_keys
from llm_platform.domain.accounts import Caller
from llm_platform.domain.credentials import hash_secret
from llm_platform.proxy.parameters import FORWARDABLE, UNPRICED
from llm_platform.proxy.pricing import cost_micros, input_token_bound
from local_stack.upstream import UpstreamServer, count_tokens, embedding_vector
from tests.support.dynamodb_calls import dynamodb_operations
from tests.support.openai_reference import REFERENCE_VALUES
from tests.support.proxies import proxy_on_catalog

MESSAGES = [{"role": "user", "content": "hello compat"}]


def _provider(name: str, url: str, cost: float, **extra) -> dict:
    return {
        "name": name,
        "baseUrl": f"{url}/v1",
        "model": extra.pop("model", "test/echo"),
        "inputCostPerMTokUsd": str(cost),
        "outputCostPerMTokUsd": str(cost),
        "timeoutSeconds": 5,
        **extra,
    }


class Compat:
    def __init__(self, url: str, app, picky: UpstreamServer, open_: UpstreamServer, flexible: UpstreamServer) -> None:
        self.url, self.app, self.picky, self.open, self.flexible = url, app, picky, open_, flexible

    def post(self, path: str, key: str, body: dict) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)


@pytest.fixture(scope="module")
def compat(local_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compat]:
    picky = UpstreamServer(name="picky").start()
    open_ = UpstreamServer(name="open").start()
    flexible = UpstreamServer(name="flexible").start()
    catalog = {
        "models": [
            # A provider that takes the temperature and nothing else optional
            {
                "id": "picky/echo",
                "inputPerMTokUsd": "1",
                "outputPerMTokUsd": "2",
                "maxOutputTokens": 64,
                "contextLength": 4096,
                "providers": [_provider("picky", picky.url, 0.5, parameters=["temperature"])],
            },
            # The catalog's default output cap (4,096 without defaultMaxOutputTokens) above the standard plan's TPM
            {
                "id": "roomy/echo",
                "inputPerMTokUsd": "1",
                "outputPerMTokUsd": "2",
                "maxOutputTokens": 8192,
                "providers": [_provider("open", open_.url, 0.5)],
            },
            # A provider that takes everything forwardable (as OpenAI's API does)
            {
                "id": "open/echo",
                "inputPerMTokUsd": "1",
                "outputPerMTokUsd": "2",
                "maxOutputTokens": 64,
                "providers": [_provider("open", open_.url, 0.5, parameters=sorted(FORWARDABLE))],
            },
            # Tiers: the cheapest provider offers priority only, the other flex too
            {
                "id": "tiered/echo",
                "inputPerMTokUsd": "10",
                "outputPerMTokUsd": "20",
                "serviceTiers": {
                    "flex": {"inputPerMTokUsd": "5", "outputPerMTokUsd": "10"},
                    "priority": {"inputPerMTokUsd": "20", "outputPerMTokUsd": "40"},
                },
                "maxOutputTokens": 64,
                "providers": [
                    _provider("open", open_.url, 0.1, serviceTiers=["priority"]),
                    _provider("flexible", flexible.url, 0.5, serviceTiers=["flex", "priority"]),
                ],
            },
            {
                "id": "test/embed",
                "kind": "embedding",
                "inputPerMTokUsd": "3",
                "outputPerMTokUsd": "0",
                "contextLength": 8191,
                "dimensions": 16,
                "dimensionsAdjustable": True,
                "providers": [_provider("open", open_.url, 0.5, model="test/embed")],
            },
            {
                "id": "fixed/embed",
                "kind": "embedding",
                "inputPerMTokUsd": "3",
                "outputPerMTokUsd": "0",
                "dimensions": 16,
                # A provider that knows no encoding_format: floats asked for, base64 made by the proxy
                "providers": [_provider("picky", picky.url, 0.5, model="test/embed", parameters=[])],
            },
        ]
    }
    with proxy_on_catalog(catalog, tmp_path_factory.mktemp("compat")) as (url, app):
        yield Compat(url, app, picky, open_, flexible)
    for upstream in (picky, open_, flexible):
        upstream.stop()


def credit_key(balance_micros: int = 1_000_000) -> tuple[str, str]:
    created = accounts.create_account("compat-test")
    caller = Caller(created.account_id, created.management_key_id)
    if balance_micros:
        accounts.grant_credit(created.account_id, balance_micros, "test")
    _, plaintext = api_keys.create_credit_key(caller, "k", None, 1000, 10_000_000)
    return plaintext, created.account_id


def balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


# ------------------------------------------------------------------ what each provider receives


def test_a_provider_never_receives_a_parameter_it_does_not_take(compat) -> None:
    # Given a key, and every optional parameter of the reference with a real value
    key, _ = credit_key()
    # When the picky provider's model is asked with all of them
    response = compat.post(
        "/v1/chat/completions", key, {"model": "picky/echo", "messages": MESSAGES, **REFERENCE_VALUES}
    )
    # Then it answers, and the provider got only what it takes: its model, the messages, the output cap and
    # the temperature (and the stream the proxy always reads an answer as, with usage for the bill)
    assert response.status_code == 200, response.text
    received = compat.picky.app.received[-1]
    assert set(received) == {"model", "messages", "max_tokens", "temperature", "stream", "stream_options"}
    assert received["stream_options"] == {"include_usage": True}
    assert received["temperature"] == 0.2 and received["max_tokens"] == 64


def test_a_provider_that_takes_everything_gets_everything_priced_and_nothing_unpriced(compat) -> None:
    key, _ = credit_key()
    response = compat.post(
        "/v1/chat/completions", key, {"model": "open/echo", "messages": MESSAGES, **REFERENCE_VALUES}
    )
    assert response.status_code == 200, response.text
    received = compat.open.app.received[-1]
    # Every forwardable parameter arrives as sent…
    assert {name: received[name] for name in FORWARDABLE} == {name: REFERENCE_VALUES[name] for name in FORWARDABLE}
    # …and audio, modalities, web search and moderation never do; service_tier "auto" is not forwarded
    assert not (UNPRICED | {"service_tier"}) & set(received)


def test_a_request_without_max_tokens_is_capped_by_the_keys_tpm_not_refused(compat) -> None:
    # Given a standard-plan subscription key (TPM 3,333) and a model whose default output cap is 4,096
    from llm_platform.domain import billing

    created = accounts.create_account("compat-tpm")
    caller = Caller(created.account_id, created.management_key_id)
    subscription = billing.grant_subscription(created.account_id, "standard")
    _, standard_key = api_keys.create_subscription_key(caller, "standard", subscription.subscription_id)
    roomy_key, _ = credit_key()  # TPM 10,000,000
    body = {"model": "roomy/echo", "messages": MESSAGES}
    # When each asks without max_tokens, as the quick start does
    standard = compat.post("/v1/chat/completions", standard_key, body)
    standard_cap = compat.open.app.received[-1]["max_tokens"]
    roomy = compat.post("/v1/chat/completions", roomy_key, body)
    roomy_cap = compat.open.app.received[-1]["max_tokens"]
    # Then both are answered: the standard key's request is cut at what its TPM leaves after the prompt
    # (its estimate: 12 bytes of text / 3 + 4 per message + 8 = 16 tokens), the other gets the default
    assert (standard.status_code, roomy.status_code) == (200, 200), (standard.text, roomy.text)
    assert (standard_cap, roomy_cap) == (3_333 - 16, 4_096)
    # And a cap the key's TPM cannot hold, asked for explicitly, is still refused before any provider call
    sent = len(compat.open.app.received)
    refused = compat.post("/v1/chat/completions", standard_key, {**body, "max_tokens": 4_000})
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "request_too_large")
    assert len(compat.open.app.received) == sent


def test_a_stream_asks_the_provider_for_usage_only_in_the_form_it_takes(compat) -> None:
    key, _ = credit_key()
    body = {
        "model": "picky/echo",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }
    assert compat.post("/v1/chat/completions", key, body).status_code == 200
    received = compat.picky.app.received[-1]
    assert received["stream"] is True and received["stream_options"] == {"include_usage": True}


# ------------------------------------------------------------------ priced parameters


@pytest.fixture
def reservations(compat, monkeypatch) -> list[int]:
    """The reservation of each admitted request, as the meter was asked for it."""
    seen: list[int] = []
    admit = compat.app.meter.admit

    def recording(key, reserve_micros, *args, **kwargs):
        seen.append(reserve_micros)
        return admit(key, reserve_micros, *args, **kwargs)

    monkeypatch.setattr(compat.app.meter, "admit", recording)
    return seen


def test_priced_parameters_change_the_reservation_and_the_bill(compat, reservations) -> None:
    key, account_id = credit_key()
    base = {"model": "tiered/echo", "messages": MESSAGES, "max_tokens": 10}
    prediction = {"type": "content", "content": "x" * 100}
    cases = {  # label: (extra body, n, customer prices per 1M, extra output tokens reserved)
        "standard": ({}, 1, (10, 20), 0),
        "n=3": ({"n": 3}, 3, (10, 20), 0),
        "flex": ({"service_tier": "flex"}, 1, (5, 10), 0),
        "priority": ({"service_tier": "priority"}, 1, (20, 40), 0),
        "default": ({"service_tier": "default"}, 1, (10, 20), 0),
        "prediction": ({"prediction": prediction}, 1, (10, 20), len(json.dumps(prediction))),
    }
    for label, (extra, n, (price_in, price_out), predicted) in cases.items():
        raw = json.dumps({**base, **extra}).encode()
        before = balance(account_id)
        response = httpx.post(
            f"{compat.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            content=raw,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        # Then the reservation is the request's most at its own prices: n times the prompt bound and the
        # output cap, plus a prediction's size as output
        prices = (price_in * 1_000_000, price_out * 1_000_000)  # micro-dollars per 1M tokens
        expected = cost_micros(input_token_bound(len(raw), 1, 0) * n, (10 + predicted) * n, *prices)
        assert reservations[-1] == expected, label
        # And the bill is the real usage at the same prices, shown as usage.cost
        usage, spent = response.json()["usage"], before - balance(account_id)
        assert spent == usage["prompt_tokens"] * price_in + usage["completion_tokens"] * price_out, label
        assert usage["cost"] == spent / 1_000_000
    assert reservations[-5] > 2 * reservations[-6]  # n=3 over standard: the prices alone do not explain it
    # And a tier goes only to the providers offering it: flex skips the cheaper provider (priority only)
    response = compat.post("/v1/chat/completions", key, {**base, "service_tier": "flex"})
    assert response.json()["system_fingerprint"] == "fp_flexible"
    assert compat.flexible.app.received[-1]["service_tier"] == "flex"
    response = compat.post("/v1/chat/completions", key, {**base, "service_tier": "priority"})
    assert response.json()["system_fingerprint"] == "fp_open"
    assert compat.open.app.received[-1]["service_tier"] == "priority"


@pytest.mark.parametrize(
    ("model", "tier"), [("tiered/echo", "scale"), ("picky/echo", "flex"), ("picky/echo", "priority"), ("open/echo", 3)]
)
def test_a_tier_the_model_does_not_price_is_refused_and_costs_nothing(compat, model, tier) -> None:
    key, account_id = credit_key()
    response = compat.post("/v1/chat/completions", key, {"model": model, "messages": MESSAGES, "service_tier": tier})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "service_tier" and response.headers["x-request-id"]
    assert balance(account_id) == 1_000_000


# ------------------------------------------------------------------ x-request-id, models


def test_every_v1_answer_carries_a_request_id(compat) -> None:
    key, _ = credit_key()
    bearer = {"Authorization": f"Bearer {key}"}
    answers = {
        "no key": httpx.get(f"{compat.url}/v1/models"),
        "bad key": httpx.get(f"{compat.url}/v1/models", headers={"Authorization": "Bearer sk_live_nope"}),
        "unknown route": httpx.get(f"{compat.url}/v1/nothing", headers=bearer),
        "unknown model": httpx.get(f"{compat.url}/v1/models/no/such", headers=bearer),
        "models": httpx.get(f"{compat.url}/v1/models", headers=bearer),
        "model": httpx.get(f"{compat.url}/v1/models/picky/echo", headers=bearer),
        "bad json": httpx.post(f"{compat.url}/v1/chat/completions", headers=bearer, content=b"{"),
        "override": compat.post("/v1/chat/completions", key, {"model": "picky/echo", "messages": MESSAGES, "url": "x"}),
        "chat": compat.post("/v1/chat/completions", key, {"model": "picky/echo", "messages": MESSAGES}),
        "stream": compat.post(
            "/v1/chat/completions", key, {"model": "picky/echo", "messages": MESSAGES, "stream": True}
        ),
        "embeddings": compat.post("/v1/embeddings", key, {"model": "test/embed", "input": "a"}),
        "embeddings 404": compat.post("/v1/embeddings", key, {"model": "no/such", "input": "a"}),
        "options": httpx.options(f"{compat.url}/v1/chat/completions"),
        "preflight": httpx.options(
            f"{compat.url}/v1/chat/completions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ),
    }
    statuses = {label: r.status_code for label, r in answers.items()}
    assert statuses == {
        "no key": 401,
        "bad key": 401,
        "unknown route": 404,
        "unknown model": 404,
        "models": 200,
        "model": 200,
        "bad json": 400,
        "override": 400,
        "chat": 200,
        "stream": 200,
        "embeddings": 200,
        "embeddings 404": 404,
        "options": 204,
        "preflight": 403,  # no browser origin allowed here
    }
    ids = {label: r.headers.get("x-request-id") for label, r in answers.items()}
    assert all(ids.values()), ids
    assert len(set(ids.values())) == len(ids)  # one per request


def test_models_carry_prices_limits_and_what_is_forwarded(compat) -> None:
    key, _ = credit_key()
    bearer = {"Authorization": f"Bearer {key}"}
    items = {m["id"]: m for m in httpx.get(f"{compat.url}/v1/models", headers=bearer).json()["data"]}
    picky = items["picky/echo"]
    assert picky["pricing"] == {"prompt": "0.000001", "completion": "0.000002"}
    assert (picky["context_length"], picky["max_output_tokens"]) == (4096, 64)
    assert picky["supported_parameters"] == ["temperature"] and picky["type"] == "chat"
    assert items["tiered/echo"]["service_tiers"]["flex"] == {"prompt": "0.000005", "completion": "0.00001"}
    assert items["test/embed"]["type"] == "embedding" and items["test/embed"]["max_output_tokens"] is None
    # One model by its id, slash and all, or with the slash percent-encoded (as the openai SDK sends it)
    for path in ("/v1/models/tiered/echo", "/v1/models/tiered%2Fecho"):
        one = httpx.get(f"{compat.url}{path}", headers=bearer)
        assert one.status_code == 200 and one.json() == items["tiered/echo"]
    missing = httpx.get(f"{compat.url}/v1/models/tiered/echo/more", headers=bearer)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


# ------------------------------------------------------------------ embeddings


def test_embeddings_are_metered_and_billed_by_input_tokens(compat) -> None:
    key, account_id = credit_key()
    inputs = ["one two three", "four five"]
    compat.post("/v1/embeddings", key, {"model": "test/embed", "input": "warm"})  # the key snapshot is cached
    before = balance(account_id)
    with dynamodb_operations() as operations:
        response = compat.post("/v1/embeddings", key, {"model": "test/embed", "input": inputs})
    assert response.status_code == 200, response.text
    # Then: one admission, one settle, as for chat
    assert operations == ["TransactWriteItems", "TransactWriteItems"]
    data = response.json()
    assert data["model"] == "test/embed" and [d["index"] for d in data["data"]] == [0, 1]
    assert data["data"][0]["embedding"] == embedding_vector("test/embed", "one two three", 16)
    tokens = sum(count_tokens(t) for t in inputs)
    assert data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens, "cost": tokens * 3 / 1_000_000}
    assert before - balance(account_id) == tokens * 3
    assert response.headers["x-request-cost"] == "0.000015"
    stored = api_keys_table.get_by_hash(hash_secret(key))
    assert (stored.request_count, stored.input_tokens, stored.output_tokens) == (2, tokens + 1, 0)


@pytest.mark.parametrize("model", ["test/embed", "fixed/embed"])
def test_base64_embeddings_are_float32_whoever_encodes_them(compat, model) -> None:
    key, _ = credit_key()
    response = compat.post("/v1/embeddings", key, {"model": model, "input": [[1, 2, 3]], "encoding_format": "base64"})
    assert response.status_code == 200, response.text
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == embedding_vector("test/embed", [1, 2, 3], 16)
    assert response.json()["usage"]["prompt_tokens"] == 3
    # The provider that takes encoding_format got it; the other was asked for floats
    sent = (compat.open if model == "test/embed" else compat.picky).app.received[-1]
    assert sent.get("encoding_format") == ("base64" if model == "test/embed" else None)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "test/embed"}, 400, "invalid_request", "input"),
        ({"model": "test/embed", "input": ""}, 400, "invalid_request", "input"),
        ({"model": "test/embed", "input": []}, 400, "invalid_request", "input"),
        ({"model": "test/embed", "input": ["a", 3]}, 400, "invalid_request", "input"),
        ({"model": "test/embed", "input": "a", "encoding_format": "int8"}, 400, "invalid_request", "encoding_format"),
        ({"model": "test/embed", "input": "a", "dimensions": 17}, 400, "invalid_request", "dimensions"),
        ({"model": "fixed/embed", "input": "a", "dimensions": 8}, 400, "unsupported_parameter", "dimensions"),
        (
            {"model": "test/embed", "input": "a", "base_url": "http://x"},
            400,
            "upstream_override_not_allowed",
            "base_url",
        ),
        ({"model": "test/embed", "input": "a", "truncate": True}, 400, "unsupported_parameter", "truncate"),
        ({"model": "picky/echo", "input": "a"}, 400, "invalid_request", "model"),
        ({"model": "no/embed", "input": "a"}, 404, "model_not_found", "model"),
    ],
)
def test_bad_embedding_requests_are_refused_and_cost_nothing(compat, body, status, code, param) -> None:
    key, account_id = credit_key()
    response = compat.post("/v1/embeddings", key, body)
    assert response.status_code == status, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert balance(account_id) == 1_000_000


def test_chat_with_an_embedding_model_is_refused(compat) -> None:
    key, _ = credit_key()
    response = compat.post("/v1/chat/completions", key, {"model": "test/embed", "messages": MESSAGES})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


def test_dimensions_reach_the_provider(compat) -> None:
    key, _ = credit_key()
    response = compat.post("/v1/embeddings", key, {"model": "test/embed", "input": "a b", "dimensions": 4})
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 4
    assert compat.open.app.received[-1]["dimensions"] == 4
