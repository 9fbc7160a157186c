"""A request whose proxy dies is settled by the scheduled reconciler of the real local stack.

`python -m local_stack` runs with its schedules every second and short reservation deadlines
(RESERVATION_TIMEOUT_SECONDS=2, RECONCILE_GRACE_SECONDS=0). The "request" is admitted by the proxy's own
Meter against that stack's DynamoDB Local and then abandoned, as when a Lambda is stopped mid-answer:
nothing settles it. The template's ReconcileReservationsFunction, run by the stack's scheduler, must
charge its prompt's cost, release the rest and log it, with no help from the test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stacks import local_stack_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state_dir = tmp_path_factory.mktemp("reconciler-state")
    settings = {"LOCAL_SCHEDULE_SECONDS": "1", "RESERVATION_TIMEOUT_SECONDS": "2", "RECONCILE_GRACE_SECONDS": "0"}
    with local_stack_process(state_dir, **settings) as (_, info):
        yield info


@pytest.fixture
def platform(stack, monkeypatch) -> Iterator[None]:
    """This process's llm_platform pointed at the stack's DynamoDB Local (table names = logical ids)."""
    from llm_platform.config import get_settings
    from llm_platform.data import dynamo
    from local_stack.template import load_template

    variables = load_template(REPO / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"]
    for name, value in variables.items():
        if name.endswith("_TABLE"):
            monkeypatch.setenv(name, value["Ref"])
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", stack["dynamodbUrl"])
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESERVATION_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    dynamo.client.cache_clear()
    yield
    get_settings.cache_clear()
    dynamo.client.cache_clear()


def test_a_request_that_dies_is_reconciled_by_the_scheduled_function(stack, platform) -> None:
    from llm_platform.core.clock import utc_now
    from llm_platform.domain import accounts, api_keys
    from llm_platform.domain.accounts import Caller
    from llm_platform.proxy.keys import KeyCache
    from llm_platform.proxy.metering import Meter, Pending

    # Given a credit key on $1 of credit
    created = accounts.create_account("dies")
    accounts.grant_credit(created.account_id, 1_000_000, "test")
    caller = Caller(created.account_id, created.management_key_id)
    _, secret = api_keys.create_credit_key(caller, "k", None, 100, 100_000)
    meter = Meter(KeyCache())
    # When the proxy admits a request reserving $0.01 (its prompt worth $0.000300) and then dies
    request_id = str(uuid.uuid4())
    pending = Pending(model="test/echo", stream=True, prompt_tokens=300, prompt_cost_micros=300)
    meter.admit(meter.keys.lookup(secret), 10_000, 500, request_id, utc_now(), pending)
    assert accounts.get_account(created.account_id).credit_balance_micros == 990_000
    # Then, within its deadline plus a few scheduler ticks, the stack's reconciler settles it unaided
    api = httpx.Client(base_url=stack["apiUrl"], headers={"Authorization": f"Bearer {created.management_key}"})
    deadline = time.monotonic() + 60
    while (response := api.get(f"/api/requests/{request_id}")).status_code == 404:
        assert time.monotonic() < deadline, "not reconciled within 60 s"
        time.sleep(0.5)  # polling the outcome of a real scheduler, not synchronising with it
    record = response.json()["data"]
    assert (record["status"], record["cost"], record["promptTokens"], record["completionTokens"]) == (
        504,
        "0.0003",
        300,
        0,
    )
    # And the prompt's cost is charged, the rest released, with its ledger entry
    status = api.get("/api/billing/status").json()["data"]
    assert status["creditBalance"] == "0.9997"
    ledger = api.get("/api/billing/ledger").json()["data"]
    assert [(e["kind"], e["amount"], e["reference"]) for e in ledger][0] == ("usage", "-0.0003", request_id)
