"""Every list route pages (`limit`, `cursor`, `{"data": [...], "nextCursor"}`) over real HTTP and DynamoDB
Local: pages add up to the whole list without repeats, a client that does not page sees the whole list (up
to 100), and a cursor works only for the account and the list it came from."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
import pytest

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.data import wallets as wallets_table
from llm_platform.domain import api_keys, management_keys
from llm_platform.domain.accounts import Caller, CreatedAccount, create_account

LISTS = ["/api/keys", "/api/management-keys", "/api/usage", "/api/billing/wallets"]


@pytest.fixture
def api(local_stack) -> httpx.Client:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


def auth(account: CreatedAccount) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.management_key}"}


def bind_wallet(account_id: str) -> None:
    address = "0x" + secrets.token_hex(20)
    wallets_table.put_challenge(account_id, address, "sign me", int(time.time()) + 600)
    wallets_table.bind(account_id, address, address, "sign me", to_iso(utc_now()))


def account_with_five_of_each() -> CreatedAccount:
    """Five API keys (one more revoked), five management keys (the first and four more), five wallets."""
    account = create_account("pager")
    caller = Caller(account.account_id, account.management_key_id)
    for i in range(6):
        key, _ = api_keys.create_credit_key(caller, f"key-{i}", None, None, None)
    api_keys.revoke_key(caller, key.key_id)
    for i in range(4):
        management_keys.create(caller, f"admin-{i}")
    for _ in range(5):
        bind_wallet(account.account_id)
    return account


def walk(get: Callable[..., httpx.Response], path: str, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "nextCursor"}
        pages.append(body["data"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "the cursor does not move on"


@pytest.mark.parametrize("path", LISTS)
def test_pages_add_up_to_the_whole_list_and_the_default_is_the_whole_list(api, local_stack, path) -> None:
    # Given an account with several of each (and a revoked key, which /api/keys leaves out and usage keeps)
    account = account_with_five_of_each()
    expected = 6 if path == "/api/usage" else 5
    whole = api.get(path, headers=auth(account))
    assert whole.status_code == 200 and whole.json()["nextCursor"] is None
    ids = [item.get("id") or item.get("address") for item in whole.json()["data"]]
    assert len(ids) == len(set(ids)) == expected
    # When it is read two at a time
    pages = walk(lambda p, params: api.get(p, headers=auth(account), params=params), path, limit=2)
    # Then every page has at most two, and together they are the whole list, once each
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 3
    paged = [item.get("id") or item.get("address") for page in pages for item in page]
    assert sorted(paged) == sorted(ids)


@pytest.mark.parametrize("path", LISTS)
def test_a_cursor_of_another_account_or_list_is_refused(api, local_stack, path) -> None:
    owner, intruder = account_with_five_of_each(), create_account("intruder")
    cursor = api.get(path, headers=auth(owner), params={"limit": 1}).json()["nextCursor"]
    assert cursor is not None
    # Another account's cursor is refused (it would read after the owner's position, in the intruder's own list)
    refused = api.get(path, headers=auth(intruder), params={"cursor": cursor})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_cursor"
    # A cursor of another list of the same account too
    other_path = LISTS[(LISTS.index(path) + 1) % len(LISTS)]
    refused = api.get(other_path, headers=auth(owner), params={"cursor": cursor})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_cursor"
    # And a made-up one
    refused = api.get(path, headers=auth(owner), params={"cursor": "bm90LWEtY3Vyc29y"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("limit", [0, 101, "x"])
def test_a_limit_out_of_range_is_422(api, local_stack, limit) -> None:
    account = create_account("limits")
    response = api.get("/api/keys", headers=auth(account), params={"limit": limit})
    assert response.status_code == 422
