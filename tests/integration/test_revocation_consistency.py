"""Revocation by id is strongly consistent (issue 13, item 5). The id routes used to resolve a key id
through the eventually consistent ``byAccount`` index, so on AWS a key deleted right after it was
created could be "not found" and stay active. Index lag is simulated by making every index read find
nothing (and counting that none is made): the by-id writes must not need the index at all."""

from __future__ import annotations

import pytest

from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import management_keys as management_keys_table
from llm_platform.domain import accounts, api_keys, management_keys
from llm_platform.domain.accounts import Caller, create_account
from llm_platform.domain.credentials import hash_secret
from llm_platform.domain.errors import NotFound, Unauthenticated


@pytest.fixture
def lagging_index(monkeypatch) -> list[tuple[str, str]]:
    """Every GSI read of the key tables returns nothing, as a GSI that has not caught up yet; the reads made."""
    reads: list[tuple[str, str]] = []

    def nothing_yet(table, index, *_args, **_kwargs):
        reads.append((table, index))
        return []

    monkeypatch.setattr(api_keys_table, "query_index", nothing_yet)
    monkeypatch.setattr(management_keys_table, "query_index", nothing_yet)
    return reads


def _caller(name: str) -> Caller:
    account = create_account(name)
    accounts.grant_credit(account.account_id, 5_000_000, "test")
    return Caller(account.account_id, account.management_key_id)


def test_a_key_deleted_right_after_creation_is_refused(local_stack, lagging_index) -> None:
    # Given a key created a moment ago (the index does not know it yet)
    caller = _caller("fast-revoker")
    key, secret = api_keys.create_credit_key(caller, "just-made", None, None, None)
    # When it is deleted at once
    revoked = api_keys.revoke_key(caller, key.key_id)
    # Then the delete applied to the key itself, and its secret is refused from now on
    assert revoked.status == "revoked"
    assert api_keys_table.resolve_secret(hash_secret(secret)).key.status == "revoked"
    # And no index was read to find it
    assert lagging_index == []


def test_a_key_disabled_right_after_creation_is_disabled(local_stack, lagging_index) -> None:
    caller = _caller("fast-disabler")
    key, secret = api_keys.create_credit_key(caller, "just-made", None, None, None)
    assert api_keys.update_key(caller, key.key_id, name=None, disabled=True).status == "disabled"
    assert api_keys_table.resolve_secret(hash_secret(secret)).key.status == "disabled"
    assert lagging_index == []


def test_a_subscription_key_made_with_subscribe_is_found_by_id_at_once(local_stack, lagging_index) -> None:
    from llm_platform.domain import subscriptions

    caller = _caller("subscriber")
    accounts.grant_credit(caller.account_id, 20_000_000, "test")
    _, (key, secret) = subscriptions.subscribe_with_credit(caller, "standard", True, "k")
    assert api_keys.revoke_key(caller, key.key_id).status == "revoked"
    assert api_keys_table.resolve_secret(hash_secret(secret)).key.status == "revoked"


def test_another_accounts_key_id_is_still_not_found(local_stack, lagging_index) -> None:
    owner, stranger = _caller("owner"), _caller("stranger")
    key, secret = api_keys.create_credit_key(owner, "mine", None, None, None)
    for attempt in (
        lambda: api_keys.revoke_key(stranger, key.key_id),
        lambda: api_keys.update_key(stranger, key.key_id, name="x", disabled=True),
        lambda: api_keys.rotate_key(stranger, key.key_id, 0),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert api_keys_table.resolve_secret(hash_secret(secret)).key.status == "active"


def test_a_key_created_before_id_pointers_is_still_found_through_the_index(local_stack, monkeypatch) -> None:
    """Keys stored before this change have no pointer item: the index still finds them (consistently
    once it has caught up, as before)."""
    from llm_platform.data.dynamo import client

    caller = _caller("legacy")
    key, _ = api_keys.create_credit_key(caller, "old", None, None, None)
    client().delete_item(TableName=local_stack.table_names["ApiKeysTable"], Key={"keyHash": {"S": f"id#{key.key_id}"}})
    assert api_keys.revoke_key(caller, key.key_id).status == "revoked"


def test_a_management_key_deleted_right_after_creation_stops_working(local_stack, lagging_index) -> None:
    caller = _caller("fast-mk")
    key, secret = management_keys.create(caller, "second")
    management_keys.delete(caller, key.key_id)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"Bearer {secret}")
    assert lagging_index == []
    # And another account cannot delete one by id
    other = _caller("other-mk")
    third, third_secret = management_keys.create(caller, "third")
    with pytest.raises(NotFound):
        management_keys.delete(other, third.key_id)
    assert accounts.authenticate(f"Bearer {third_secret}").account_id == caller.account_id
