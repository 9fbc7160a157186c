"""Stripe webhook deliveries racing each other on DynamoDB Local (atomic like DynamoDB; moto is not):
the webhook function's handler called from many threads at once, as concurrent Lambda invocations."""

from __future__ import annotations

import concurrent.futures
import itertools

import pytest

from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data.dynamo import client
from llm_platform.domain import accounts
from llm_platform.domain.stripe_payments import stripe_subscription_local_id
from tests.support.stripe_events import outcome, sample, webhook_function

SECRET = "whsec_integration_races"
LIFECYCLE = [
    "invoice.paid",
    "customer.subscription.updated.renewed",
    "invoice.paid.renewal",
    "customer.subscription.updated.cancel_at_period_end",
    "invoice.payment_failed",
]


@pytest.fixture
def deliver(local_stack, monkeypatch):
    webhook = webhook_function(monkeypatch, SECRET)
    yield lambda event: outcome(webhook(event))
    from llm_platform.config import get_settings

    get_settings.cache_clear()


def race(calls: list) -> list:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_one_topup_delivered_ten_times_at_once_credits_once(deliver, local_stack) -> None:
    # Given a paid card top-up of $50
    account = accounts.create_account("race-topup")
    event = sample("checkout.session.completed.topup", account_id=account.account_id)
    # When Stripe's event arrives ten times at once
    outcomes = race([lambda: deliver(event)] * 10)
    # Then exactly one delivery applied it, the others were recognised as repeats, and $50 was credited
    assert sorted(outcomes) == [(200, "applied")] + [(200, "duplicate")] * 9
    assert accounts.get_account(account.account_id).credit_balance_micros == 50_000_000
    ledger = client().query(
        TableName=local_stack.table_names["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account.account_id}},
    )["Items"]
    assert [int(i["amountMicros"]["N"]) for i in ledger] == [50_000_000]


def test_one_subscription_event_delivered_ten_times_at_once_applies_once(deliver) -> None:
    account = accounts.create_account("race-sub")
    stripe_id = "sub_race_once"
    event = sample("invoice.paid", account_id=account.account_id, stripe_subscription=stripe_id)
    outcomes = race([lambda: deliver(event)] * 10)
    assert sorted(outcomes) == [(200, "applied")] + [(200, "duplicate")] * 9
    stored = subscriptions_table.get(stripe_subscription_local_id(stripe_id))
    assert (stored.status, stored.revision) == ("active", 0)


def _lifecycle(account_id: str, stripe_id: str) -> list[dict]:
    """The lifecycle's events about ``stripe_id`` (event ids are per subscription, as Stripe's are unique)."""
    events = [sample(name, account_id=account_id, stripe_subscription=stripe_id) for name in LIFECYCLE]
    return [dict(event, id=f"{event['id']}_{stripe_id}") for event in events]


def _sequential_state(deliver, account_id: str, stripe_id: str) -> tuple:
    for event in _lifecycle(account_id, stripe_id):
        assert deliver(event)[0] == 200
    stored = subscriptions_table.get(stripe_subscription_local_id(stripe_id))
    return stored.status, stored.current_period_end, stored.cancel_at_period_end


def test_a_whole_lifecycle_delivered_at_once_ends_as_if_delivered_in_order(deliver) -> None:
    """Every lifecycle event, three times each, all at once: no update is lost to another."""
    account = accounts.create_account("race-lifecycle")
    expected = _sequential_state(deliver, account.account_id, "sub_race_sequential")
    for attempt in range(3):
        stripe_id = f"sub_race_parallel_{attempt}"
        events = _lifecycle(account.account_id, stripe_id)
        calls = [lambda e=e: deliver(e) for e in itertools.chain.from_iterable([events] * 3)]
        outcomes = race(calls)
        # Each event once (applied, or nothing left to change once newer ones were in); repeats are repeats
        assert {status for status, _ in outcomes} == {200}
        assert 1 <= [outcome for _, outcome in outcomes].count("applied") <= len(LIFECYCLE)
        assert [outcome for _, outcome in outcomes].count("duplicate") == 2 * len(LIFECYCLE)
        stored = subscriptions_table.get(stripe_subscription_local_id(stripe_id))
        assert (stored.status, stored.current_period_end, stored.cancel_at_period_end) == expected
