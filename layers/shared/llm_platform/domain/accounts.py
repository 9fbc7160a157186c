"""Accounts and who is calling: management-key or session authentication, account creation, operator grants."""

from __future__ import annotations

from dataclasses import dataclass

from llm_platform.core.clock import to_iso, utc_now
from llm_platform.core.entities import Account, ManagementKey
from llm_platform.data import accounts as accounts_table
from llm_platform.data import auth as auth_table
from llm_platform.data import ledger
from llm_platform.data import management_keys as management_keys_table
from llm_platform.data.dynamo import WriteRefused, transact
from llm_platform.domain import sessions
from llm_platform.domain.credentials import MANAGEMENT_KEY_PREFIX, bearer_token, hash_secret, issue_secret, new_id
from llm_platform.domain.errors import Conflict, NotFound, Unauthenticated


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: a management-key holder, or a dashboard session (no management key)."""

    account_id: str
    management_key_id: str | None


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account_id: str
    management_key_id: str
    management_key: str  # plaintext, shown once

    def __repr__(self) -> str:
        return f"CreatedAccount(account_id={self.account_id!r})"


def authenticate(authorization: str | None, browser: sessions.BrowserRequest | None = None) -> Caller:
    """``Authorization: Bearer mk_…`` when sent (a wrong one is 401 whatever else comes with it); else the
    session cookie, under the origin rule of ``sessions``; neither: 401 ``missing_management_key``."""
    if not authorization and browser is not None and browser.session_token is not None:
        return Caller(account_id=sessions.account_for(browser), management_key_id=None)
    if not authorization:
        raise Unauthenticated(
            "Missing credentials: send 'Authorization: Bearer <management key>', or sign in (session cookie).",
            code="missing_management_key",
        )
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("Authorization header must be 'Bearer <key>'.", code="missing_management_key")
    key = None
    if token.startswith(MANAGEMENT_KEY_PREFIX) and len(token) <= 128:
        key = management_keys_table.get_by_hash(hash_secret(token))
    if key is None:
        raise Unauthenticated("Invalid management key.", code="invalid_management_key")
    return Caller(account_id=key.account_id, management_key_id=key.key_id)


def new_management_key(account_id: str, name: str) -> tuple[ManagementKey, str]:
    secret = issue_secret(MANAGEMENT_KEY_PREFIX)
    key = ManagementKey(
        key_hash=secret.key_hash,
        key_id=new_id("mkey"),
        account_id=account_id,
        name=name,
        display_prefix=secret.display_prefix,
        created_at=to_iso(utc_now()),
    )
    return key, secret.plaintext


def create_account(name: str, email: str | None = None) -> CreatedAccount:
    """An account and its first management key; with ``email``, an address that signs in to it, all in one
    transaction (409 ``email_taken`` when the address signs in to another account: nothing is created)."""
    now = to_iso(utc_now())
    account = Account(account_id=new_id("acct"), name=name, created_at=now)
    key, plaintext = new_management_key(account.account_id, "default")
    also = []
    if email is not None:
        from llm_platform.domain.sign_in import normalize_email

        also.append(auth_table.email_mapping_put(normalize_email(email), account.account_id, now))
    try:
        accounts_table.create_with_management_key(account, key, *also)
    except WriteRefused as refused:
        if email is not None and refused.reasons[-1:] == ["ConditionalCheckFailed"]:  # the address is last
            raise Conflict("This email address already signs in to an account.", code="email_taken") from refused
        raise
    return CreatedAccount(account.account_id, key.key_id, plaintext)


def get_account(account_id: str) -> Account:
    account = accounts_table.get(account_id)
    if account is None:
        raise NotFound(f"Account {account_id} not found.")
    return account


def grant_credit(account_id: str, amount_micros: int, reason: str) -> Account:
    """Operator credit (bin/admin): balance and ledger entry move together."""
    get_account(account_id)
    now = to_iso(utc_now())
    transact(
        [
            accounts_table.credit_balance_update(account_id, amount_micros),
            ledger.entry_put(account_id, amount_micros=amount_micros, kind="grant", reference=reason, now=now),
        ]
    )
    return get_account(account_id)
