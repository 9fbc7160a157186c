"""The API against its OpenAPI document (openapi.json), over real HTTP on the local stack, with schemathesis.

Every operation gets a small, bounded number of generated requests, valid and invalid ones, with real
credentials: no 5xx, every status documented, every body and content type as documented. The webhook,
unsigned, must answer 400 invalid_signature. Then the documented flows (the success paths random data
does not reach: a real key to update and revoke, a subscription to cancel, a chat completion) are checked
against the same document. Everything runs on a throwaway account, so the session's demo account and the
other tests' state are untouched."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from llm_platform.domain.accounts import create_account, grant_credit
from tests.support.sign_in import latest_code

REPO = Path(__file__).resolve().parents[2]
# Per operation and phase: the whole contract run stays well under a minute. Raise it to hunt
# (CONTRACT_MAX_EXAMPLES=200 CONTRACT_RANDOM=1 pytest tests/integration/test_api_contract.py).
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "12"))

SCHEMA = schemathesis.openapi.from_path(REPO / "openapi.json")
# Credentials are ours (valid keys), not generated: otherwise nearly every request would be a 401.
SCHEMA.config.generation.update(with_security_parameters=False)
SCHEMA.config.update(continue_on_failure=True)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]
WEBHOOK = ("POST", "/api/billing/webhook")


@dataclass(frozen=True)
class Contract:
    api_url: str
    account_id: str
    management_key: str
    api_key: str
    session: requests.Session

    def auth(self, path: str) -> dict[str, str]:
        if path == WEBHOOK[1]:
            return {}
        key = self.api_key if path.startswith("/v1/") else self.management_key
        return {"Authorization": f"Bearer {key}"}


def _throwaway(api_url: str, session: requests.Session, name: str) -> Contract:
    """A new account with $100 of credit and a credit key for /v1."""
    account = create_account(name)
    grant_credit(account.account_id, 100_000_000, "contract test")
    created = httpx.post(
        f"{api_url}/api/keys/credit",
        headers={"Authorization": f"Bearer {account.management_key}"},
        json={"name": name, "maxBudget": 20},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    api_key = created.json()["data"]["apiKey"]
    return Contract(api_url, account.account_id, account.management_key, api_key, session)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def contract(local_stack, session: requests.Session) -> Contract:
    """The generated requests' account."""
    return _throwaway(local_stack.api_url, session, "contract-fuzz")


@pytest.fixture
def flows(local_stack, session: requests.Session) -> Contract:
    """The documented flows' account (the generated requests add management keys to theirs)."""
    return _throwaway(local_stack.api_url, session, "contract-flows")


def _call(case: Any, contract: Contract) -> Any:
    headers = {**(case.headers or {}), **contract.auth(case.path)}
    return case.call(base_url=contract.api_url, session=contract.session, headers=headers)


@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("CONTRACT_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_operation_conforms(case: Any, contract: Contract) -> None:
    response = _call(case, contract)
    if (case.method, case.path) == WEBHOOK:
        # Unsigned (or signed with nonsense): refused before anything is read, never a 5xx.
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_signature", response.text
    case.validate_response(response, checks=CHECKS, headers=contract.auth(case.path))


def _operation(method: str, path: str) -> Any:
    return SCHEMA[path][method]


def _conforming(contract: Contract, method: str, path: str, *, body: Any = None, **path_parameters: str) -> Any:
    operation = _operation(method, path)
    kwargs: dict[str, Any] = {"path_parameters": path_parameters or None}
    if body is not None:
        kwargs["body"] = body
        kwargs["media_type"] = "application/json"
    case = operation.Case(**kwargs)
    response = _call(case, contract)
    case.validate_response(response, checks=CHECKS, headers=contract.auth(path))
    return response


def test_documented_flows_conform(flows: Contract, local_stack) -> None:
    contract = flows
    # Keys: create, list, rename, disable, usage, revoke.
    created = _conforming(contract, "POST", "/api/keys/credit", body={"name": "flow", "maxBudget": "1.5", "rpm": 10})
    assert created.status_code == 201
    key_id = created.json()["data"]["id"]
    assert _conforming(contract, "GET", "/api/keys").status_code == 200
    renamed = _conforming(contract, "PATCH", "/api/keys/{id}", body={"name": "flow-2", "disabled": True}, id=key_id)
    assert renamed.json()["data"]["status"] == "disabled"
    # Billing: subscribe from credit with a key, status, usage (a budget window), cancel.
    subscribed = _conforming(
        contract, "POST", "/api/billing/subscribe", body={"planSlug": "standard", "createKey": True}
    )
    assert subscribed.status_code == 201, subscribed.text
    subscription_id = subscribed.json()["data"]["subscription"]["id"]
    assert _conforming(contract, "GET", "/api/billing/status").json()["data"]["subscriptions"]
    usage = _conforming(contract, "GET", "/api/usage").json()["data"]
    assert any(entry["usage"]["currentBudgetWindow"] for entry in usage)
    cancelled = _conforming(contract, "POST", "/api/billing/cancel", body={"subscriptionId": subscription_id})
    assert cancelled.json()["data"]["cancelAtPeriodEnd"] is True
    assert (
        _conforming(contract, "POST", "/api/billing/cancel", body={"subscriptionId": subscription_id}).status_code
        == 409
    )
    assert _conforming(contract, "DELETE", "/api/keys/{id}", id=key_id).status_code == 200
    assert _conforming(contract, "DELETE", "/api/keys/{id}", id=key_id).status_code == 404
    # Payments: Stripe Checkout (the simulator), both top-ups, a wallet challenge, a pending-or-unknown tx.
    assert _conforming(contract, "POST", "/api/billing/checkout", body={"planSlug": "pro"}).status_code == 200
    assert (
        _conforming(contract, "POST", "/api/billing/topup", body={"amount": 10, "method": "stripe"}).status_code == 200
    )
    assert (
        _conforming(contract, "POST", "/api/billing/topup", body={"amount": "12.5", "method": "usdc"}).status_code
        == 200
    )
    wallet = "0x" + "ab" * 20
    challenge = _conforming(contract, "POST", "/api/billing/wallets/challenge", body={"address": wallet})
    assert challenge.status_code == 201, challenge.text
    assert _conforming(contract, "GET", "/api/billing/wallets").json()["data"] == []
    bad_signature = {"address": wallet, "signature": "0x" + "00" * 65}
    assert _conforming(contract, "POST", "/api/billing/wallets", body=bad_signature).status_code in (400, 403)
    unknown_tx = {"txHash": "0x" + "11" * 32, "amount": 5}
    assert _conforming(contract, "POST", "/api/billing/verify-topup", body=unknown_tx).status_code == 404
    # Management keys: create, list, delete; the last one cannot go.
    made = _conforming(contract, "POST", "/api/management-keys", body={"name": "second"})
    assert made.status_code == 201
    listed = _conforming(contract, "GET", "/api/management-keys").json()["data"]
    assert len(listed) == 2
    made_id = made.json()["data"]["id"]
    assert _conforming(contract, "DELETE", "/api/management-keys/{id}", id=made_id).status_code == 200
    current = next(k["id"] for k in listed if k["current"])
    assert _conforming(contract, "DELETE", "/api/management-keys/{id}", id=current).status_code == 409
    # Inference: the models, a completion, a stream, and OpenAI-shaped refusals.
    models = _conforming(contract, "GET", "/v1/models").json()["data"]
    chat = {"model": models[0]["id"], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    completion = _conforming(contract, "POST", "/v1/chat/completions", body=chat)
    assert completion.status_code == 200, completion.text
    streamed = _conforming(contract, "POST", "/v1/chat/completions", body={**chat, "stream": True})
    assert streamed.headers["content-type"][0].startswith("text/event-stream")  # schemathesis: header -> values
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert _conforming(contract, "POST", "/v1/chat/completions", body={**chat, "model": "nope"}).status_code == 404
    assert _conforming(contract, "POST", "/v1/chat/completions", body={**chat, "base_url": "x"}).status_code == 400
    # Sign-in: a code mailed to a new address (read from the outbox), verified: a new account; then sign-out.
    email = f"contract-{secrets.token_hex(4)}@example.com"
    assert _conforming(contract, "POST", "/api/auth/email/start", body={"email": email}).status_code == 202
    wrong = {"email": email, "code": "abcdef"}
    assert _conforming(contract, "POST", "/api/auth/email/verify", body=wrong).status_code == 400
    code = {"email": email, "code": latest_code(local_stack.mail_url, email)}
    verified = _conforming(contract, "POST", "/api/auth/email/verify", body=code)
    assert verified.status_code == 200 and verified.json()["data"]["created"] is True
    # (the session's cookie jar keeps the cookie; sent without the dashboard's Origin it would be refused 403)
    contract.session.cookies.clear()
    assert _conforming(contract, "POST", "/api/auth/logout").status_code == 200


def test_webhook_refuses_unsigned_events(contract: Contract) -> None:
    event = json.loads((REPO / "events" / "stripe").glob("*.json").__next__().read_text())
    for headers in ({}, {"Stripe-Signature": "t=1,v1=00"}):
        response = contract.session.post(f"{contract.api_url}/api/billing/webhook", json=event, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_signature"
        _operation(*WEBHOOK).validate_response(response)


def test_the_committed_document_is_served_where_aws_serves_it(contract: Contract) -> None:
    # The dashboard's route of the template, on AWS as here
    response = contract.session.get(f"{contract.api_url}/assets/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == (REPO / "openapi.json").read_bytes()
    # And nowhere the template has no route: the gateway's routes are exactly the template's
    assert contract.session.get(f"{contract.api_url}/api/openapi.json").status_code == 404


def test_non_json_bodies_are_refused_with_415(contract: Contract) -> None:
    url = f"{contract.api_url}/api/management-keys"
    for content_type, body in (
        ("multipart/form-data", '{"name": "x"}'),
        (
            "multipart/form-data; boundary=XX",
            '--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--XX--\r\n',
        ),
        ("application/x-www-form-urlencoded", "name=x"),
    ):
        headers = {**contract.auth("/api/management-keys"), "Content-Type": content_type}
        response = contract.session.post(url, data=body.encode(), headers=headers)
        assert response.status_code == 415, f"{content_type}: {response.status_code} {response.text}"
        _operation("POST", "/api/management-keys").validate_response(response)


def test_non_utf8_body_is_invalid_json(contract: Contract) -> None:
    headers = {**contract.auth("/api/management-keys"), "Content-Type": "application/json"}
    response = contract.session.post(f"{contract.api_url}/api/management-keys", data=b"\t\x80]\xff", headers=headers)
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.json()["error"]["code"] == "invalid_json"
