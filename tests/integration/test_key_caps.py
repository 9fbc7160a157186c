"""Key caps (issue 13, item 3): keys per subscription (the plan's ``maxKeys``), API keys and management
keys per account (``accountLimits``), counted in the key's own transaction, so even racing creates never
pass a cap. Past it: 409 ``key_limit_reached``; revoking a key frees its place. DynamoDB Local, small caps."""

from __future__ import annotations

import concurrent.futures

import pytest

from llm_platform.domain import accounts, api_keys, billing, management_keys, plans, subscriptions
from llm_platform.domain.accounts import Caller, create_account
from llm_platform.domain.errors import Conflict


@pytest.fixture
def small_caps(monkeypatch):
    real = plans.catalog()
    small = real.model_copy(
        update={
            "plans": tuple(p.model_copy(update={"max_keys": 3}) for p in real.plans),
            "account_limits": real.account_limits.model_copy(update={"max_api_keys": 5, "max_management_keys": 3}),
        }
    )
    for module in (plans, api_keys, management_keys, subscriptions):
        monkeypatch.setattr(module, "catalog", lambda: small)
    return small


def _caller(name: str) -> Caller:
    account = create_account(name)
    return Caller(account.account_id, account.management_key_id)


def _outcomes(calls):
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    results = []
    for future in futures:
        try:
            future.result()
            results.append("ok")
        except Conflict as error:
            results.append(error.code)
    return results


def test_racing_creates_never_pass_the_subscription_cap(local_stack, small_caps) -> None:
    caller = _caller("sub-cap")
    subscription = billing.grant_subscription(caller.account_id, "pro")
    outcomes = _outcomes([lambda: api_keys.create_subscription_key(caller, "k", subscription.subscription_id)] * 10)
    assert sorted(outcomes) == ["key_limit_reached"] * 7 + ["ok"] * 3
    # Revoking one frees its place
    [first, *_] = api_keys.list_keys(caller).items
    api_keys.revoke_key(caller, first.key_id)
    api_keys.create_subscription_key(caller, "again", subscription.subscription_id)
    with pytest.raises(Conflict) as full:
        api_keys.create_subscription_key(caller, "one too many", subscription.subscription_id)
    assert full.value.code == "key_limit_reached" and "3 keys" in full.value.message


def test_racing_creates_never_pass_the_account_cap(local_stack, small_caps) -> None:
    caller = _caller("account-cap")
    accounts.grant_credit(caller.account_id, 40_000_000, "test")
    outcomes = _outcomes([lambda: api_keys.create_credit_key(caller, "k", None, None, None)] * 8)
    assert sorted(outcomes) == ["key_limit_reached"] * 3 + ["ok"] * 5
    # Subscribe with a key is refused as a whole (nothing charged), without a key it goes through
    with pytest.raises(Conflict) as full:
        subscriptions.subscribe_with_credit(caller, "standard", True, "k")
    assert full.value.code == "key_limit_reached"
    assert accounts.get_account(caller.account_id).credit_balance_micros == 40_000_000
    subscriptions.subscribe_with_credit(caller, "standard", False, None)
    assert accounts.get_account(caller.account_id).credit_balance_micros == 20_000_000


def test_management_keys_are_capped_per_account(local_stack, small_caps) -> None:
    caller = _caller("mk-cap")  # has 1
    outcomes = _outcomes([lambda: management_keys.create(caller, "more")] * 6)
    assert sorted(outcomes) == ["key_limit_reached"] * 4 + ["ok"] * 2
    assert len(management_keys.list_keys(caller).items) == 3
