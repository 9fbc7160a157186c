"""Refunds and disputes of card top-ups (issue 13, item 6), through the signed webhook on DynamoDB Local:
a card top-up that is spent and then refunded or charged back is debited once per refund or dispute (the
balance may go negative), a negative account can neither spend nor subscribe, and a dispute won is
credited back once."""

from __future__ import annotations

import copy

import pytest

from llm_platform.data.dynamo import client
from llm_platform.domain import accounts, subscriptions
from llm_platform.domain.accounts import Caller
from llm_platform.domain.errors import InsufficientCredit
from tests.support.stripe_events import outcome, sample, webhook_function

SECRET = "whsec_integration_chargebacks"


@pytest.fixture
def deliver(local_stack, monkeypatch):
    webhook = webhook_function(monkeypatch, SECRET)
    yield lambda event: outcome(webhook(event))
    from llm_platform.config import get_settings

    get_settings.cache_clear()


def _ids(event: dict, suffix: str) -> dict:
    """The sample with ids of its own (each test its own session, payment, charge and dispute)."""
    event = copy.deepcopy(event)
    text = str(event)
    for old in ("cs_test_SampleTopup", "pi_SampleTopup", "ch_SampleTopup", "dp_SampleTopup"):
        text = text.replace(old, f"{old}{suffix}")
    event = eval(text)  # noqa: S307 - our own sample, round-tripped through repr
    event["id"] = f"{event['id']}{suffix}"
    return event


def _ledger(account_id: str) -> list[dict]:
    from llm_platform.config import get_settings

    items = client().query(
        TableName=get_settings().ledger_table,
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account_id}},
        ConsistentRead=True,
    )["Items"]
    return [{"kind": i["kind"]["S"], "amount": int(i["amountMicros"]["N"])} for i in items]


def _balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


def _topped_up_and_spent(deliver, name: str, suffix: str) -> str:
    account = accounts.create_account(name)
    paid = _ids(sample("checkout.session.completed.topup", account_id=account.account_id), suffix)
    assert deliver(paid) == (200, "applied")
    # (spent: a standard period paid from the $50, $30 left)
    subscriptions.subscribe_with_credit(Caller(account.account_id, account.management_key_id), "standard", False, None)
    assert _balance(account.account_id) == 30_000_000
    return account.account_id


def test_a_refund_of_a_spent_topup_is_debited_once_and_blocks_spending(deliver) -> None:
    account_id = _topped_up_and_spent(deliver, "refunded", "R1")
    refund = _ids(sample("charge.refunded", account_id=account_id), "R1")
    # When Stripe says the $50 charge was refunded, three times
    outcomes = [deliver(refund) for _ in range(3)]
    # Then it is debited once: the balance is negative, and the ledger still sums to it
    assert outcomes == [(200, "applied"), (200, "duplicate"), (200, "duplicate")]
    assert _balance(account_id) == -20_000_000 == sum(e["amount"] for e in _ledger(account_id))
    assert {"kind": "refund", "amount": -50_000_000} in _ledger(account_id)
    # And a negative account cannot buy from credits
    with pytest.raises(InsufficientCredit):
        subscriptions.subscribe_with_credit(Caller(account_id, None), "standard", False, None)


def test_a_partial_then_full_refund_debits_each_part_once(deliver) -> None:
    account_id = _topped_up_and_spent(deliver, "partial", "R2")
    partial = _ids(sample("charge.refunded", account_id=account_id), "R2")
    partial["id"] += "a"
    partial["data"]["object"]["amount_refunded"] = 1000
    full = _ids(sample("charge.refunded", account_id=account_id), "R2")
    # (delivered out of order: the full refund first, then the older partial one)
    assert deliver(full) == (200, "applied")
    assert deliver(partial) == (200, "duplicate")
    assert _balance(account_id) == -20_000_000


def test_a_dispute_debits_once_and_a_won_dispute_credits_back_once(deliver) -> None:
    account_id = _topped_up_and_spent(deliver, "disputed", "D1")
    opened = _ids(sample("charge.dispute.created", account_id=account_id), "D1")
    closed = _ids(sample("charge.dispute.closed.won", account_id=account_id), "D1")
    assert [deliver(opened), deliver(opened)] == [(200, "applied"), (200, "duplicate")]
    assert _balance(account_id) == -20_000_000
    assert [deliver(closed), deliver(closed)] == [(200, "applied"), (200, "duplicate")]
    assert _balance(account_id) == 30_000_000 == sum(e["amount"] for e in _ledger(account_id))
    kinds = sorted(e["kind"] for e in _ledger(account_id))
    assert kinds == ["chargeback", "chargeback_reversed", "subscription", "topup_stripe"]


def test_a_dispute_closed_before_its_opening_arrives_changes_nothing(deliver) -> None:
    account_id = _topped_up_and_spent(deliver, "reordered", "D2")
    opened = _ids(sample("charge.dispute.created", account_id=account_id), "D2")
    closed = _ids(sample("charge.dispute.closed.won", account_id=account_id), "D2")
    assert deliver(closed)[0] == 200
    assert deliver(opened)[0] == 200
    assert _balance(account_id) == 30_000_000


def test_a_lost_dispute_keeps_the_debit(deliver) -> None:
    account_id = _topped_up_and_spent(deliver, "lost", "D3")
    opened = _ids(sample("charge.dispute.created", account_id=account_id), "D3")
    lost = _ids(sample("charge.dispute.closed.won", account_id=account_id), "D3")
    lost["data"]["object"]["status"] = "lost"
    assert deliver(opened) == (200, "applied")
    assert deliver(lost)[0] == 200
    assert _balance(account_id) == -20_000_000


def test_a_negative_account_is_refused_402_on_v1_until_topped_up(deliver, local_stack) -> None:
    import httpx

    from llm_platform.domain import api_keys

    account_id = _topped_up_and_spent(deliver, "negative-v1", "R3")
    caller = Caller(account_id, None)
    _, secret = api_keys.create_credit_key(caller, "k", None, None, None)
    chat = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.post(f"{local_stack.api_url}/v1/chat/completions", json=chat, headers=headers).status_code == 200
    assert deliver(_ids(sample("charge.refunded", account_id=account_id), "R3")) == (200, "applied")
    refused = httpx.post(f"{local_stack.api_url}/v1/chat/completions", json=chat, headers=headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "insufficient_quota")
    # Topped up past the debt, it spends again
    accounts.grant_credit(account_id, 30_000_000, "paid the debt")
    assert httpx.post(f"{local_stack.api_url}/v1/chat/completions", json=chat, headers=headers).status_code == 200
