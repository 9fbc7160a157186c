"""Races at the data layer, on DynamoDB Local (atomic like DynamoDB; moto is not)."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta

import pytest

from llm_platform.core.clock import to_iso
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain import api_keys, billing, management_keys
from llm_platform.domain.accounts import Caller, create_account
from llm_platform.domain.errors import Conflict, NotFound


def _race(calls: list) -> list:
    barrier = concurrent.futures.ThreadPoolExecutor(len(calls))
    with barrier as pool:
        futures = [pool.submit(call) for call in calls]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(("ok", future.result()))
        except (Conflict, NotFound) as error:
            outcomes.append((type(error).__name__, error.code))
    return outcomes


def test_deleting_the_last_two_management_keys_at_once_keeps_one(local_stack) -> None:
    # Given an account with two management keys
    account = create_account("race")
    caller = Caller(account.account_id, account.management_key_id)
    second, _ = management_keys.create(caller, "second")
    # When both are deleted concurrently, many times over
    outcomes = _race(
        [lambda k=k: management_keys.delete(caller, k) for k in (account.management_key_id, second.key_id)] * 5
    )
    # Then exactly one delete succeeds and the account keeps exactly one key
    assert [o[0] for o in outcomes].count("ok") == 1
    assert len(management_keys.list_keys(caller).items) == 1


def test_concurrent_revokes_of_one_key_succeed_once(local_stack) -> None:
    account = create_account("revoker")
    caller = Caller(account.account_id, account.management_key_id)
    key, _ = api_keys.create_credit_key(caller, "k", None, None, None)
    outcomes = _race([lambda: api_keys.revoke_key(caller, key.key_id)] * 10)
    assert [o[0] for o in outcomes].count("ok") == 1
    assert {o for o in outcomes if o[0] != "ok"} == {("NotFound", "not_found")}


def test_no_key_is_minted_on_a_subscription_that_lapsed_after_it_was_read(local_stack) -> None:
    """The insert re-checks the subscription in its transaction, not only the earlier read."""
    from dataclasses import replace

    account = create_account("lapse")
    subscription = billing.grant_subscription(account.account_id, "pro")
    # Given the subscription expires in storage after the domain has read it as active
    lapsed = replace(subscription, current_period_end=to_iso(datetime.now(UTC) - timedelta(seconds=1)))
    from llm_platform.data.dynamo import client

    client().delete_item(
        TableName=local_stack.table_names["SubscriptionsTable"],
        Key={"subscriptionId": {"S": subscription.subscription_id}},
    )
    subscriptions_table.add(lapsed)
    # When a key is issued from the stale (active) copy, then it is refused and nothing is stored
    try:
        api_keys.issue_subscription_key(account.account_id, subscription, "late")
    except Conflict as error:
        assert error.code == "subscription_not_active"
    else:
        raise AssertionError("a key was minted on a lapsed subscription")
    assert api_keys.list_keys(Caller(account.account_id, account.management_key_id)).items == []


@pytest.mark.parametrize(("balance", "expected"), [(40_000_000, 2), (39_999_999, 1)])
def test_concurrent_subscribes_never_overdraw_the_balance(local_stack, balance, expected) -> None:
    """A balance of exactly two standard periods buys two of ten racing subscribes; a micro-dollar
    less buys one. Never a negative balance, and the ledger agrees."""
    from llm_platform.domain import accounts, subscriptions
    from llm_platform.domain.errors import InsufficientCredit

    account = create_account("subscriber")
    caller = Caller(account.account_id, account.management_key_id)
    accounts.grant_credit(account.account_id, balance, "test")

    def buy():
        try:
            return subscriptions.subscribe_with_credit(caller, "standard", True, "k")
        except InsufficientCredit:
            return None

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda _: buy(), range(10)))
    bought = [o for o in outcomes if o is not None]
    assert len(bought) == expected
    remaining = accounts.get_account(account.account_id).credit_balance_micros
    assert remaining == balance - expected * 20_000_000 >= 0
    from local_stack.dynamodb_local import client

    ledger = client(local_stack.dynamodb_url).query(
        TableName=local_stack.table_names["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account.account_id}},
    )["Items"]
    assert sum(int(item["amountMicros"]["N"]) for item in ledger) == remaining
    assert len(billing.status(caller).subscriptions) == expected
    assert len(api_keys.list_keys(caller).items) == expected
