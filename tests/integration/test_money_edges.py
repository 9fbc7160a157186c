"""The money paths' edges (issue 13, items 1, 2 and 7), each reproduced over real HTTP on DynamoDB Local:
- a provider that accepts a request and then stalls, drops or overruns the deadline: what it generated is
  billed, and the request never fails over to a second provider once the first accepted it;
- a settle that cannot be written: the client is told the truth, the reservation stays recorded and the
  reconciler settles it (the prompt's cost charged, the rest released, a ledger entry);
- a retry of an admission that had committed reserves once (ClientRequestToken);
- input that used to become a 5xx: deep nesting, NaN, lone surrogates, a provider's 4xx body, a key
  name with invisible characters, a request larger than the key's TPM: clear 400s, nothing charged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from llm_platform.core.clock import utc_now
from llm_platform.data import dynamo_wire
from llm_platform.data import metering as store
from llm_platform.data.dynamo import client
from llm_platform.domain import accounts, api_keys, reservations
from llm_platform.domain.accounts import Caller
from local_stack.upstream import UpstreamServer
from tests.support.proxies import catalog_model, proxy_on_catalog


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, UpstreamServer]]:
    servers = {
        "healthy": UpstreamServer(name="healthy", chunk_delay=0.002),
        "standby": UpstreamServer(name="standby"),  # healthy: records whatever reaches it
        "picky": UpstreamServer(name="picky", fail_mode="400"),  # refuses every request as malformed
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def proxy_url(local_stack, upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    healthy = upstreams["healthy"].url

    def model(model_id: str, upstream_model: str, urls: list[str], timeout: float = 2) -> dict:
        providers = [(url, 0.1 * (i + 1)) for i, url in enumerate(urls)]
        return catalog_model(model_id, upstream_model, providers, max_out=512, timeout=timeout)

    catalog = {
        "models": [
            model("test/echo", "test/echo", [healthy]),
            model("test/story", "test/story", [healthy]),
            # Accepts, streams a few chunks, then stalls past its 0.5 s timeout; a second provider stands by.
            model("stall/story", "test/stall", [healthy, upstreams["standby"].url], timeout=0.5),
            # Accepts, streams a few chunks, then drops the connection; a second provider stands by.
            model("cutoff/story", "test/cutoff", [healthy, upstreams["standby"].url]),
            # A provider that judges every request malformed (400 with its own error body).
            model("picky/echo", "test/echo", [upstreams["picky"].url]),
        ]
    }
    with proxy_on_catalog(catalog, tmp_path_factory.mktemp("edges-catalog")) as (url, _):
        yield url


def credit_key(balance_micros: int = 1_000_000, **limits) -> tuple[str, str, str]:
    created = accounts.create_account("edges")
    caller = Caller(created.account_id, created.management_key_id)
    if balance_micros:
        accounts.grant_credit(created.account_id, balance_micros, "test")
    key, plaintext = api_keys.create_credit_key(caller, "k", None, limits.get("rpm", 1000), limits.get("tpm", 100_000))
    return plaintext, key.key_id, created.account_id


def balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


def ledger(account_id: str) -> list[dict]:
    from llm_platform.data import ledger as ledger_table

    return ledger_table.newest_first(account_id, 100, None).items


def chat(proxy_url: str, key: str, **body) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hello edges"}])
    return httpx.post(
        f"{proxy_url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    )


def log_record(request_id: str) -> dict:
    from llm_platform.data import request_log

    return request_log.get(request_id)


def open_reservation(request_id: str) -> dict | None:
    from llm_platform.config import get_settings

    item = client().get_item(
        TableName=get_settings().reservations_table, Key={"requestId": {"S": request_id}}, ConsistentRead=True
    )
    return item.get("Item")


# ------------------------------------------------------------------ 1. no free generations


@pytest.mark.parametrize("model", ["stall/story", "cutoff/story"])
def test_a_provider_that_accepts_then_stalls_or_drops_is_billed_for_what_it_sent(proxy_url, upstreams, model) -> None:
    # Given a credit key, and a provider that accepts, generates a few words, then stalls (or drops)
    key, _, account_id = credit_key()
    standby = len(upstreams["standby"].app.received)
    # When a non-streamed request asks it
    response = chat(proxy_url, key, model=model, max_tokens=50)
    # Then the client is told it stopped mid-answer, and what was generated is billed, not released
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and "billed" in error["message"]
    cost = Decimal(response.headers["x-request-cost"]) * 1_000_000
    assert cost > 0 and balance(account_id) == 1_000_000 - cost
    record = log_record(response.headers["x-request-id"])
    assert (record["status"], record["costMicros"]) == (502, cost) and record["completionTokens"] > 0
    assert sum(entry["amountMicros"] for entry in ledger(account_id)) == balance(account_id)
    # And the second provider never got the request: no failover once a provider accepted it
    assert len(upstreams["standby"].app.received) == standby


def test_a_non_streamed_answer_has_a_deadline_and_what_came_is_billed(proxy_url, monkeypatch) -> None:
    # Given a deadline of 0.3 s, and a story that takes ~0.5 s (250 words at 2 ms)
    from llm_platform.proxy import asgi

    monkeypatch.setattr(asgi, "REQUEST_DEADLINE_SECONDS", 0.3)
    key, _, account_id = credit_key()
    response = chat(proxy_url, key, model="test/story", max_tokens=250)
    # Then it ends at the deadline and is billed for the words generated until then
    assert response.status_code == 502
    record = log_record(response.headers["x-request-id"])
    assert 0 < record["completionTokens"] < 250 and balance(account_id) == 1_000_000 - record["costMicros"]


def test_a_whole_answer_read_as_a_stream_is_billed_exactly(proxy_url, upstreams) -> None:
    # Given a non-streamed request: the proxy reads the provider's stream and answers with one completion
    key, _, account_id = credit_key()
    response = chat(proxy_url, key, model="test/echo")
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"] == "hello edges"
    assert data["choices"][0]["finish_reason"] == "stop" and data["usage"]["prompt_tokens"] > 0
    sent = upstreams["healthy"].app.received[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    cost = data["usage"]["prompt_tokens"] * 1 + data["usage"]["completion_tokens"] * 2
    assert balance(account_id) == 1_000_000 - cost


# ------------------------------------------------------------------ 2. reservations that never end


def test_a_settle_that_fails_tells_the_truth_and_the_reconciler_settles_it(proxy_url, monkeypatch) -> None:
    # Given a key, and DynamoDB refusing every settle for a while
    key, key_id, account_id = credit_key()

    def unavailable(plan):
        raise RuntimeError("DynamoDB is unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(store, "settle", unavailable)
        response = chat(proxy_url, key, model="test/echo")
    # Then the client is not told "nothing was charged": it is told the answer is withheld and how its
    # reservation ends
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "billing_unavailable" and "prompt's cost is charged" in error["message"]
    request_id = response.headers["x-request-id"]
    reserved = 1_000_000 - balance(account_id)
    assert reserved > 0 and open_reservation(request_id) is not None
    # When the reconciler runs after the request's deadline
    report = reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    assert report.failed == [] and report.settled >= 1
    # Then the prompt's cost is charged, the rest released, with a ledger entry and a log record
    record = log_record(request_id)
    assert record["status"] == 504 and 0 < record["costMicros"] < reserved
    assert balance(account_id) == 1_000_000 - record["costMicros"]
    assert sum(entry["amountMicros"] for entry in ledger(account_id)) == balance(account_id)
    assert open_reservation(request_id) is None
    # And a second run changes nothing
    again = reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    assert balance(account_id) == 1_000_000 - record["costMicros"] and again.failed == []


def test_a_settled_request_leaves_no_reservation_and_the_reconciler_cannot_charge_it_again(proxy_url) -> None:
    key, _, account_id = credit_key()
    response = chat(proxy_url, key, model="test/echo")
    assert response.status_code == 200 and open_reservation(response.headers["x-request-id"]) is None
    before = balance(account_id)
    reservations.reconcile(utc_now() + timedelta(seconds=900 + 61))
    assert balance(account_id) == before


def test_a_committed_admission_retried_reserves_once(proxy_url) -> None:
    # Given the proxy's DynamoDB client told to retry the admission transaction once after DynamoDB has
    # committed it (as when the answer is lost on the way back)
    key, key_id, account_id = credit_key()
    retried = []

    def retry_once(operation: str, attempt: int, status: int) -> bool:
        if operation == "TransactWriteItems" and attempt == 1 and status == 200 and not retried:
            retried.append(True)
            return True  # retry now
        return False

    dynamo_wire.retry_deciders.append(retry_once)
    try:
        response = chat(proxy_url, key, model="test/echo")
    finally:
        dynamo_wire.retry_deciders.remove(retry_once)
    # Then the retry was made, and the request was reserved, and charged, once
    assert retried and response.status_code == 200
    usage = response.json()["usage"]
    assert balance(account_id) == 1_000_000 - (usage["prompt_tokens"] + 2 * usage["completion_tokens"])
    assert len([e for e in ledger(account_id) if e["kind"] == "usage"]) == 1


# ------------------------------------------------------------------ 7. input that became a 5xx


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b'{"model": "test/echo", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nest"),
        (b'{"model": "test/echo", "messages": ' + b"[" * 100 + b"]" * 100 + b"}", "nest"),
        (b'{"model": "test/echo", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}', "not valid"),
        (b'{"model": "test/echo", "top_p": Infinity, "messages": [{"role": "user", "content": "x"}]}', "not valid"),
        (b'{"model": "test/echo", "messages": [{"role": "user", "content": "\\ud800 lone"}]}', "surrogate"),
    ],
)
def test_hostile_json_is_a_clear_400_and_costs_nothing(proxy_url, raw, what) -> None:
    key, _, account_id = credit_key()
    response = httpx.post(
        f"{proxy_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=raw,
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and what in error["message"] and "x-request-id" in response.headers
    assert balance(account_id) == 1_000_000


def test_a_providers_own_refusal_is_a_clear_400_in_openai_form(proxy_url, upstreams) -> None:
    # Given a provider that refuses the request as malformed (its 400 body has its own shape and details)
    key, _, account_id = credit_key()
    response = chat(proxy_url, key, model="picky/echo")
    # Then the client gets a 400 in OpenAI's format naming the provider's reason, and nothing is charged
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["code"] == "upstream_rejected"
    assert "expected a string" in error["message"] and "nothing was charged" in error["message"]
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"
    assert balance(account_id) == 1_000_000
    assert log_record(response.headers["x-request-id"])["status"] == 400


def test_a_request_larger_than_the_keys_tpm_is_refused_up_front(proxy_url) -> None:
    key, _, account_id = credit_key(tpm=100)
    response = chat(proxy_url, key, model="test/echo", max_tokens=200)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "request_too_large")
    assert "tokens per minute" in response.json()["error"]["message"] and balance(account_id) == 1_000_000


@pytest.mark.parametrize("name", ["evil\u202eexe.txt", "zero\u200bwidth", "bom\ufeff", "c1\u0085control"])
def test_key_names_with_invisible_or_reordering_characters_are_refused(local_stack, name) -> None:
    created = accounts.create_account("names")
    response = httpx.post(
        f"{local_stack.api_url}/api/keys/credit",
        headers={"Authorization": f"Bearer {created.management_key}"},
        json={"name": name},
        timeout=30,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"name": "x", "maxBudget": NaN}',
        b'{"name": "\\ud800"}',
    ],
)
def test_hostile_json_on_the_management_api_is_a_clear_400(local_stack, raw) -> None:
    created = accounts.create_account("hostile")
    response = httpx.post(
        f"{local_stack.api_url}/api/keys/credit",
        headers={"Authorization": f"Bearer {created.management_key}", "Content-Type": "application/json"},
        content=raw,
        timeout=30,
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_json", "validation_error")
    assert api_keys.list_keys(Caller(created.account_id, created.management_key_id)).items == []


def test_request_ids_are_uuids(proxy_url) -> None:
    key, _, _ = credit_key()
    assert uuid.UUID(chat(proxy_url, key, model="test/echo").headers["x-request-id"])
