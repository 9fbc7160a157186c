"""events/proxy.json is a working request: the API Gateway event of a chat completion, replayed as the Lambda Web
Adapter turns it into an HTTP request (method, path without the stage, headers, body) against the local stack."""

from __future__ import annotations

import json

import httpx

from llm_platform.domain import accounts, api_keys
from llm_platform.domain.accounts import Caller
from tests.conftest import REPO_ROOT as REPO

PLACEHOLDER = "Bearer sk_live_REPLACE_WITH_AN_API_KEY"


def test_the_proxys_sample_event_is_answered_as_a_chat_completion(local_stack) -> None:
    # Given the sample event, and a credit key put where its placeholder is
    event = json.loads((REPO / "events" / "proxy.json").read_text())
    assert event["headers"]["Authorization"] == PLACEHOLDER == event["multiValueHeaders"]["Authorization"][0]
    created = accounts.create_account("sample-event")
    accounts.grant_credit(created.account_id, 1_000_000, "test")
    _, key = api_keys.create_credit_key(Caller(created.account_id, created.management_key_id), "k", None, None, None)
    headers = {**event["headers"], "Authorization": f"Bearer {key}"}
    # When it is sent as the adapter sends it
    response = httpx.request(
        event["httpMethod"], f"{local_stack.api_url}{event['path']}", headers=headers, content=event["body"], timeout=30
    )
    # Then it is a billed chat completion of the event's model
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["model"] == json.loads(event["body"])["model"] and answer["choices"][0]["message"]["content"]
    assert float(response.headers["x-request-cost"]) > 0
    assert event["requestContext"]["path"] == f"/{event['requestContext']['stage']}{event['path']}"
